// SPDX-License-Identifier: Apache-2.0
// The DPDK worker against the reference model (STYLE.md habit 5): 10,000
// seeded random flows over services of both families, both protocols, both
// schedulers and weighted reals. Rings come from the production builder
// (src/control/maglev); the model builds its own from the same reals, so a
// disagreement in either the ring or the worker's hash/pick shows up here.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <random>
#include <unistd.h>

#include "control/maglev/maglev.h"
#include "dataplane/dpdk/worker_path.h"
#include "keel/maglev_lookup.h"
#include "test_packets.h"

namespace keel::dpdk {
namespace {

using test::ip;

struct ServiceCase {
  const char* vip;
  uint16_t port;  // 0: any port
  uint8_t proto;
  bool schedSrc;
  std::vector<std::pair<const char*, uint32_t>> reals;  // address, weight
};

std::string randomAddress(std::mt19937& rng, bool v6) {
  char buf[64];
  if (v6) {
    std::snprintf(buf, sizeof buf, "2001:db8:%x:%x::%x", static_cast<unsigned>(rng() & 0xffff),
                  static_cast<unsigned>(rng() & 0xffff), static_cast<unsigned>(rng() & 0xffff));
  } else {
    // One host's (keel_addr_unicast): never 0/8, 127/8 or 224/4 and above,
    // whose packets keel drops (drop_bad_source).
    unsigned first = static_cast<unsigned>(1 + rng() % 223);
    if (first == 127) first = 128;
    std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", first,
                  static_cast<unsigned>(rng() % 256), static_cast<unsigned>(rng() % 256),
                  static_cast<unsigned>(1 + rng() % 254));
  }
  return buf;
}

// Runs keel_model.py pick on spec and returns its backend ids (-1 = null).
std::vector<int64_t> modelPick(const nlohmann::json& spec) {
  std::string path = "/tmp/keel_dpdk_model_" + std::to_string(getpid()) + ".json";
  {
    std::ofstream f(path);
    f << spec.dump();
  }
  std::string cmd = "/usr/bin/python3 " KEEL_SOURCE_ROOT "/tests/model/keel_model.py pick --input " + path;
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[65536];
  size_t n;
  while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = p ? pclose(p) : -1;
  std::remove(path.c_str());
  EXPECT_EQ(rc, 0) << cmd;
  std::vector<int64_t> ids;
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded()) {
    ADD_FAILURE() << "model output is not JSON: " << out.substr(0, 200);
    return ids;
  }
  for (const auto& v : j["backend_ids"]) ids.push_back(v.is_null() ? -1 : v.get<int64_t>());
  return ids;
}

