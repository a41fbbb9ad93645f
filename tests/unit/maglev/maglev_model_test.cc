// SPDX-License-Identifier: Apache-2.0
// The C++ ring builder plus the include/keel hashes must agree with the
// Python reference model (tests/model/keel_model.py) on every ring slot and
// every flow. The model is written from the paper and Appleby's murmur3 and
// shares no code with the C++ side, so agreement checks both.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>

#include "control/maglev/maglev.h"
#include "keel/maglev_lookup.h"

namespace keel {
namespace {

struct Flow {
  IpAddress src, dst;
  uint16_t sport, dport;
  uint8_t proto;
};

std::string envOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

// Runs a command, returns its stdout; nullopt if it failed.
std::optional<std::string> run(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return std::nullopt;
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  if (pclose(p) != 0) return std::nullopt;
  return out;
}

// The JSON array after "key": ints, or -1 for null. Enough for the model's
// flat output; anything unexpected fails the test through a size mismatch.
std::vector<int64_t> jsonIntArray(const std::string& json, const std::string& key) {
  std::vector<int64_t> out;
  size_t k = json.find("\"" + key + "\"");
  if (k == std::string::npos) return out;
  size_t open = json.find('[', k), close = json.find(']', open);
  if (open == std::string::npos || close == std::string::npos) return out;
  std::stringstream ss(json.substr(open + 1, close - open - 1));
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t b = item.find_first_not_of(" \n");
    if (b == std::string::npos) continue;
    out.push_back(item.compare(b, 4, "null") == 0 ? -1 : std::stoll(item.substr(b)));
  }
  return out;
}

IpAddress randomAddress(std::mt19937& rng, bool v6) {
  if (!v6) return IpAddress::fromV4({uint8_t(1 + rng() % 223), uint8_t(rng()), uint8_t(rng()), uint8_t(rng())});
  std::array<uint8_t, 16> b{};
  for (auto& x : b) x = uint8_t(rng());
  b[0] = 0x20;
  return IpAddress::fromV6(b);
}

keel_flow_key toKey(const Flow& f) {
  keel_flow_key k{};
  f.src.toWords(k.src);
  f.dst.toWords(k.dst);
  k.sport = htons(f.sport);
  k.dport = htons(f.dport);
  k.proto = f.proto;
  k.family = f.src.family();
  return k;
}

TEST(MaglevModelTest, CppRingAndPickMatchTheReferenceModel) {
  const std::string python = envOr("KEEL_PYTHON", "/usr/bin/python3");
  const std::string model = envOr("KEEL_MODEL", KEEL_MODEL_DEFAULT);
  ASSERT_EQ(access(model.c_str(), R_OK), 0) << "model not found: " << model;
  ASSERT_TRUE(run(python + " " + model + " selftest").has_value()) << "model murmur3 selftest failed";

  char dir[] = "/tmp/keel_maglev_model_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string input = std::string(dir) + "/input.json";

  std::mt19937 rng(20161);
  // Production sizes for some sets, small primes for the rest (the model is
  // deliberately unoptimised; small rings keep it fast and hit M < N too).
  // The last two are the large production size, where the builder's tail
  // threshold and reciprocal reduction run with other parameters (~3 s each
  // in the model); the last is skewed.
  const uint32_t ringSizes[] = {65537, 251, 4099, 13,   65537, 1009, 2,    65537, 7919,   251,   65537,
                                4099,  13,  1009, 65537, 3,     251,  4099, 1009,  7919, 655373, 655373};
  constexpr int kSets = sizeof ringSizes / sizeof ringSizes[0];
  for (int set = 0; set < kSets; ++set) {
    const uint32_t m = ringSizes[set];
    const bool src = set % 2;
    const int family = set % 3;  // 0: IPv4, 1: IPv6, 2: mixed
    SCOPED_TRACE("set " + std::to_string(set) + " M=" + std::to_string(m));

    std::vector<MaglevReal> reals;
    size_t n = 1 + rng() % 40;
    for (size_t i = 0; i < n; ++i) {
      bool v6 = family == 1 || (family == 2 && rng() % 2);
      // Weights 0..5: zero must be skipped by both sides. Every fifth set is
      // skewed (first real 50x) so the builder's heap schedule is checked too.
      uint32_t w = (set % 5 == 4 || set == kSets - 1) && i == 0 ? 50 : uint32_t(rng() % 6);
      reals.push_back({randomAddress(rng, v6), w, uint32_t(rng() % 100000)});
    }
    std::vector<Flow> flows;
    for (int i = 0; i < 2000; ++i) {
      bool v6 = rng() % 4 == 0;
      flows.push_back({randomAddress(rng, v6), randomAddress(rng, v6), uint16_t(rng()), uint16_t(rng()),
                       uint8_t(rng() % 2 ? KEEL_PROTO_TCP : KEEL_PROTO_UDP)});
    }

    {
      std::ofstream f(input);
      f << "{\"ring_size\": " << m << ", \"scheduler\": \"" << (src ? "maglev-src" : "maglev")
        << "\", \"reals\": [";
      for (size_t i = 0; i < reals.size(); ++i)
        f << (i ? "," : "") << "{\"address\": \"" << reals[i].address.toString()
          << "\", \"weight\": " << reals[i].weight << ", \"backend_id\": " << reals[i].backendId << "}";
      f << "], \"flows\": [";
      for (size_t i = 0; i < flows.size(); ++i)
        f << (i ? "," : "") << "{\"src\": \"" << flows[i].src.toString() << "\", \"dst\": \""
          << flows[i].dst.toString() << "\", \"sport\": " << flows[i].sport << ", \"dport\": "
          << flows[i].dport << ", \"proto\": \"" << (flows[i].proto == KEEL_PROTO_TCP ? "tcp" : "udp")
          << "\"}";
      f << "]}\n";
    }
    auto out = run(python + " " + model + " pick --with-ring --input " + input);
    ASSERT_TRUE(out.has_value()) << "model failed on " << input;

    auto table = buildMaglevTable(reals, m);
    auto modelRing = jsonIntArray(*out, "ring");
    ASSERT_EQ(modelRing.size(), table.size());
    for (size_t s = 0; s < table.size(); ++s) ASSERT_EQ(modelRing[s], int64_t(table[s])) << "slot " << s;

    auto picks = jsonIntArray(*out, "backend_ids");
    ASSERT_EQ(picks.size(), flows.size());
    const uint32_t flags = src ? KEEL_SVC_F_SCHED_SRC : 0;
    for (size_t i = 0; i < flows.size(); ++i) {
      keel_flow_key k = toKey(flows[i]);
      int64_t mine = table.empty() ? -1 : int64_t(table[keel_ring_slot(keel_sched_hash(&k, flags), m)]);
      ASSERT_EQ(picks[i], mine) << "flow " << i << " " << flows[i].src.toString() << ":" << flows[i].sport
                                << " -> " << flows[i].dst.toString() << ":" << flows[i].dport;
    }
  }
  std::remove(input.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace keel
