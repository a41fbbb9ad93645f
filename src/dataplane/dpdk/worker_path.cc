// SPDX-License-Identifier: Apache-2.0
#include "dataplane/dpdk/worker_path.h"

#include <cstring>

#include "keel/encap.h"
#include "keel/hash.h"
#include "keel/maglev_lookup.h"
#include "keel/parse.h"

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
// drops and passes are only in the reason counters.
inline void countForwarded(WorkerState& w, uint32_t svcId, uint32_t beId, uint32_t bytes) {
  if (svcId < w.counters.services.size()) countPacket(w.counters.services[svcId], bytes);
  countPacket(w.counters.backends[beId], bytes);
}

// A backend a packet of service svcId may use: valid and owned by svcId.
inline bool usable(const keel_backend* be, uint32_t svcId) {
  return be && (be->flags & KEEL_BE_F_VALID) && be->service_id == svcId;
}

// The VIP check and service lookup of the last packet, reused by the next
// one if it has the same destination (address, family, port, protocol).
// It lives for one processBurst() call, never longer: one burst sees one
// snapshot, and a new snapshot always starts with an empty cache.
struct BurstCache {
  keel_service_key key{};  // the exact-port lookup's key; family 0: nothing cached (parsed packets have 4 or 6)
  bool isVip = false;
  const keel_service_value* svc = nullptr;  // when isVip: exact port, else port 0, else null

