// SPDX-License-Identifier: Apache-2.0
#include "dataplane/dpdk/worker_path.h"

#include <cstring>

#include "keel/encap.h"
#include "keel/hash.h"
#include "keel/maglev_lookup.h"
#include "keel/parse.h"
#include "keel/rate.h"

namespace keel::dpdk {

namespace {

inline PacketResult finish(WorkerState& w, Verdict v, int reason, uint32_t bytes,
                           uint32_t backendId = KEEL_INVALID_ID) {
  countPacket(w.counters.reasons[reason], bytes);
  return PacketResult{v, static_cast<uint8_t>(reason), backendId};
}

inline const keel_service_value* findService(const Snapshot& s, keel_service_key k) {
  if (const keel_service_value* v = snapshotFindService(s, k)) return v;
  k.port = 0;  // a port-0 service takes every port the exact lookup missed
  return snapshotFindService(s, k);
}

// Service and backend counters count what was sent (as the XDP plane does);
// drops and passes are only in the reason counters. No bounds checks: the
// ids come from the snapshot, whose TableStore accepts none at or above the
// limits the counters are sized by (WorkerCounters).
inline void countForwarded(WorkerState& w, uint32_t svcId, uint32_t beId, uint32_t bytes) {
  countPacket(w.counters.services[svcId], bytes);
  countPacket(w.counters.backends[beId], bytes);
}

// A backend a packet of service svcId may use: valid and owned by svcId.
inline bool usable(const BackendSlot* slot, uint32_t svcId) {
  return slot && (slot->be.flags & KEEL_BE_F_VALID) && slot->be.service_id == svcId;
}

// The backend a connection-table entry sends a packet of service svcId to,
// or null: the rule for a hit (maps_abi.h), usable and still at the
// generation the entry was picked with.
inline const BackendSlot* entryBackend(const Snapshot& s, const keel_ct_value& v, uint32_t svcId) {
  const BackendSlot* slot = snapshotBackend(s, v.backend_id);
  return usable(slot, svcId) && slot->be.gen == v.gen ? slot : nullptr;
}

// The VIP check and service lookup of the last packet, reused by the next
// one if it has the same destination (address, family, port, protocol).
// It lives for one processBurst() call, never longer: one burst sees one
// snapshot, and a new snapshot always starts with an empty cache.
struct BurstCache {
  // The destination part of the cached flow key, as the key's 8-byte words
  // 2-4 (dst, then ports/proto/family with the source port cleared); all
  // zero: nothing cached (a parsed packet's family is 4 or 6).
  uint64_t dst[2] = {0, 0};
  uint64_t rest = 0;
  bool isVip = false;
  const keel_service_value* svc = nullptr;  // when isVip: exact port, else port 0, else null

  static constexpr uint64_t kNoSport = ~uint64_t{0xffff};  // sport: the low 16 bits of word 4

  // Whether the cached lookup is the one for this flow's destination: three
  // 8-byte compares of the key as the parser wrote it (see equal16).
  bool holds(const keel_flow_key& k) const {
    return ((keyWord(k, 2) ^ dst[0]) | (keyWord(k, 3) ^ dst[1]) | ((keyWord(k, 4) & kNoSport) ^ rest)) == 0;
  }