TEST(DpdkModelAgreement, TenThousandFlowsPickTheModelsReal) {
  const uint32_t kRing = KEEL_RING_SIZE_DEFAULT;
  const std::vector<ServiceCase> cases = {
      {"10.0.0.100", 80, KEEL_PROTO_TCP, false, {{"10.1.0.1", 1}, {"10.1.0.2", 2}, {"10.1.0.3", 3}, {"10.1.0.4", 1}}},
      {"2001:db8::100", 53, KEEL_PROTO_UDP, true, {{"2001:db8:1::1", 1}, {"2001:db8:1::2", 1}, {"2001:db8:1::3", 1}}},
      {"10.0.0.101", 0, KEEL_PROTO_UDP, false, {{"10.1.0.5", 5}, {"2001:db8:1::6", 1}, {"10.1.0.7", 2}}},
      {"2001:db8::101", 443, KEEL_PROTO_TCP, false, {{"2001:db8:1::8", 2}, {"10.1.0.9", 1}, {"2001:db8:1::a", 4}, {"2001:db8:1::b", 0}}},
      {"10.0.0.102", 8080, KEEL_PROTO_TCP, true, {{"10.1.1.1", 3}, {"10.1.1.2", 1}}},
  };
  const int kFlows = 10000;

  TableStore store(16, 1024, nullptr);
  WorkerState worker(2 * kFlows, 16, 1024, 9000);
  ASSERT_TRUE(store.setNode(test::nodeConfig()));
  std::mt19937 rng(20261122);
  std::vector<nlohmann::json> specs;
  uint32_t nextBackend = 0;
  for (uint32_t s = 0; s < cases.size(); ++s) {
    const ServiceCase& c = cases[s];
    IpAddress vip = ip(c.vip);
    ASSERT_TRUE(store.addVip(test::vipKey(vip)));
    keel_service_value v{};
    v.id = s;
    v.flags = c.schedSrc ? KEEL_SVC_F_SCHED_SRC : 0;
    ASSERT_TRUE(store.upsertService(test::serviceKey(vip, c.port, c.proto), v));
    std::vector<MaglevReal> reals;
    nlohmann::json spec = {{"ring_size", kRing},
                           {"scheduler", c.schedSrc ? "maglev-src" : "maglev"},
                           {"reals", nlohmann::json::array()},
                           {"flows", nlohmann::json::array()}};
    for (const auto& [addr, weight] : c.reals) {
      uint32_t id = nextBackend++;
      ASSERT_TRUE(store.upsertBackend(id, test::backend(ip(addr), s)));
      reals.push_back(MaglevReal{ip(addr), weight, id});
      spec["reals"].push_back({{"address", addr}, {"weight", weight}, {"backend_id", id}});
    }
    std::vector<uint32_t> ring = buildMaglevTable(reals, kRing);
    ASSERT_EQ(ring.size(), kRing);
    ASSERT_TRUE(store.publishRing(s, ring));
    specs.push_back(spec);
  }

  struct Flow {
    uint32_t service;
    test::Frame frame;
  };
  std::vector<Flow> flows;
  for (int i = 0; i < kFlows; ++i) {
    uint32_t s = rng() % cases.size();
    const ServiceCase& c = cases[s];
    IpAddress vip = ip(c.vip);
    test::Frame f{ip(randomAddress(rng, vip.isV6()).c_str()), vip,
                  static_cast<uint16_t>(1024 + rng() % 64000),
                  c.port ? c.port : static_cast<uint16_t>(1 + rng() % 65535), c.proto};
    f.payload = rng() % 64;
    specs[s]["flows"].push_back({{"src", f.src.toString()},
                                 {"dst", c.vip},
                                 {"sport", f.sport},
                                 {"dport", f.dport},
                                 {"proto", c.proto == KEEL_PROTO_TCP ? "tcp" : "udp"}});
    flows.push_back({s, f});
  }

  std::vector<std::vector<int64_t>> expected;
  for (const auto& spec : specs) {
    expected.push_back(modelPick(spec));
    ASSERT_EQ(expected.back().size(), spec["flows"].size());
  }

  std::vector<size_t> next(cases.size(), 0);
  std::vector<uint8_t> buf;
  int mismatches = 0;
  for (const Flow& fl : flows) {
    int64_t want = expected[fl.service][next[fl.service]++];
    auto frame = test::buildFrame(fl.frame);
    buf.assign(64 + frame.size(), 0);
    std::memcpy(buf.data() + 64, frame.data(), frame.size());
    PacketBuf b{buf.data() + 64, static_cast<uint32_t>(frame.size()), 64};
    PacketResult r = processPacket(*store.current(), worker, b, 1000);
    int64_t got = r.verdict == Verdict::kTx ? static_cast<int64_t>(r.backendId) : -1;
    if (got != want && ++mismatches <= 10)
      ADD_FAILURE() << "flow " << fl.frame.src.toString() << ":" << fl.frame.sport << " -> "
                    << fl.frame.dst.toString() << ":" << fl.frame.dport << " worker " << got
                    << " model " << want;
  }
  EXPECT_EQ(mismatches, 0);
  // Every flow was forwarded: the counters account for all of them.
  EXPECT_EQ(worker.counters.reasons[KEEL_R_TX_IPIP].packets, static_cast<uint64_t>(kFlows));
}

}  // namespace
}  // namespace keel::dpdk
