// SPDX-License-Identifier: Apache-2.0
// Model agreement (STYLE.md habit 5): 10,000 seeded random flows across
// services of both families, both protocols, both schedulers and weighted
// reals. Rings come from the C++ builder (src/control/maglev); the real the
// XDP program sends each flow to (read back from its output frame: outer
// destination for ipip, destination MAC for l2dsr) must equal the real the
// reference model tests/model/keel_model.py picks, on every flow.
#include <arpa/inet.h>
#include <linux/bpf.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "balancer_loader.h"
#include "control/maglev/maglev.h"
#include "fixtures.h"

namespace keel::test {
namespace {

struct RealDef {
  std::string address;
  uint32_t weight;
};

struct ServiceDef {
  std::string vip;
  uint16_t port;  // 0: any port
  uint8_t proto;
  bool sourceHash;  // maglev-src
  bool l2dsr;
  uint32_t ringSize;
  std::vector<RealDef> reals;
};

struct Flow {
  uint32_t service;
  std::string src;
  uint16_t sport;
  uint16_t dport;
};

const std::vector<ServiceDef>& serviceDefs() {
  static const std::vector<ServiceDef> defs = {
      {"10.200.0.1", 80, KEEL_PROTO_TCP, false, false, 65537,
       {{"10.2.0.1", 1}, {"10.2.0.2", 1}, {"10.2.0.3", 2}, {"10.2.0.4", 3}, {"10.2.0.5", 1}}},
      {"fd00:200::1", 53, KEEL_PROTO_UDP, true, false, 65537,
       {{"fc00:2::1", 1}, {"fc00:2::2", 1}, {"fc00:2::3", 1}, {"fc00:2::4", 1}}},
      {"10.200.0.2", 443, KEEL_PROTO_TCP, false, true, 4099, {{"10.2.1.1", 5}, {"10.2.1.2", 1}, {"10.2.1.3", 1}}},
      {"10.200.0.3", 0, KEEL_PROTO_UDP, true, false, 257, {{"10.2.2.1", 1}, {"fc00:2::21", 2}, {"10.2.2.3", 4}}},
      {"fd00:200::2", 0, KEEL_PROTO_TCP, false, true, 1021,
       {{"fc00:2::31", 3}, {"fc00:2::32", 1}, {"fc00:2::33", 1}, {"fc00:2::34", 2}, {"fc00:2::35", 0}}},
  };
  return defs;
}

uint8_t familyOf(const std::string& ip) { return ip.find(':') != std::string::npos ? KEEL_AF_INET6 : KEEL_AF_INET; }

void toWords(const std::string& ip, __u32 out[4]) {
  Bytes b = ipBytes(ip);
  std::memset(out, 0, 16);
  std::memcpy(out, b.data(), b.size());
}

std::string randomAddress(std::mt19937& rng, uint8_t family) {
  char buf[INET6_ADDRSTRLEN];
  uint8_t raw[16];
  for (auto& b : raw) b = static_cast<uint8_t>(rng());
  if (family == KEEL_AF_INET) {
    // One host's (keel_addr_unicast): never 0/8, 127/8 or 224/4 and above,
    // whose packets keel drops (drop_bad_source).
    raw[0] = static_cast<uint8_t>(1 + raw[0] % 223);
    if (raw[0] == 127) raw[0] = 128;
    inet_ntop(AF_INET, raw, buf, sizeof buf);
  } else {
    raw[0] = 0x20;
    raw[1] = 0x01;
    inet_ntop(AF_INET6, raw, buf, sizeof buf);
  }
  return buf;
}

// Runs the model for one service; returns its backend ids (-1 for null).
std::vector<int64_t> modelPick(const ServiceDef& s, uint32_t firstBackendId, const std::vector<Flow>& flows,
                               std::string* err) {
  const char* model = std::getenv("KEEL_MODEL");
  if (!model) {
    *err = "KEEL_MODEL (path of tests/model/keel_model.py) is not set";
    return {};
  }
  nlohmann::json spec;
  spec["ring_size"] = s.ringSize;
  spec["scheduler"] = s.sourceHash ? "maglev-src" : "maglev";
  for (size_t i = 0; i < s.reals.size(); i++) {
    spec["reals"].push_back({{"address", s.reals[i].address},
                             {"weight", s.reals[i].weight},
                             {"backend_id", firstBackendId + i}});
  }
  spec["flows"] = nlohmann::json::array();
  for (const Flow& f : flows) {
    spec["flows"].push_back({{"src", f.src},
                             {"dst", s.vip},
                             {"sport", f.sport},
                             {"dport", f.dport},
                             {"proto", s.proto == KEEL_PROTO_TCP ? "tcp" : "udp"}});
  }
  char path[] = "/tmp/keel_model_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) {
    *err = "mkstemp failed";
    return {};
  }
  close(fd);
  std::ofstream(path) << spec.dump();
  std::string cmd = std::string("/usr/bin/python3 ") + model + " pick --input " + path;
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = p ? pclose(p) : -1;
  if (rc != 0) {
    *err = cmd + " failed (" + std::to_string(rc) + ")";
    return {};
  }
  unlink(path);
  std::vector<int64_t> ids;
  auto parsed = nlohmann::json::parse(out, nullptr, false);
  if (parsed.is_discarded() || !parsed.contains("backend_ids")) {
    *err = cmd + " printed no backend_ids: " + out.substr(0, 200);
    return {};
  }
  for (const auto& v : parsed["backend_ids"]) ids.push_back(v.is_null() ? -1 : v.get<int64_t>());
  return ids;
}

TEST(ModelAgreement, XdpPicksTheModelsRealOnEveryFlow) {
  constexpr int kFlows = 10000;
  FixtureState st;
  st.node = fixtureState().node;
  std::map<std::string, uint32_t> byOuterAddr;  // ipip: outer destination -> backend id
  std::map<std::string, uint32_t> byMac;        // l2dsr: destination MAC -> backend id
  std::vector<uint32_t> firstId;
  uint32_t nextId = 0;
  const auto& defs = serviceDefs();
  for (uint32_t sid = 0; sid < defs.size(); sid++) {
    const ServiceDef& s = defs[sid];
    keel_vip_key vk{};
    toWords(s.vip, vk.addr);
    vk.family = familyOf(s.vip);
    st.vips.push_back(vk);
    ServiceSpec spec{};
    toWords(s.vip, spec.key.vip);
    spec.key.port = htons(s.port);
    spec.key.proto = s.proto;
    spec.key.family = familyOf(s.vip);
    spec.value.id = sid;
    spec.value.flags = (s.sourceHash ? KEEL_SVC_F_SCHED_SRC : 0) | (s.l2dsr ? KEEL_SVC_F_FWD_L2DSR : 0);
    st.services.push_back(spec);
    firstId.push_back(nextId);
    std::vector<MaglevReal> reals;
    for (const RealDef& r : s.reals) {
      uint32_t id = nextId++;
      keel_backend be{};
      toWords(r.address, be.addr);
      be.service_id = sid;
      be.gen = 1;
      be.family = familyOf(r.address);
      be.flags = KEEL_BE_F_VALID;
      uint8_t mac[6] = {0x02, 0x00, 0x00, 0x01, static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id)};
      std::memcpy(be.mac, mac, 6);
      st.backends.push_back({id, be});
      byOuterAddr[r.address] = id;
      byMac[std::string(reinterpret_cast<char*>(mac), 6)] = id;
      auto addr = IpAddress::parse(r.address);
      ASSERT_TRUE(addr.has_value()) << r.address;
      reals.push_back({*addr, r.weight, id});
    }
    std::vector<uint32_t> ring = buildMaglevTable(reals, s.ringSize);
    ASSERT_EQ(ring.size(), s.ringSize) << "C++ ring builder for service " << sid;
    st.rings.push_back({sid, ring});
  }