  // Looks up k's destination. Out of line, like every path an established
  // flow does not take: inlined, their values competed for the hot path's
  // registers and GCC spilled the hot path's to the stack.
  [[gnu::noinline]] void fill(const Snapshot& s, const keel_flow_key& k) {
    keel_service_key sk;
    std::memcpy(sk.vip, k.dst, sizeof sk.vip);
    sk.port = k.dport;
    sk.proto = k.proto;
    sk.family = k.family;
    keel_vip_key vk{};
    std::memcpy(vk.addr, sk.vip, sizeof vk.addr);
    vk.family = sk.family;
    dst[0] = keyWord(k, 2);
    dst[1] = keyWord(k, 3);
    rest = keyWord(k, 4) & kNoSport;
    isVip = snapshotHasVip(s, vk);
    svc = isVip ? findService(s, sk) : nullptr;
  }
};

// Stage 2 of the parser runs here, before the VIP check, unlike XDP; that
// is only reading: its result is used only for VIPs, so every verdict is
// the same as bpf/balancer.bpf.c's.
inline void parse(const PacketBuf& b, ParsedPacket& out) {
  void* d = b.data;
  void* end = b.data + b.len;
  out.l3 = keel_parse_l3(d, end, &out.pkt);
  out.l4 = out.l3 == KEEL_CONTINUE ? keel_parse_l4(d, end, &out.pkt) : out.l3;
}

// An echo request to a VIP: answered in place.
[[gnu::noinline]] PacketResult echo(WorkerState& w, void* data, void* end, const keel_pkt& p,
                                   const keel_node_config& node, uint32_t bytes) {
  if (keel_icmp_echo_reply(data, end, &p, node.local_mac) != 0)
    return finish(w, Verdict::kDrop, KEEL_R_DROP_TRUNCATED, bytes);
  return finish(w, Verdict::kTx, KEEL_R_TX_ICMP_ECHO, bytes);
}

// A packet over the MTU once encapsulated: ICMP frag-needed / packet-too-big
// back to the client (include/keel/encap.h says when and how; mtu is the
// largest inner packet that fits; at most node.icmp_too_big_rate answers a
// second from this worker, and icmp_too_big_client_rate to one client), else
// DROP_TOO_BIG. The frame grows at its
// front into the headroom and ends after the quote. The real got nothing, so
// neither the service nor the backend counts it. Out of line (see
// BurstCache::fill).
[[gnu::noinline]] PacketResult tooBig(WorkerState& w, PacketBuf& b, const keel_pkt& p, uint32_t mtu,
                                      const keel_node_config& node, uint64_t nowNs, uint32_t bytes) {
  if (!keel_icmp_too_big_wanted(b.data, b.data + b.len, &p) ||
      !keel_icmp_too_big_allow(&w.icmpClientTat[keel_icmp_client_slot(&p.key)], &w.icmpTat, nowNs,
                               node.icmp_too_big_client_rate, node.icmp_too_big_rate))
    return finish(w, Verdict::kDrop, KEEL_R_DROP_TOO_BIG, bytes);
  const uint16_t grow = keel_icmp_too_big_grow(p.key.family);
  if (b.headroom < grow) return finish(w, Verdict::kDrop, KEEL_R_DROP_ENCAP_FAILED, bytes);
  uint8_t* start = b.data - grow;
  const uint32_t len = keel_icmp_too_big_len(&p);  // <= grow + b.len: wanted() saw ip_len >= the quote
  if (keel_icmp_too_big_write(start, start + len, &p, mtu, node.local_mac) != 0)
    return finish(w, Verdict::kDrop, KEEL_R_DROP_ENCAP_FAILED, bytes);
  b.data = start;
  b.len = len;
  b.headroom -= grow;
  return finish(w, Verdict::kTx, KEEL_R_TX_ICMP_TOO_BIG, bytes);
}

// The backend the worker's table holds p's flow for, if a packet of
// service svcId may use it (entryBackend), its id in beId; refreshed when
// `touch` (a flow's own packet). Null if none.
inline const BackendSlot* heldBackend(const Snapshot& s, WorkerState& w, const keel_pkt& p, uint32_t svcId,
                                      uint32_t connHash, uint64_t nowNs, uint64_t idleNs, uint32_t& beId,
                                      bool touch) {
  keel_ct_value* e = w.conns.find(p.key, connHash, nowNs, idleNs);
  const BackendSlot* held = e ? entryBackend(s, *e, svcId) : nullptr;
  if (!held) return nullptr;
  beId = e->backend_id;
  if (touch) ConnTable::touch(*e, nowNs);
  return held;
}

// Whether node.conntrack_insert_rate lets this worker write one more entry
// now (keel_ct_insert_allow); a refusal is counted.
inline bool insertAllowed(const Snapshot& s, WorkerState& w, uint64_t nowNs) {
  if (keel_ct_insert_allow(&w.ctInsertTat, nowNs, s.node.conntrack_insert_rate)) return true;
  countEvent(w.counters.ctInsertsSkipped);
  return false;
}

// A flow the connection table does not hold (or holds for a real it may no
// longer use), or a SYN: its real from the service's ring, remembered unless
// the packet is an ICMP error or a TCP RST (which follow their flow but never
// create one: keel_ct_may_insert) or the worker is past
// node.conntrack_insert_rate. A SYN (keel_tcp_syn,
// never looked up in stage 1) asks the limit only once the ring gave it a
// usable real, so SYNs to a service with none spend no other flow's insert
// (as bpf/lib/conntrack.h); one the limit refuses follows the table like
// any segment: its entry cannot be rewritten, so the connection's next
// segments would follow the old one to another real. midflowMiss (Step):
// the packet is counted as a mid-flow miss, unless its insert finds the
// flow's own live way, written by an earlier packet of this burst.
// Null if the ring has no usable real. Out of line (see BurstCache::fill).
[[gnu::noinline]] const BackendSlot* pick(const Snapshot& s, WorkerState& w, const keel_pkt& p,
                                          const keel_service_value& svc, uint32_t connHash, uint64_t nowNs,
                                          uint32_t schedHash, bool midflowMiss, bool syn, uint32_t& beId) {
  // An evicted flow counts as live within its idle timeout (none: always).
  const uint64_t idleNs = snapshotIdleNs(s, p.key.proto);
  const uint64_t liveNs = idleNs ? idleNs : UINT64_MAX;
  const uint32_t* ring = svc.id < s.maxServices ? s.rings[svc.id] : nullptr;
  const uint32_t m = ring ? ring[0] : 0;
  const BackendSlot* be = nullptr;
  if (m != 0) {
    beId = ring[keel_ring_index(schedHash, m)];
    be = snapshotBackend(s, beId);
  }
  if (!usable(be, svc.id)) {
    // No insert: no earlier packet of the burst (one snapshot) wrote it either.
    if (midflowMiss) countEvent(w.counters.ctMidflowMisses);
    return nullptr;
  }
  if (!keel_ct_may_insert(&p)) return be;  // an ICMP error or a TCP RST follows a flow, never makes one
  __u64& inserted = w.passInserts[connHash >> 28];
  const __u64 bit = __u64{1} << ((connHash >> 22) & 63);
  // A later packet of a flow an earlier packet of this pass inserted
  // (stage 1 looked before that insert): packet by packet it would have
  // hit that entry, so it neither asks the insert limit again (one more
  // token spent, a skip counted for a flow that was inserted) nor counts
  // as a mid-flow miss. Looked for only when the pass's filter says an
  // insert may have been this flow's (a pass inserts at most 32 flows, so
  // ~3 % of misses look for nothing): a second look for every non-SYN
  // miss cost ~8 % of the packet path's rate for them (dpdk_bench
  // --path-only --new-acks; dpdk.md). A SYN is picked from the ring
  // whatever the table holds.
  if (!syn && (inserted & bit))
    if (const BackendSlot* held = heldBackend(s, w, p, svc.id, connHash, nowNs, idleNs, beId, false)) return held;
  if (!insertAllowed(s, w, nowNs)) {
    // Past node.conntrack_insert_rate: forwarded, not remembered (rate.h).
    // A refused SYN follows a usable entry instead, as any segment would.
    if (syn)
      if (const BackendSlot* held = heldBackend(s, w, p, svc.id, connHash, nowNs, idleNs, beId, true)) return held;
    if (midflowMiss && !w.conns.find(p.key, connHash, nowNs, idleNs)) countEvent(w.counters.ctMidflowMisses);
    return be;
  }
  inserted |= bit;
  if (!w.conns.insert(p.key, connHash, beId, be->be.gen, nowNs, liveNs) && midflowMiss)
    countEvent(w.counters.ctMidflowMisses);
  return be;
}

// What the first stage of processBurst() leaves for the last about a packet
// on its way to a real.
struct Step {
  const keel_service_value* svc;  // null: the packet's result is already final
  const BackendSlot* be;          // null: the connection table does not hold the flow for a usable real
  uint32_t beId;
  uint32_t flowHash;              // keel_flow_hash(), when haveFlowHash
  bool haveFlowHash;
  bool midflowMiss;               // a TCP packet past its SYN the table did not hold (pick())
  bool syn;                       // keel_tcp_syn: not looked up, picked from the ring (pick())
};

// An ICMP error whose flow this worker's table does not hold for a usable
// real: the flow's entry in another worker's table, if one holds it (the
// most recently seen if several do), so the error reaches the real that
// owns the connection as in XDP, whose one table every CPU shares. An entry
// read there counts only under the rules of a hit (valid, this service,
// same generation); a way read while its worker rewrote it can still name
// another valid real of this service (storeRelaxed in conn_table.h says
// why), which has no such connection and ignores the error. Nothing is
// written: the error neither creates nor refreshes an entry. Each call
// reads a line of every other worker's table, so it is rate-limited here
// (WorkerState::peerLookupRate, a budget for path-MTU errors and one for
// the others); past the limit the error follows the ring
// without a look. Every call is counted by its outcome (PeerLookup).
// Called with step.be null; out of line (see BurstCache::fill).
[[gnu::noinline]] void peerEntry(const Snapshot& s, WorkerState& w, const keel_pkt& p, uint32_t svcId,
                                 uint64_t nowNs, uint64_t idleNs, Step& step) {
  if (!keel_rate_allow(p.icmp_error == KEEL_ICMP_ERROR_PMTU ? &w.peerTat : &w.peerOtherTat, nowNs,
                       w.peerLookupRate)) {
    countEvent(w.counters.icmpPeer[kPeerRateLimited]);
    return;
  }
  uint64_t newest = 0;
  for (const ConnTable* t : w.peers) {
    keel_ct_value v;
    if (!t->peek(p.key, nowNs, idleNs, &v) || v.last_seen_ns <= newest) continue;
    const BackendSlot* cand = entryBackend(s, v, svcId);
    if (!cand) continue;
    newest = v.last_seen_ns;
    step.be = cand;
    step.beId = v.backend_id;
  }
  countEvent(w.counters.icmpPeer[step.be ? kPeerFound : kPeerNotFound]);
}

// Stage 1: every verdict up to the connection table. Either `result` is the
// packet's final one (step.svc stays null), or `step` says where it goes on.
// Inlined into its loop.
[[gnu::always_inline]] inline void lookup(const Snapshot& s, WorkerState& w, const PacketBuf& b,
                                          const ParsedPacket& parsed, uint64_t nowNs, BurstCache& cache,
                                          PacketResult& result, Step& step) {
  const uint32_t bytes = b.len;
  const keel_pkt& p = parsed.pkt;
  step.svc = nullptr;

  int rc = parsed.l3;
  if (rc != KEEL_CONTINUE) {
    result = finish(w, Verdict::kPass, rc, bytes);
    return;
  }

  // The service is looked up with the VIP, before the L4 verdict is read,
  // on the key as the parser left it (a pure read); it is used only where
  // bpf/balancer.bpf.c looks it up, so every verdict is still the same.
  if (!cache.holds(p.key)) cache.fill(s, p.key);
  if (!cache.isVip) {
    result = finish(w, Verdict::kPass, KEEL_R_PASS_NOT_VIP, bytes);
    return;
  }

  rc = parsed.l4;
  if (rc == KEEL_ICMP_ECHO) {
    result = echo(w, b.data, b.data + b.len, p, s.node, bytes);
    return;
  }
  if (rc != KEEL_CONTINUE) {
    result = finish(w, Verdict::kDrop, rc, bytes);
    return;
  }

  const keel_service_value* svc = cache.svc;
  if (!svc) {
    result = finish(w, Verdict::kPass, KEEL_R_PASS_NO_SERVICE, bytes);
    return;
  }

  // The connection table keeps a flow on its real across ring changes; an
  // entry is trusted only while its backend is valid, still belongs to this
  // service and still has the generation it was picked with (maps_abi.h).
  step.svc = svc;
  step.be = nullptr;
  step.beId = KEEL_INVALID_ID;
  step.haveFlowHash = false;
  step.midflowMiss = false;
  const uint64_t idleNs = snapshotIdleNs(s, p.key.proto);
  // A SYN opens a new connection: it is not looked up here; stage 3 picks
  // it from the ring and overwrites its entry (keel_tcp_syn), or, refused
  // by the insert limit, looks it up then (pick()).
  step.syn = keel_tcp_syn(&p);
  if (!step.syn) {
    if (keel_ct_value* e = w.conns.find(p.key, parsed.connHash, nowNs, idleNs)) {
      if (const BackendSlot* cand = entryBackend(s, *e, svc->id)) {
        step.be = cand;
        step.beId = e->backend_id;
        // An ICMP error follows its flow but does not keep it alive (as in
        // bpf/lib/conntrack.h): a forged one would hold a dead flow's entry.
        if (!p.icmp_error) ConnTable::touch(*e, nowNs);
      }
    } else {
      // A TCP packet past its SYN whose flow the table did not hold (as
      // bpf/lib/conntrack.h counts it; maps_abi.h says what it tells),
      // counted by pick() unless an earlier packet of the flow in this burst
      // wrote it meanwhile (XDP, packet by packet, would have hit it).
      step.midflowMiss = keel_tcp_midflow(&p);
    }
  }
  if (!step.be && p.icmp_error && !w.peers.empty()) peerEntry(s, w, p, svc->id, nowNs, idleNs, step);
}

// Whether stage 3 will use the packet's flow hash, known before it runs: a
// miss of a service that picks by it, or an ipip hit whose outer header
// reads it (an IPv6 one's flow label; a hashed source, looked at only if the
// snapshot hashes any source at all). A miss of a maglev-src service learns
// its real, so whether the header needs the hash, only in stage 3, which
// then computes it itself.
inline bool needsFlowHash(const Snapshot& s, const Step& step) {
  if (!step.svc) return false;
  if (!step.be) return !(step.svc->flags & KEEL_SVC_F_SCHED_SRC);
  if (step.svc->flags & KEEL_SVC_F_FWD_L2DSR) return false;
  return step.be->tpl.family == KEEL_AF_INET6 ||
         (s.hashesSources && keel_encap_hash_src(&step.be->tpl, step.svc->flags));
}

// Stage 3: a flow the table did not hold gets its real from the ring; then
// the rewrite (l2dsr or ipip) and the counters. Inlined into its loop.
[[gnu::always_inline]] inline PacketResult forward(const Snapshot& s, WorkerState& w, PacketBuf& b,
                                                   const ParsedPacket& parsed, uint64_t nowNs, Step& step) {
  const uint32_t bytes = b.len;
  const keel_pkt& p = parsed.pkt;
  const keel_service_value* svc = step.svc;
  const uint32_t svcId = svc->id;
  const BackendSlot* be = step.be;
  uint32_t beId = step.beId;
  if (!be) {
    const uint32_t schedHash = (svc->flags & KEEL_SVC_F_SCHED_SRC) ? keel_src_hash(&p.key) : step.flowHash;
    be = pick(s, w, p, *svc, parsed.connHash, nowNs, schedHash, step.midflowMiss, step.syn, beId);
    if (!be) return finish(w, Verdict::kDrop, KEEL_R_DROP_NO_BACKEND, bytes);
  }

  if (svc->flags & KEEL_SVC_F_FWD_L2DSR) {
    if (keel_l2_rewrite(b.data, b.data + b.len, be->be.mac, s.node.local_mac) != 0)
      return finish(w, Verdict::kDrop, KEEL_R_DROP_TRUNCATED, bytes);
    countForwarded(w, svcId, beId, bytes);
    return finish(w, Verdict::kTx, KEEL_R_TX_L2DSR, bytes, beId);
  }

  const uint16_t hdr = keel_encap_hdr_len(be->be.family);
  // The same test as XDP's bpf_check_mtu(ctx, 0, &ip_len, hdr): the L3
  // length grown by the outer header against the L3 MTU, so neither a VLAN
  // tag nor Ethernet padding counts.
  // The smaller of the port's MTU and node.tunnel_mtu (the path toward
  // the reals; bpf/lib/forward.h).
  const uint32_t mtu = s.node.tunnel_mtu && s.node.tunnel_mtu < w.mtu ? s.node.tunnel_mtu : w.mtu;
  if (p.ip_len + hdr > mtu) return tooBig(w, b, p, mtu - hdr, s.node, nowNs, bytes);
  if (b.headroom < hdr) return finish(w, Verdict::kDrop, KEEL_R_DROP_ENCAP_FAILED, bytes);
  // Bytes after the IP packet stay out of the tunnel (but a short frame's
  // padding: keel_encap_frame_len), as in bpf/lib/forward.h.
  b.len = keel_encap_frame_len(b.len, p.l3_off, p.ip_len);
  uint8_t* start = b.data - hdr;
  const int hashSrc = keel_encap_hash_src(&be->tpl, svc->flags);
  const uint32_t flowHash = !keel_encap_needs_flow_hash(&be->tpl, hashSrc) ? 0
                            : step.haveFlowHash                             ? step.flowHash
                                                                            : keel_flow_hash(&p.key);
  if (keel_encap_write(start, b.data + b.len, p.l3_off, &be->tpl, hashSrc, flowHash, p.key.family, p.tos,
                       p.ip_len) != 0)
    return finish(w, Verdict::kDrop, KEEL_R_DROP_ENCAP_FAILED, bytes);
  b.data = start;
  b.len += hdr;
  b.headroom -= hdr;
  countForwarded(w, svcId, beId, bytes);
  return finish(w, Verdict::kTx, KEEL_R_TX_IPIP, bytes, beId);
}

}  // namespace

void prepareBurst(WorkerState& w, const PacketBuf* bufs, ParsedPacket* parsed, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) parse(bufs[i], parsed[i]);
  for (uint32_t i = 0; i < n; ++i)
    if (parsed[i].l4 == KEEL_CONTINUE) {
      parsed[i].connHash = w.conns.hashOf(parsed[i].pkt.key);
      w.conns.prefetch(parsed[i].pkt.key.family, parsed[i].connHash);
    }
}

