// SPDX-License-Identifier: Apache-2.0
/*
 * keel XDP balancer. Packet path (docs/architecture.md):
 *
 *   parse L2/L3 ─ not IP / cut short ──────────────────────────► PASS
 *   dst a VIP? ── no (one hash lookup) ────────────────────────► PASS
 *   parse L4 ──── echo request ─► echo reply ──────────────────► TX
 *             └── fragment, bad ext header, other ICMP/L4 ─────► DROP
 *   service (exact port, then port 0) ─ none ─────────────────► PASS
 *   conntrack hit (valid, same service, same gen) or ring pick ─ none ► DROP
 *   ipip encap / l2dsr rewrite ─────────────────────────────────► TX
 *   └ ipip over the MTU: ICMP frag-needed / PTB to the client ──► TX
 *
 * Every packet is counted once under a reason (lib/stats.h).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "keel/encap.h"
#include "keel/parse.h"
#include "lib/config.h"
#include "lib/conntrack.h"
#include "lib/forward.h"
#include "lib/maps.h"
#include "lib/service.h"
#include "lib/stats.h"

static __always_inline int lb_forward(struct xdp_md *ctx, const struct keel_pkt *pkt, __u64 bytes)
{
	struct keel_service_value *svc;
	struct keel_node_config *node;
	struct keel_backend *be;
	__u32 zero = 0;
	__u32 be_id = 0;
	__u32 reason;
	int rc;

	svc = lb_service_lookup(&pkt->key);
	if (!svc)
		return lb_verdict(XDP_PASS, KEEL_R_PASS_NO_SERVICE, bytes);
	node = bpf_map_lookup_elem(&node_config, &zero);
	if (!node)
		return lb_verdict(XDP_DROP, KEEL_R_DROP_NO_BACKEND, bytes);
	be = lb_pick(pkt, svc, node, &be_id);
	if (!be)
		return lb_verdict(XDP_DROP, KEEL_R_DROP_NO_BACKEND, bytes);

	if (svc->flags & KEEL_SVC_F_FWD_L2DSR) {
		rc = lb_l2dsr(ctx, node, be);
		reason = KEEL_R_TX_L2DSR;
	} else {
		rc = lb_encap(ctx, pkt, node, svc, be, (__u32)bytes);
		reason = KEEL_R_TX_IPIP;
	}
	/* Over the MTU: the client gets the error; the real got nothing, so
	 * neither the service nor the backend counts the packet. */
	if (rc == KEEL_R_TX_ICMP_TOO_BIG)
		return lb_verdict(XDP_TX, rc, bytes);
	if (rc != KEEL_CONTINUE)
		return lb_verdict(XDP_DROP, rc, bytes);
	lb_count(&stats_services, svc->id, bytes);
	lb_count(&stats_backends, be_id, bytes);
	return lb_verdict(XDP_TX, reason, bytes);
}

SEC("xdp")
int balancer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 bytes = (__u64)(end - data);
	struct keel_pkt pkt;
	int rc;

	rc = keel_parse_l3(data, end, &pkt);
	if (rc != KEEL_CONTINUE)
		return lb_verdict(XDP_PASS, rc, bytes);
	if (!lb_is_vip(&pkt.key))
		return lb_verdict(XDP_PASS, KEEL_R_PASS_NOT_VIP, bytes);

	rc = keel_parse_l4(data, end, &pkt);
	if (rc == KEEL_ICMP_ECHO) {
		__u32 zero = 0;
		struct keel_node_config *node = bpf_map_lookup_elem(&node_config, &zero);

		/* Checked before its field's address is taken: kernels before
		 * 6.14 refuse arithmetic on a map value that may be NULL (clang
		 * computes `node->local_mac` ahead of a `node ? :` test). An
		 * array's key 0 is always there, so this never drops. */
		if (!node)
			return lb_verdict(XDP_DROP, KEEL_R_DROP_TRUNCATED, bytes);
		if (keel_icmp_echo_reply(data, end, &pkt, node->local_mac))
			return lb_verdict(XDP_DROP, KEEL_R_DROP_TRUNCATED, bytes);
		return lb_verdict(XDP_TX, KEEL_R_TX_ICMP_ECHO, bytes);
	}
	if (rc != KEEL_CONTINUE)
		return lb_verdict(XDP_DROP, rc, bytes);
	return lb_forward(ctx, &pkt, bytes);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