  std::string err;
  auto lb = BalancerLoader::load({}, &err);
  ASSERT_TRUE(lb) << err;
  ASSERT_EQ(lb->apply(st), "");

  std::mt19937 rng(20261122);  // fixed seed: the same 10,000 flows every run
  std::vector<std::vector<Flow>> flows(defs.size());
  for (int i = 0; i < kFlows; i++) {
    uint32_t sid = rng() % defs.size();
    const ServiceDef& s = defs[sid];
    Flow f{sid, randomAddress(rng, familyOf(s.vip)), static_cast<uint16_t>(1024 + rng() % 64000),
           s.port ? s.port : static_cast<uint16_t>(1 + rng() % 65535)};
    flows[sid].push_back(f);
  }

  size_t checked = 0, mismatches = 0;
  for (uint32_t sid = 0; sid < defs.size(); sid++) {
    const ServiceDef& s = defs[sid];
    SCOPED_TRACE("service " + std::to_string(sid) + " " + s.vip);
    std::vector<int64_t> want = modelPick(s, firstId[sid], flows[sid], &err);
    ASSERT_EQ(want.size(), flows[sid].size()) << err;
    std::map<int64_t, size_t> spread;
    for (size_t i = 0; i < flows[sid].size(); i++) {
      const Flow& f = flows[sid][i];
      PacketBuilder b;
      b.Eth(kLbMac, kRouterMac);
      if (familyOf(s.vip) == KEEL_AF_INET6) {
        b.IPv6(f.src, s.vip);
      } else {
        b.IPv4(f.src, s.vip);
      }
      if (s.proto == KEEL_PROTO_TCP) {
        b.Tcp(f.sport, f.dport);
      } else {
        b.Udp(f.sport, f.dport);
      }
      RunResult r = lb->run(b.Payload("model").build());
      ASSERT_EQ(r.action, XDP_TX) << f.src << ":" << f.sport;
      int64_t got = -1;
      if (s.l2dsr) {
        auto it = byMac.find(std::string(reinterpret_cast<char*>(r.output.data()), 6));
        if (it != byMac.end()) got = it->second;
      } else {
        char buf[INET6_ADDRSTRLEN] = {};
        if (r.output[12] == 0x86) {
          inet_ntop(AF_INET6, r.output.data() + 14 + 24, buf, sizeof buf);
        } else {
          inet_ntop(AF_INET, r.output.data() + 14 + 16, buf, sizeof buf);
        }
        auto it = byOuterAddr.find(buf);
        if (it != byOuterAddr.end()) got = it->second;
      }
      checked++;
      spread[got]++;
      if (got != want[i]) {
        if (++mismatches <= 10)
          ADD_FAILURE() << "flow " << f.src << ":" << f.sport << " -> " << s.vip << ":" << f.dport << " xdp " << got
                        << " model " << want[i];
      }
    }
    // Weighted reals all receive flows (weight 0 none): the comparison
    // above is not vacuous.
    for (size_t k = 0; k < s.reals.size(); k++) {
      size_t count = spread[firstId[sid] + k];
      if (s.reals[k].weight == 0) {
        EXPECT_EQ(count, 0u) << s.reals[k].address;
      } else {
        EXPECT_GT(count, 0u) << s.reals[k].address;
      }
    }
  }
  EXPECT_EQ(checked, static_cast<size_t>(kFlows));
  EXPECT_EQ(mismatches, 0u);
}

}  // namespace
}  // namespace keel::test