void processBurst(const Snapshot& s, WorkerState& w, PacketBuf* bufs, ParsedPacket* parsed, uint32_t n,
                  uint64_t nowNs, PacketResult* results) {
  BurstCache cache;
  constexpr uint32_t kStage = 32;  // packets per pass of the three stages
  Step steps[kStage];
  for (uint32_t base = 0; base < n; base += kStage) {
    const uint32_t m = n - base < kStage ? n - base : kStage;
    PacketBuf* b = bufs + base;
    ParsedPacket* pp = parsed + base;
    PacketResult* r = results + base;
    w.passInserts = {};
    for (uint32_t i = 0; i < m; ++i) lookup(s, w, b[i], pp[i], nowNs, cache, r[i], steps[i]);
    // Stage 2: the flow hash where stage 3 will need it (a miss of a service
    // that picks by it, a hit whose outer source is hashed), in a loop of
    // its own so the hash chains of several packets overlap.
    for (uint32_t i = 0; i < m; ++i)
      if (needsFlowHash(s, steps[i])) {
        steps[i].flowHash = keel_flow_hash(&pp[i].pkt.key);
        steps[i].haveFlowHash = true;
      }
    for (uint32_t i = 0; i < m; ++i)
      if (steps[i].svc) r[i] = forward(s, w, b[i], pp[i], nowNs, steps[i]);
  }
}

PacketResult processPacket(const Snapshot& s, WorkerState& w, PacketBuf& b, uint64_t nowNs) {
  ParsedPacket parsed;
  PacketResult result;
  prepareBurst(w, &b, &parsed, 1);
  processBurst(s, w, &b, &parsed, 1, nowNs, &result);
  return result;
}

}  // namespace keel::dpdk
