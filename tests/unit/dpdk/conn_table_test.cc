// SPDX-License-Identifier: Apache-2.0
// The connection table's occupied-way count (keel_conntrack_entries on the
// DPDK plane): kept by insert() as it goes, never by walking the table, so
// each case checks it against a walk (countLive()). And its own hash
// (hashOf): seeded, and spread over the buckets by every key field.
#include "dataplane/dpdk/conn_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

namespace keel::dpdk {
namespace {

keel_flow_key key4(uint16_t sport) {
  keel_flow_key k{};
  k.src[0] = 0x0a000001;
  k.dst[0] = 0x0a000064;
  k.sport = sport;
  k.dport = 80;
  k.proto = KEEL_PROTO_TCP;
  k.family = KEEL_AF_INET;
  return k;
}

keel_flow_key key6(uint16_t sport) {
  keel_flow_key k = key4(sport);
  k.src[1] = k.src[2] = k.src[3] = 7;
  k.family = KEEL_AF_INET6;
  return k;
}

// Capacity 4 is one bucket of ConnWays::kWays (4) ways per family: every key
// lands in the same bucket whatever its hash.
TEST(ConnTableCount, EmptyWaysCountOwnAndEvictedWaysDoNot) {
  ConnTable t(4);
  ASSERT_EQ(t.capacity(), 4u);
  EXPECT_EQ(t.occupied(), 0u);

  for (uint16_t i = 0; i < 4; ++i) {  // fills the four empty ways
    t.insert(key4(1000 + i), /*hash=*/i, 1, 1, 100 + i);
    EXPECT_EQ(t.occupied(), i + 1u);
  }
  t.insert(key4(1001), 1, 2, 2, 200);  // the key's own (occupied) way: re-picked, not a new way
  EXPECT_EQ(t.occupied(), 4u);
  ASSERT_NE(t.find(key4(1001), 1, 200, 0), nullptr);
  EXPECT_EQ(t.find(key4(1001), 1, 200, 0)->backend_id, 2u);

  t.insert(key4(2000), 9, 3, 3, 300);  // full bucket: evicts the oldest (sport 1000)
  EXPECT_EQ(t.occupied(), 4u);
  EXPECT_EQ(t.find(key4(1000), 0, 300, 0), nullptr);
  EXPECT_NE(t.find(key4(2000), 9, 300, 0), nullptr);
  EXPECT_EQ(t.occupied(), t.countLive());
}

// A new flow that evicts a flow seen within liveNs counts one live eviction
// (keel_dpdk_conntrack_live_evictions_total), per family; an empty way, the
// key's own way, an idle victim or liveNs 0 (a restore) count none.
TEST(ConnTableCount, LiveEvictionsCountOnlyFlowsStillWithinTheirTimeout) {
  ConnTable t(4);  // one bucket per family
  constexpr uint64_t kSec = 1'000'000'000, kIdle = 10 * kSec;
  for (uint16_t i = 0; i < 4; ++i) t.insert(key4(1000 + i), i, 1, 1, (1 + i) * kSec, kIdle);  // empty ways
  t.insert(key4(1001), 1, 2, 2, 5 * kSec, kIdle);                                           // its own way
  EXPECT_EQ(t.half(KEEL_AF_INET).liveEvictions, 0u);
  t.insert(key4(2000), 9, 1, 1, 6 * kSec, kIdle);  // evicts sport 1000, seen 5 s ago: live
  EXPECT_EQ(t.half(KEEL_AF_INET).liveEvictions, 1u);
  t.insert(key4(2001), 9, 1, 1, 100 * kSec, kIdle);  // evicts one seen 97 s ago: idle
  EXPECT_EQ(t.half(KEEL_AF_INET).liveEvictions, 1u);
  t.insert(key4(2002), 9, 1, 1, 101 * kSec);  // liveNs 0: counts nothing
  EXPECT_EQ(t.half(KEEL_AF_INET).liveEvictions, 1u);
  for (uint16_t i = 0; i < 5; ++i) t.insert(key6(1000 + i), i, 1, 1, (1 + i) * kSec, kIdle);
  EXPECT_EQ(t.half(KEEL_AF_INET6).liveEvictions, 1u) << "the fifth IPv6 flow evicts a live one";
  EXPECT_EQ(t.half(KEEL_AF_INET).liveEvictions, 1u) << "each family its own";
}

TEST(ConnTableCount, BothFamiliesAreSummed) {
  ConnTable t(4);
  t.insert(key4(1), 1, 0, 1, 10);
  t.insert(key6(1), 1, 0, 1, 10);
  t.insert(key6(2), 2, 0, 1, 10);
  EXPECT_EQ(t.occupied(), 3u);
  EXPECT_EQ(t.occupied(), t.countLive());
}

// Many buckets, some filled past their ways: the running count stays equal
// to a walk of the table through inserts, re-inserts and evictions.
TEST(ConnTableCount, MatchesAWalkThroughManyInsertsAndEvictions) {
  ConnTable t(256);
  uint32_t x = 12345;
  for (int i = 0; i < 5000; ++i) {
    x = x * 1664525u + 1013904223u;
    const uint16_t sport = static_cast<uint16_t>(x >> 20);  // 4096 keys over 256 ways: repeats and evictions
    const uint32_t hash = sport * 2654435761u;
    keel_flow_key k = (i & 3) == 0 ? key6(sport) : key4(sport);
    t.insert(k, hash, 0, 1, 1 + i);
  }
  EXPECT_EQ(t.occupied(), t.countLive());
  EXPECT_EQ(t.occupied(), 2u * t.capacity());  // full by now: every way of both families
}

// The largest number of keys one of `buckets` buckets gets.
template <typename KeyOf>
uint32_t worstBucket(const ConnTable& t, uint32_t n, uint32_t buckets, KeyOf keyOf) {
  std::vector<uint32_t> load(buckets);
  for (uint32_t i = 0; i < n; ++i) ++load[t.hashOf(keyOf(i)) & (buckets - 1)];
  return *std::max_element(load.begin(), load.end());
}

// scan() (keelctl conns, from the control thread): every occupied way of
// both families once, with its full flow key and value, as forEach() (the
// owner's walk) sees them; empty ways are skipped.
TEST(ConnTableScan, VisitsEveryOccupiedWayOfBothFamiliesAsForEachDoes) {
  ConnTable t(256, kHeapConnMemory, 1);
  for (uint16_t i = 0; i < 300; ++i) {  // v4: past 256, so some buckets evict
    const keel_flow_key k = key4(i);
    t.insert(k, t.hashOf(k), i % 5, i, 1000 + i);
  }
  for (uint16_t i = 0; i < 40; ++i) {
    const keel_flow_key k = key6(i);
    t.insert(k, t.hashOf(k), 9, i, 5000 + i);
  }
  using Seen = std::vector<std::tuple<std::string, uint32_t, uint32_t, uint64_t>>;
  auto collect = [](Seen& out) {
    return [&out](const keel_flow_key& k, const keel_ct_value& v) {
      out.emplace_back(std::string(reinterpret_cast<const char*>(&k), sizeof k), v.backend_id, v.gen, v.last_seen_ns);
    };
  };
  Seen scanned, walked;
  t.scan(collect(scanned));
  t.forEach(collect(walked));
  EXPECT_EQ(scanned.size(), t.occupied());
  EXPECT_EQ(scanned, walked);
  size_t v6 = 0, found = 0;
  for (const auto& [bytes, backend, gen, seen] : scanned) {
    keel_flow_key k;
    std::memcpy(&k, bytes.data(), sizeof k);
    v6 += k.family == KEEL_AF_INET6;
    keel_ct_value v;
    // The key as scan() rebuilt it finds its own entry.
    if (t.peek(k, 0, 0, &v) && v.backend_id == backend && v.gen == gen && v.last_seen_ns == seen) ++found;
  }
  EXPECT_EQ(v6, 40u);
  EXPECT_EQ(found, scanned.size());
}

// 4,096 keys into 1,024 buckets: 4 a bucket on average; a uniform hash
// gives a worst bucket around 11, so 16 fails a hash that ignores the field
// varied (every key in one bucket) or mixes it poorly, not a good one.
TEST(ConnTableHash, SpreadsKeysThatDifferInOneFieldOnly) {
  const ConnTable t(4, kHeapConnMemory, 42);
  EXPECT_LE(worstBucket(t, 4096, 1024, [](uint32_t i) { return key4(static_cast<uint16_t>(i)); }), 16u);
  EXPECT_LE(worstBucket(t, 4096, 1024, [](uint32_t i) {
              keel_flow_key k = key4(1000);
              k.src[0] = 0x0a000000 + i;  // IPv4: the hash reads the address words 0 only (flow.h)
              return k;
            }), 16u);
  EXPECT_LE(worstBucket(t, 4096, 1024, [](uint32_t i) {
              keel_flow_key k = key6(1000);
              k.src[3] = i;
              return k;
            }), 16u);
  EXPECT_LE(worstBucket(t, 4096, 1024, [](uint32_t i) {
              keel_flow_key k = key6(1000);
              k.dst[2] = i;
              return k;
            }), 16u);
  EXPECT_LE(worstBucket(t, 4096, 1024, [](uint32_t i) { return key6(static_cast<uint16_t>(i)); }), 16u);
}

// A seed repeats a table's hash; tables seeded apart (keeld's draw from
// random_device) hash the same key differently.
TEST(ConnTableHash, TheSeedRepeatsTheHashAndDifferentSeedsDiffer) {
  const ConnTable a(4, kHeapConnMemory, 7), b(4, kHeapConnMemory, 7), c(4, kHeapConnMemory, 8), d(4), e(4);
  uint32_t sameAB = 0, sameAC = 0, sameDE = 0;
  for (uint16_t i = 0; i < 1000; ++i) {
    const keel_flow_key k = i % 2 ? key4(i) : key6(i);
    sameAB += a.hashOf(k) == b.hashOf(k);
    sameAC += a.hashOf(k) == c.hashOf(k);
    sameDE += d.hashOf(k) == e.hashOf(k);
  }
  EXPECT_EQ(sameAB, 1000u);
  EXPECT_LE(sameAC, 2u);
  EXPECT_LE(sameDE, 2u);
}

// A clean restart's load (conn_persist.h) gives an empty table the seeds a
// saved one had: it then hashes every key as that table did. A table that
// holds an entry refuses, and keeps its seeds (its entries' buckets).
TEST(ConnTableHash, AnEmptyTableTakesAnotherTablesSeedsAndAnOccupiedOneRefuses) {
  const ConnTable saved(64);  // seeds drawn at random, as keeld's
  ConnTable next(64);
  EXPECT_NE(next.seeds(), saved.seeds());
  ASSERT_TRUE(next.reseed(saved.seeds()));
  EXPECT_EQ(next.seeds(), saved.seeds());
  for (uint16_t i = 0; i < 1000; ++i) {
    const keel_flow_key k = i % 2 ? key4(i) : key6(i);
    ASSERT_EQ(next.hashOf(k), saved.hashOf(k)) << i;
  }

  ConnTable used(64);
  used.insert(key6(1), used.hashOf(key6(1)), 1, 1, 10);
  const ConnTable::Seeds before = used.seeds();
  EXPECT_FALSE(used.reseed(saved.seeds()));
  EXPECT_EQ(used.seeds(), before);
  keel_ct_value v;
  EXPECT_TRUE(used.peek(key6(1), 10, 0, &v));
}

}  // namespace
}  // namespace keel::dpdk
