/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Backend selection: the connection table first, the Maglev ring on a miss;
 * for a SYN, which opens a new connection, the ring first (lb_pick).
 *
 * A table entry is only trusted if its backend is still VALID, still belongs
 * to the service this packet matched and still has the generation the entry
 * recorded (include/keel/maps_abi.h). That one rule makes a removed or
 * health-down real (generation bumped) lose even its established flows, lets
 * a drained real (only taken out of the ring) keep them, and makes reuse of a
 * backend id by another service harmless.
 */
#ifndef KEEL_BPF_CONNTRACK_H
#define KEEL_BPF_CONNTRACK_H

#include "keel/maglev_lookup.h"
#include "keel/parse.h"
#include "keel/rate.h"
#include "lib/config.h"
#include "lib/maps.h"

#define LB_NSEC_PER_SEC 1000000000ull

/* last_seen is written at most once a second: a write per packet would bounce
 * the entry's cache line between CPUs for every packet of a busy flow. So an
 * entry expires between timeout and timeout + 1 s after its last packet. */
#define LB_CT_REFRESH_NS LB_NSEC_PER_SEC

static __always_inline struct keel_backend *lb_backend(__u32 id)
{
	return bpf_map_lookup_elem(&backends, &id);
}

static __always_inline int lb_backend_usable(const struct keel_backend *be, __u32 service_id)
{
	return (be->flags & KEEL_BE_F_VALID) && be->service_id == service_id;
}

/* One more of this CPU's connection-table event (enum keel_ct_stat). */
static __always_inline void lb_ct_count(__u32 event)
{
	__u64 *n = bpf_map_lookup_elem(&stats_conntrack, &event);

	if (n)
		(*n)++;  /* this CPU's slot: no other writer */
}

/* Connection-table hit that is still valid, or NULL. *held says whether
 * the table held the flow at all (a live entry, whatever its real). */
static __always_inline struct keel_backend *
lb_ct_lookup(const struct keel_pkt *pkt, const struct keel_service_value *svc,
	     const struct keel_node_config *node, __u64 now, __u32 *be_id, int *held)
{
	struct keel_ct_value *ct;
	struct keel_backend *be;
	__u32 timeout_s;
	__u64 seen;

	*held = 0;
	ct = bpf_map_lookup_elem(&conntrack, &pkt->key);
	/* last_seen 0: never written. A per-CPU flavour of the table returns
	 * a zeroed value on the CPUs that did not insert the flow. */
	if (!ct || !ct->last_seen_ns)
		return NULL;
	timeout_s = pkt->key.proto == KEEL_PROTO_TCP ? node->tcp_idle_timeout_s
						      : node->udp_idle_timeout_s;
	/* Read once: another CPU may refresh it after this one read its
	 * clock, and a last_seen after `now` is a live entry, not one idle
	 * for 2^64 ns. */
	seen = ct->last_seen_ns;
	if (seen < now && timeout_s && now - seen > (__u64)timeout_s * LB_NSEC_PER_SEC)
		return NULL;
	*held = 1;
	be = lb_backend(ct->backend_id);
	if (!be || !lb_backend_usable(be, svc->id) || be->gen != ct->gen)
		return NULL;
	if (seen < now) {
		/* An ICMP error follows its flow but is no sign of it: a
		 * forged one quoting a guessable 5-tuple must not keep a
		 * dead flow's entry alive. */
		if (now - seen > LB_CT_REFRESH_NS && !pkt->icmp_error)
			ct->last_seen_ns = now;
	}
	*be_id = ct->backend_id;
	return be;
}

/* ring[1 + hash % M] (include/keel/maglev_lookup.h), or NULL when the service
 * has no ring, an empty ring (M == 0) or the slot's backend is unusable. */
