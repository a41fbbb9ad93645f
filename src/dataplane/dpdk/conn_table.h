// SPDX-License-Identifier: Apache-2.0
// Per-worker connection table: flow key -> (backend id, generation).
//
// Why this shape rather than rte_hash: each worker owns its table (RSS keeps
// a flow on one queue, so one worker), so no locking or atomics are needed;
// the table is allocated once at start-up and never grows; and eviction is
// ours to choose. It is a bucketised open-addressing table: the flow hash
// picks a bucket of kWays entries, one cache line each (key 40 B + value 16 B
// + hash 4 B). An insert takes the first empty way, else evicts the way with
// the oldest last_seen (LRU-ish; an expired way is among the oldest), so a
// full table degrades to re-picking the coldest flows from the ring - the
// same answer for them unless the ring changed. Entries are never cleared,
// so the live ways of a bucket are always a prefix: a lookup stops at the
// first empty way, and in a table with room most flows are found in way 0,
// the one line the worker prefetches.
// rte_hash would need its own aging pass and a writer lock or lock-free
// extendable buckets; neither buys anything for a single-writer table.
#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "keel/maps_abi.h"

namespace keel::dpdk {

struct alignas(64) ConnEntry {
  keel_flow_key key;
  keel_ct_value value;  // last_seen_ns == 0: empty
  uint32_t hash;
  uint32_t pad;
};
static_assert(sizeof(ConnEntry) == 64, "one cache line per entry");

class ConnTable {
 public:
  static constexpr uint32_t kWays = 4;

  // capacity is rounded up to a power of two number of buckets.
  explicit ConnTable(uint32_t capacity) {
    uint32_t buckets = 1;
    while (buckets * kWays < capacity) buckets <<= 1;
    mask_ = buckets - 1;
    // 2 MiB-aligned and advised onto transparent huge pages: with a million
    // entries spread over 64 MiB, 4 KiB pages would add a TLB miss (and a
    // page walk) to every lookup on top of the cache miss.
    const size_t huge = 2u << 20;
    size_t bytes = static_cast<size_t>(buckets) * kWays * sizeof(ConnEntry);
    bytes = (bytes + huge - 1) / huge * huge;
    void* mem = std::aligned_alloc(huge, bytes);
    if (!mem) throw std::bad_alloc();  // start-up only, never on the packet path
    madvise(mem, bytes, MADV_HUGEPAGE);
    std::memset(mem, 0, bytes);
    entries_.reset(static_cast<ConnEntry*>(mem));
  }

  uint32_t capacity() const { return (mask_ + 1) * kWays; }

  // The live entry for key, or null. An entry idle longer than idleNs (when
  // idleNs != 0) is treated as absent: the flow is re-picked, as in XDP.
  ConnEntry* find(const keel_flow_key& key, uint32_t hash, uint64_t nowNs, uint64_t idleNs) {
    ConnEntry* b = bucket(hash);
    for (uint32_t w = 0; w < kWays; ++w) {
      ConnEntry& e = b[w];
      if (e.value.last_seen_ns == 0) return nullptr;  // ways fill in order: the rest are empty
      if (e.hash != hash) continue;
      if (std::memcmp(&e.key, &key, sizeof key) != 0) continue;
      if (idleNs != 0 && nowNs - e.value.last_seen_ns > idleNs) return nullptr;
      return &e;
    }
    return nullptr;
  }

  // Writes key -> (backend, gen), reusing the key's own way if present.
  void insert(const keel_flow_key& key, uint32_t hash, uint32_t backendId, uint32_t gen,
              uint64_t nowNs) {
    ConnEntry* b = bucket(hash);
    ConnEntry* victim = &b[0];
    for (uint32_t w = 0; w < kWays; ++w) {
      ConnEntry& e = b[w];
      if (e.value.last_seen_ns == 0) {  // the first empty way; the key is not further on
        victim = &e;
        break;
      }
      if (e.hash == hash && std::memcmp(&e.key, &key, sizeof key) == 0) {
        victim = &e;
        break;
      }
      if (e.value.last_seen_ns < victim->value.last_seen_ns) victim = &e;
    }
    victim->key = key;
    victim->hash = hash;
    victim->value.backend_id = backendId;
    victim->value.gen = gen;
    victim->value.last_seen_ns = nowNs ? nowNs : 1;  // 0 marks an empty way
  }

  // Refreshes last_seen at most once a second: enough for idle timeouts in
  // seconds, and it keeps established flows from dirtying the line per packet.
  static void touch(ConnEntry& e, uint64_t nowNs) {
    if (nowNs - e.value.last_seen_ns > 1000000000ull) e.value.last_seen_ns = nowNs ? nowNs : 1;
  }

  // Pulls a flow's bucket toward the cache ahead of find()/insert(): with
  // many flows the bucket is a DRAM miss, and the worker prefetches a whole
  // burst's buckets before touching the first one. Only way 0: ways fill in
  // order, so in a table sized for its flows (the default is 1M entries)
  // nearly every live flow sits in way 0 and a miss stops at an empty way 0.
  // Prefetching all four ways was 2.5x slower with 100,000 flows: 128 lines
  // a burst overrun the core's outstanding-miss slots, so the prefetches that
  // mattered were dropped (perf/dpdk/dpdk_bench --path-only).
  void prefetch(uint32_t hash) const { __builtin_prefetch(&entries_[static_cast<size_t>(hash & mask_) * kWays]); }

  size_t countLive() const {
    size_t n = 0;
    for (size_t i = 0; i < capacity(); ++i) n += entries_[i].value.last_seen_ns != 0;
    return n;
  }

 private:
  ConnEntry* bucket(uint32_t hash) { return &entries_[static_cast<size_t>(hash & mask_) * kWays]; }

  struct Free {
    void operator()(ConnEntry* p) const { std::free(p); }
  };
  uint32_t mask_ = 0;
  std::unique_ptr<ConnEntry[], Free> entries_;
};

}  // namespace keel::dpdk
