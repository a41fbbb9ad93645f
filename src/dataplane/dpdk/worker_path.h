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
//   ring[keel_sched_hash % M] -> ipip / l2dsr (VLAN tag kept); ipip over
//   the MTU: ICMP frag-needed / packet-too-big to the client.
// It never blocks, locks, allocates or throws.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "dataplane/dpdk/conn_table.h"
#include "dataplane/dpdk/tables.h"
#include "keel/encap.h"
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
// On kTx, data and len describe the rewritten frame, which may start earlier
// (into the headroom: up to 40 bytes for an outer header, 48 for an ICMP
// error's headers) and may be shorter (an ICMP error ends after its quote);
// the caller sets its buffer (the mbuf) from them.
struct PacketBuf {
  uint8_t* data;
  uint32_t len;
  uint32_t headroom;  // bytes before data we may write into
};

// What an ICMP error's lookup in the other workers' tables gave
// (WorkerState::peers): one counter each (WorkerCounters::icmpPeer).
enum PeerLookup : uint8_t {
  kPeerFound,        // a peer's entry passed the checks of a hit: the error followed its flow
  kPeerNotFound,     // none did: the error followed the ring
  kPeerRateLimited,  // over peerLookupRate, not looked up: the error followed the ring
  kPeerLookupResults,
};

// Per-lcore counters, summed by readStats(). Only the owning worker writes;
// the control plane reads with relaxed atomic loads (a counter may be one
// packet behind, never torn on 64-bit targets). Sized by the limits of the
// TableStore whose snapshots the worker reads: the packet path indexes them
// with the snapshot's service and backend ids unchecked.
struct alignas(64) WorkerCounters {
  WorkerCounters(uint32_t maxServices, uint32_t maxBackends)
      : services(maxServices), backends(maxBackends) {}
  std::vector<keel_counter> services;
  std::vector<keel_counter> backends;
  keel_counter reasons[KEEL_R_MAX] = {};
  // ICMP errors that took the peer lookup, by PeerLookup (countEvent).
  uint64_t icmpPeer[kPeerLookupResults] = {};
  // Packets of flows the table did not hold, forwarded but not written:
  // over node.conntrack_insert_rate (keel_ct_insert_allow; countEvent).
  uint64_t ctInsertsSkipped = 0;
  // TCP packets without SYN whose flow the table did not hold
  // (KEEL_CT_S_MIDFLOW_MISS; countEvent).
  uint64_t ctMidflowMisses = 0;
};

// Everything a worker owns. One per lcore, cache-aligned so two workers never
// share a line.
struct alignas(64) WorkerState {
  WorkerState(uint32_t connCapacity, uint32_t maxServices, uint32_t maxBackends, uint32_t mtu_,
              const ConnMemory& connMemory = kHeapConnMemory, uint64_t connSeed = 0)
      : conns(connCapacity, connMemory, connSeed), counters(maxServices, maxBackends), mtu(mtu_) {}
  ConnTable conns;
  // The other workers' tables, read (never written) for ICMP errors that
  // miss this worker's own: RSS hashes an error by its own addresses (the
  // router's and the VIP), not by the flow it quotes, so it rarely reaches
  // the worker that holds that flow. Set once before the workers start;
  // empty with one worker and in tests that do not set it.
  std::vector<const ConnTable*> peers;
  // Errors looked up in `peers`, at most this many a second (bursts of a
  // twentieth; keel_rate_allow, as for too-big answers): each such
  // lookup reads one line of every other worker's table, and errors are easy
  // to forge. Past it an error follows the ring. Legitimate errors come once
  // per flow and path-MTU change, far below it. Each error that takes the
  // lookup is counted by its outcome (counters.icmpPeer), so an operator
  // sees when the limit turns errors away (keel_dpdk_icmp_peer_lookups_total).
  // Path-MTU errors (frag-needed, packet too big) and the others
  // (unreachable, time exceeded; routine for UDP services) each have a
  // budget of their own at this rate, so the others never spend path-MTU
  // discovery's (KEEL_ICMP_ERROR_*).
  uint32_t peerLookupRate = 10000;
  __u64 peerTat = 0;       // path-MTU errors
  __u64 peerOtherTat = 0;  // every other error
  WorkerCounters counters;
  uint32_t mtu;  // L3 MTU of the port: an encapsulated packet above it gets ICMP too-big or DROP_TOO_BIG
  __u64 icmpTat = 0;  // the ICMP too-big answers' rate limit (keel_icmp_too_big_allow)
  __u64 ctInsertTat = 0;  // the connection-table insert limit (keel_ct_insert_allow)
  // The flows inserted so far in the current pass of processBurst()'s
  // stages, as a 1024-bit filter of their table hash's top 10 bits: a later
  // miss of the pass looks the table up again only when its bit is set
  // (pick()), the one case its first look may have come before an insert.
  std::array<__u64, 16> passInserts{};
  // The same per client, by keel_icmp_client_slot(): 32 KiB, last, so the
  // fields the packet path reads for every packet keep their lines.
  std::array<__u64, KEEL_ICMP_CLIENT_SLOTS> icmpClientTat{};
};