static __always_inline struct keel_backend *
lb_ring_pick(const struct keel_pkt *pkt, const struct keel_service_value *svc, __u32 *be_id)
{
	__u32 svc_id = svc->id;
	__u32 zero = 0;
	__u32 idx;
	__u32 *m;
	__u32 *slot;
	void *ring;
	struct keel_backend *be;

	ring = bpf_map_lookup_elem(&rings, &svc_id);
	if (!ring)
		return NULL;
	/* Word 0 travels with the slots, so M and the slots come from the same
	 * table even while the control plane swaps rings. */
	m = bpf_map_lookup_elem(ring, &zero);
	if (!m || *m == 0)
		return NULL;
	idx = keel_ring_index(keel_sched_hash(&pkt->key, svc->flags), *m);
	slot = bpf_map_lookup_elem(ring, &idx);
	if (!slot)
		return NULL;
	be = lb_backend(*slot);
	if (!be || !lb_backend_usable(be, svc_id))
		return NULL;
	*be_id = *slot;
	return be;
}

/* Whether node.conntrack_insert_rate lets this CPU write one more entry
 * now; a refusal is counted (ct_insert_limit[0].skipped). */
static __always_inline int lb_ct_insert_allowed(const struct keel_node_config *node, __u64 now)
{
	struct keel_ct_insert_limit *lim;
	__u32 zero = 0;

	if (!node->conntrack_insert_rate)
		return 1;
	lim = bpf_map_lookup_elem(&ct_insert_limit, &zero);
	if (!lim || keel_ct_insert_allow(&lim->tat, now, node->conntrack_insert_rate))
		return 1;
	lim->skipped++;  /* this CPU's slot: no other writer */
	return 0;
}

/* Writes pkt's flow -> (be_id, be's generation) into the table. BPF_ANY: a
 * stale entry (gen bump, timeout, other service) is overwritten in place.
 * Failure only costs a re-pick next packet. */
static __always_inline void lb_ct_write(const struct keel_pkt *pkt, const struct keel_backend *be, __u32 be_id,
					__u64 now)
{
	struct keel_ct_value fresh = {};

	fresh.backend_id = be_id;
	fresh.gen = be->gen;
	fresh.last_seen_ns = now;
	bpf_map_update_elem(&conntrack, &pkt->key, &fresh, BPF_ANY);
}

/* The backend for this packet, or NULL (DROP_NO_BACKEND). */
static __always_inline struct keel_backend *
lb_pick(const struct keel_pkt *pkt, const struct keel_service_value *svc,
	const struct keel_node_config *node, __u32 *be_id)
{
	struct keel_backend *be;
	struct keel_backend *held_be;
	int syn = keel_tcp_syn(pkt);
	int held;
	__u64 now;

	if (!keel_use_conntrack)
		return lb_ring_pick(pkt, svc, be_id);

	now = bpf_ktime_get_ns();
	/* A SYN opens a new connection: the ring picks it and its entry is
	 * overwritten (keel_tcp_syn), not looked up first. With no usable real
	 * on the ring it is dropped before the insert limit is asked, so SYNs
	 * to a service with none spend no other flow's insert. */
	if (!syn) {
		be = lb_ct_lookup(pkt, svc, node, now, be_id, &held);
		if (be)
			return be;
		if (!held && keel_tcp_midflow(pkt))
			lb_ct_count(KEEL_CT_S_MIDFLOW_MISS);
	}
	be = lb_ring_pick(pkt, svc, be_id);
	if (!be)
		return NULL;
	/* An ICMP error or a TCP RST only follows an existing flow
	 * (keel_ct_may_insert). */
	if (!keel_ct_may_insert(pkt))
		return be;
	if (lb_ct_insert_allowed(node, now)) {
		lb_ct_write(pkt, be, *be_id, now);
		return be;
	}
	/* Past node.conntrack_insert_rate: forwarded, not remembered. A SYN
	 * the limit refuses follows the table like any segment: its entry
	 * cannot be rewritten, so the connection's next segments would follow
	 * the old one to another real. */
	if (syn) {
		held_be = lb_ct_lookup(pkt, svc, node, now, be_id, &held);  /* sets be_id only when found */
		if (held_be)
			return held_be;
	}
	return be;
}

#endif
