// SPDX-License-Identifier: Apache-2.0
// The DPDK worker's packet path as a pure function over the published tables,
// the worker's own state and one packet buffer. No DPDK types: the same code
// runs in the lcore loop (over an rte_mbuf's data), in the unit tests, in the
// fixture tables and in the AddressSanitizer fuzz executable.
//
// Decision logic mirrors bpf/balancer.bpf.c step for step:
//   parse L3 -> not a VIP: PASS (the exception path) -> parse L4 (verdict
//   table of include/keel/parse.h) -> ICMP echo: reply -> service lookup,
//   exact port then port 0 -> connection table (hit valid only if backend
//   VALID, service_id matches, gen matches; else re-pick and overwrite) ->
//   ring[keel_sched_hash % M] -> ipip / l2dsr (VLAN tag kept).
// It never blocks, locks, allocates or throws.
#pragma once

#include <cstdint>
#include <vector>

#include "dataplane/dpdk/conn_table.h"
#include "dataplane/dpdk/tables.h"
#include "keel/hash.h"
#include "keel/maps_abi.h"
#include "keel/parse.h"

namespace keel::dpdk {

enum class Verdict : uint8_t {
  kPass,  // to the exception path (kernel), unchanged
  kDrop,  // freed, counted
  kTx,    // back out of the port, rewritten
};

// A frame in a buffer that may have room in front of it (mbuf headroom).
// On kTx, data and len describe the rewritten frame; data may have moved
// back by up to 40 bytes (the outer header).
struct PacketBuf {
  uint8_t* data;
  uint32_t len;
  uint32_t headroom;  // bytes before data we may write into
};

// Per-lcore counters, summed by readStats(). Only the owning worker writes;
// the control plane reads with relaxed atomic loads (a counter may be one
// packet behind, never torn on 64-bit targets).
struct alignas(64) WorkerCounters {
  WorkerCounters(uint32_t maxServices, uint32_t maxBackends)
      : services(maxServices), backends(maxBackends) {}
  std::vector<keel_counter> services;
  std::vector<keel_counter> backends;
  keel_counter reasons[KEEL_R_MAX] = {};
};

// Everything a worker owns. One per lcore, cache-aligned so two workers never
// share a line.
struct alignas(64) WorkerState {
  WorkerState(uint32_t connCapacity, uint32_t maxServices, uint32_t maxBackends, uint32_t mtu_,
              const ConnMemory& connMemory = kHeapConnMemory)
      : conns(connCapacity, connMemory), counters(maxServices, maxBackends), mtu(mtu_) {}
  ConnTable conns;
  WorkerCounters counters;
  uint32_t mtu;  // L3 MTU of the port: an encapsulated packet above it is DROP_TOO_BIG
};

struct PacketResult {
  Verdict verdict;
  uint8_t reason;      // keel_reason
  uint32_t backendId;  // KEEL_INVALID_ID unless forwarded to a backend
};

// What the first pass over a burst learned about one packet: the parse
// results and the flow hash, so the second pass does neither again.
struct ParsedPacket {
  keel_pkt pkt;
  int l3;             // keel_parse_l3() result
  int l4;             // keel_parse_l4() result (valid when l3 == KEEL_CONTINUE)
  uint32_t flowHash;  // keel_flow_hash() (valid when l4 == KEEL_CONTINUE)
};

// The VIP check and service lookup of the last packet of a burst, reused by
// the next one if it has the same destination (address, family, port,
// protocol). A burst's packets mostly go to a few services, often one, and
// one burst sees one snapshot, so this saves two key hashes and probes per
// packet. It lives on the worker's stack for one burst, never longer: a new
// snapshot always starts with an empty cache.
struct BurstCache {
  keel_service_key key{};  // the exact-port lookup's key; family 0: nothing cached (parsed packets have 4 or 6)
  bool isVip = false;
  const keel_service_value* svc = nullptr;  // when isVip: exact port, else port 0, else null
};

// First pass over a burst: parses the packet. Reads the packet only; no
// counters move.
void parsePacket(const uint8_t* data, uint32_t len, ParsedPacket& out);

// Then the flow hash of a parsed packet. A separate loop over the burst:
// MurmurHash3 is one chain of ~40 dependent instructions, which inside the
// parse loop ran nearly serially; a loop of hashes alone lets the core
// overlap the chains of several packets.
inline void hashParsed(ParsedPacket& p) {
  if (p.l4 == KEEL_CONTINUE) p.flowHash = keel_flow_hash(&p.pkt.key);
}

// Pulls the parsed packet's connection-table bucket toward the cache, so the
// second pass finds it there. The worker issues a whole burst's prefetches
// back to back, after parsing the burst: a prefetch whose line is on a page
// the TLB does not hold cannot retire before its page walk ends, so between
// two parses (~150 instructions each) only one or two walks were in flight
// at a time; issued together, a burst's walks overlap (docs/dpdk.md,
// Measurements).
inline void prefetchParsed(const WorkerState& worker, const ParsedPacket& p) {
  if (p.l4 == KEEL_CONTINUE) worker.conns.prefetch(p.pkt.key.family, p.flowHash);
}

// Both for one packet.
inline void parseAndPrefetch(WorkerState& worker, const uint8_t* data, uint32_t len, ParsedPacket& out) {
  parsePacket(data, len, out);
  hashParsed(out);
  prefetchParsed(worker, out);
}

// Second pass: the decision and the rewrite, from the first pass's results.
// pkt must be the same, unmodified buffer parseAndPrefetch() read; cache
// belongs to the current burst (see BurstCache).
PacketResult processParsed(const Snapshot& snap, WorkerState& worker, PacketBuf& pkt,
                           ParsedPacket& parsed, uint64_t nowNs, BurstCache& cache);

// Both passes for one packet (tests, fixtures, the fuzz run).
PacketResult processPacket(const Snapshot& snap, WorkerState& worker, PacketBuf& pkt,
                           uint64_t nowNs);

// Adds one packet of `bytes` to a counter without tearing for readers.
inline void countPacket(keel_counter& c, uint64_t bytes) {
  __atomic_store_n(&c.packets, c.packets + 1, __ATOMIC_RELAXED);
  __atomic_store_n(&c.bytes, c.bytes + bytes, __ATOMIC_RELAXED);
}

}  // namespace keel::dpdk