  // Whether the cached lookup is the one for this flow's destination. Read
  // field by field from both keys: a service key built on the stack with
  // partial stores and compared whole made the compare wait on a failed
  // store-to-load forwarding (~20% of processBurst in perf).
  bool holds(const keel_flow_key& k) const {
    // & rather than &&: one branch for the whole compare.
    return equal16(k.dst, key.vip) & (((k.dport ^ key.port) | (k.proto ^ key.proto) | (k.family ^ key.family)) == 0);
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

// The decision and the rewrite of one packet from the first pass's results;
// inlined into processBurst's loop.
[[gnu::always_inline]] inline PacketResult decide(const Snapshot& s, WorkerState& w, PacketBuf& b,
                                                  ParsedPacket& parsed, uint64_t nowNs, BurstCache& cache) {
  const uint32_t bytes = b.len;
  void* data = b.data;
  void* end = b.data + b.len;
  keel_pkt& p = parsed.pkt;

  int rc = parsed.l3;
  if (rc != KEEL_CONTINUE) return finish(w, Verdict::kPass, rc, bytes);

  // The service is looked up with the VIP, before the L4 verdict is read,
  // on the key as the parser left it (a pure read); it is used only where
  // bpf/balancer.bpf.c looks it up, so every verdict is still the same.
  if (!cache.holds(p.key)) {
    keel_service_key sk;
    std::memcpy(sk.vip, p.key.dst, sizeof sk.vip);
    sk.port = p.key.dport;
    sk.proto = p.key.proto;
    sk.family = p.key.family;
    keel_vip_key vk{};
    std::memcpy(vk.addr, sk.vip, sizeof vk.addr);
    vk.family = sk.family;
    cache.key = sk;
    cache.isVip = snapshotHasVip(s, vk);
    cache.svc = cache.isVip ? findService(s, sk) : nullptr;
  }
  if (!cache.isVip) return finish(w, Verdict::kPass, KEEL_R_PASS_NOT_VIP, bytes);

  rc = parsed.l4;
  if (rc == KEEL_ICMP_ECHO) {
    if (keel_icmp_echo_reply(data, end, &p) != 0)
      return finish(w, Verdict::kDrop, KEEL_R_DROP_TRUNCATED, bytes);
    return finish(w, Verdict::kTx, KEEL_R_TX_ICMP_ECHO, bytes);
  }
  if (rc != KEEL_CONTINUE) return finish(w, Verdict::kDrop, rc, bytes);

  const keel_service_value* svc = cache.svc;
  if (!svc) return finish(w, Verdict::kPass, KEEL_R_PASS_NO_SERVICE, bytes);
  const uint32_t svcId = svc->id;

  // The connection table keeps a flow on its real across ring changes; an
  // entry is trusted only while its backend is valid, still belongs to this
  // service and still has the generation it was picked with (maps_abi.h).
  const uint32_t flowHash = parsed.flowHash;
  const uint64_t idleNs = p.key.proto == KEEL_PROTO_TCP ? s.tcpIdleNs : s.udpIdleNs;
  const keel_backend* be = nullptr;
  uint32_t beId = KEEL_INVALID_ID;
  if (keel_ct_value* e = w.conns.find(p.key, flowHash, nowNs, idleNs)) {
    const keel_backend* cand = snapshotBackend(s, e->backend_id);
    if (usable(cand, svcId) && cand->gen == e->gen) {
      be = cand;
      beId = e->backend_id;
      ConnTable::touch(*e, nowNs);
    }
  }
  if (!be) {
    const uint32_t* ring = svcId < s.maxServices ? s.rings[svcId] : nullptr;
    const uint32_t m = ring ? ring[0] : 0;
    if (m == 0) return finish(w, Verdict::kDrop, KEEL_R_DROP_NO_BACKEND, bytes);
    const uint32_t schedHash = (svc->flags & KEEL_SVC_F_SCHED_SRC) ? keel_src_hash(&p.key) : flowHash;
    beId = ring[keel_ring_index(schedHash, m)];
    be = snapshotBackend(s, beId);
    if (!usable(be, svcId)) return finish(w, Verdict::kDrop, KEEL_R_DROP_NO_BACKEND, bytes);
    // An ICMP error follows its flow but never creates one.
    if (!p.icmp_error) w.conns.insert(p.key, flowHash, beId, be->gen, nowNs);
  }

  if (svc->flags & KEEL_SVC_F_FWD_L2DSR) {
    if (keel_l2_rewrite(data, end, be->mac, s.node.local_mac) != 0)
      return finish(w, Verdict::kDrop, KEEL_R_DROP_TRUNCATED, bytes);
    countForwarded(w, svcId, beId, bytes);
    return finish(w, Verdict::kTx, KEEL_R_TX_L2DSR, bytes, beId);
  }

  const uint16_t hdr = keel_encap_hdr_len(be->family);
  // The same test as XDP's bpf_check_mtu(ctx, 0, .., hdr): the frame minus
  // its Ethernet header, grown by the outer header, against the L3 MTU.
  if (b.len - sizeof(keel_eth) + hdr > w.mtu)
    return finish(w, Verdict::kDrop, KEEL_R_DROP_TOO_BIG, bytes);
  if (b.headroom < hdr) return finish(w, Verdict::kDrop, KEEL_R_DROP_ENCAP_FAILED, bytes);
  uint8_t* start = b.data - hdr;
  const int hashSrc = keel_encap_hash_src(&s.node, svc->flags, be->family);
  if (keel_encap(start, end, p.l3_off, &s.node, be, hashSrc, flowHash, p.key.family, p.tos,
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
    if (parsed[i].l4 == KEEL_CONTINUE) parsed[i].flowHash = keel_flow_hash(&parsed[i].pkt.key);
  for (uint32_t i = 0; i < n; ++i)
    if (parsed[i].l4 == KEEL_CONTINUE) w.conns.prefetch(parsed[i].pkt.key.family, parsed[i].flowHash);
}

void processBurst(const Snapshot& s, WorkerState& w, PacketBuf* bufs, ParsedPacket* parsed, uint32_t n,
                  uint64_t nowNs, PacketResult* results) {
  BurstCache cache;
  for (uint32_t i = 0; i < n; ++i) results[i] = decide(s, w, bufs[i], parsed[i], nowNs, cache);
}

PacketResult processPacket(const Snapshot& s, WorkerState& w, PacketBuf& b, uint64_t nowNs) {
  ParsedPacket parsed;
  PacketResult result;
  prepareBurst(w, &b, &parsed, 1);
  processBurst(s, w, &b, &parsed, 1, nowNs, &result);
  return result;
}

}  // namespace keel::dpdk