struct PacketResult {
  Verdict verdict;
  uint8_t reason;      // keel_reason
  uint32_t backendId;  // KEEL_INVALID_ID unless forwarded to a backend
};

// What the first pass over a burst learned about one packet: the parse
// results and the connection table's hash, so the second pass does neither
// again.
struct ParsedPacket {
  keel_pkt pkt;
  int l3;             // keel_parse_l3() result
  int l4;             // keel_parse_l4() result (valid when l3 == KEEL_CONTINUE)
  uint32_t connHash;  // ConnTable::hashOf() (valid when l4 == KEEL_CONTINUE)
};

// First pass over a burst of n packets: parses every packet, then, in a
// second loop, hashes every flow for the connection table and prefetches its
// bucket. Reads the packets only; no counters move. The flow hash that picks
// a real (keel_flow_hash) is left to the second pass, which needs it only
// for a flow the table does not hold or a hashed outer source. The prefetches
// get a loop of their own, away from the parses: a prefetch whose line is on
// a page the TLB does not hold cannot retire before its page walk ends, so
// between two parses only one or two walks were in flight at a time; issued
// nearly back to back, a burst's walks overlap. (Spreading them over the
// second pass instead was 17-34% slower in perf/dpdk/dpdk_bench; docs/dpdk.md,
// Measurements.)
// The lcore loop runs this one burst ahead of processBurst(), so the
// buckets arrive while the previous burst is processed.
void prepareBurst(WorkerState& worker, const PacketBuf* bufs, ParsedPacket* parsed, uint32_t n);

// Second pass: the decision and the rewrite of each packet of a burst that
// prepareBurst() read (the same, unmodified buffers), under one snapshot
// and one clock reading. results[i] is packet i's; on kTx, bufs[i] describes
// the rewritten frame. The VIP check and service lookup of a packet are
// reused by the next one with the same destination (a burst's packets
// mostly go to a few services, often one), so most packets hash and probe
// no service table at all.
void processBurst(const Snapshot& snap, WorkerState& worker, PacketBuf* bufs, ParsedPacket* parsed,
                  uint32_t n, uint64_t nowNs, PacketResult* results);

// Both passes for one packet (tests, fixtures, the fuzz run).
PacketResult processPacket(const Snapshot& snap, WorkerState& worker, PacketBuf& pkt,
                           uint64_t nowNs);

// Adds one packet of `bytes` to a counter without tearing for readers.
inline void countPacket(keel_counter& c, uint64_t bytes) {
  __atomic_store_n(&c.packets, c.packets + 1, __ATOMIC_RELAXED);
  __atomic_store_n(&c.bytes, c.bytes + bytes, __ATOMIC_RELAXED);
}

// Adds one to a count of events, the same way (a plain load and a relaxed
// store: only the owning worker writes it, so no read-modify-write).
inline void countEvent(uint64_t& c) { __atomic_store_n(&c, c + 1, __ATOMIC_RELAXED); }

}  // namespace keel::dpdk
