/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transmit paths: IPIP/IP6IP6 encapsulation toward a real (or, over the
 * MTU, an ICMP "too big" error back to the client), L2 DSR and the ICMP echo
 * reply. Header layouts are in include/keel/encap.h (shared with the
 * DPDK workers); this file only adds the XDP specifics (adjust_head, MTU).
 */
#ifndef KEEL_BPF_FORWARD_H
#define KEEL_BPF_FORWARD_H

#include "keel/encap.h"
#include "keel/hash.h"
#include "lib/config.h"
#include "lib/maps.h"

/* A packet that would exceed the MTU once encapsulated: answered with ICMP
 * frag-needed / ICMPv6 packet-too-big (include/keel/encap.h says when and
 * how; at most node->icmp_too_big_rate answers a second on this CPU, and
 * icmp_too_big_client_rate to one client), else DROP_TOO_BIG.
 * mtu: the largest inner packet that fits.
 * Returns KEEL_R_TX_ICMP_TOO_BIG (the caller sends the frame back with
 * XDP_TX) or the drop reason. */
static __always_inline int lb_icmp_too_big(struct xdp_md *ctx, const struct keel_pkt *pkt, __u32 frame_len,
					   __u32 mtu, const struct keel_node_config *node)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	int grow = keel_icmp_too_big_grow(pkt->key.family);
	int len = keel_icmp_too_big_len(pkt);
	__u32 zero = 0;
	__u32 slot;
	__u64 *tat;
	__u64 *client_tat;

	if (!keel_icmp_too_big_wanted(data, end, pkt))
		return KEEL_R_DROP_TOO_BIG;
	/* Per CPU: XDP runs with migration off, so nothing else moves this
	 * CPU's times while the program runs. */
	slot = keel_icmp_client_slot(&pkt->key);
	client_tat = bpf_map_lookup_elem(&icmp_client_limit, &slot);
	tat = bpf_map_lookup_elem(&icmp_limit, &zero);
	if (!tat || !client_tat ||
	    !keel_icmp_too_big_allow(client_tat, tat, bpf_ktime_get_ns(), node->icmp_too_big_client_rate,
				     node->icmp_too_big_rate))
		return KEEL_R_DROP_TOO_BIG;
	/* Cut the tail after the quote, then make room in front; the quote
	 * itself stays where it is (keel_icmp_too_big_write). frame_len is
	 * the length as received (the verifier refuses arithmetic on
	 * data_end, so it is not recomputed from the pointers here). */
	if (bpf_xdp_adjust_tail(ctx, len - grow - (int)frame_len))
		return KEEL_R_DROP_ENCAP_FAILED;
	if (bpf_xdp_adjust_head(ctx, -grow))
		return KEEL_R_DROP_ENCAP_FAILED;
	/* Both adjustments invalidate every packet pointer: reload. */
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (keel_icmp_too_big_write(data, end, pkt, mtu, node->local_mac))
		return KEEL_R_DROP_ENCAP_FAILED;
	return KEEL_R_TX_ICMP_TOO_BIG;
}

/* Returns KEEL_CONTINUE on success, KEEL_R_TX_ICMP_TOO_BIG when the packet
 * was turned into an ICMP error for the client, else the drop reason. */
static __always_inline int lb_encap(struct xdp_md *ctx, const struct keel_pkt *pkt,
				    const struct keel_node_config *node,
				    const struct keel_service_value *svc,
				    const struct keel_backend *be, __u32 frame_len)
{
	__u16 hlen = keel_encap_hdr_len(be->family);
	struct keel_encap_tpl tpl;
	int hash_src;
	__u32 flow_hash;
	__u32 cut;
	void *data;
	void *end;

	keel_encap_prepare(&tpl, node, be);
	hash_src = keel_encap_hash_src(&tpl, svc->flags);
	flow_hash = keel_encap_needs_flow_hash(&tpl, hash_src) ? keel_flow_hash(&pkt->key) : 0;

	if (keel_check_mtu) {
		/* The L3 length, not the frame: the helper adds the device's
		 * hard header length (14), so passing the frame would count a
		 * VLAN tag against the MTU. */
		__u32 mtu_len = pkt->ip_len;

		/* ifindex 0: the device the packet came in on, which is the
		 * one XDP_TX sends it out of. Only "frag needed" stops the
		 * packet; an error of the helper itself must not blackhole
		 * traffic. On "frag needed" mtu_len holds the device's MTU. */
		if (bpf_check_mtu(ctx, 0, &mtu_len, hlen, 0) == BPF_MTU_CHK_RET_FRAG_NEEDED) {
			/* Report the smaller of the two MTUs, so the client
			 * learns the size that fits in one round trip. */
			if (node->tunnel_mtu && node->tunnel_mtu < mtu_len)
				mtu_len = node->tunnel_mtu;
			return lb_icmp_too_big(ctx, pkt, frame_len, mtu_len - hlen, node);
		}
	}
	/* A smaller MTU past the first hop (node.tunnel_mtu): the outer header
	 * has DF, and a router there would answer the tunnel source, which
	 * never tells the client. */
	if (node->tunnel_mtu && pkt->ip_len + hlen > node->tunnel_mtu)
		return lb_icmp_too_big(ctx, pkt, frame_len, node->tunnel_mtu - hlen, node);
	/* Bytes after the IP packet stay out of the tunnel (but a short
	 * frame's padding: keel_encap_frame_len). */
	cut = frame_len - keel_encap_frame_len(frame_len, pkt->l3_off, pkt->ip_len);
	if (cut && bpf_xdp_adjust_tail(ctx, -(int)cut))
		return KEEL_R_DROP_ENCAP_FAILED;
	if (bpf_xdp_adjust_head(ctx, -(int)hlen))
		return KEEL_R_DROP_ENCAP_FAILED;
	/* adjust_head invalidates every packet pointer: reload. */
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (keel_encap_write(data, end, pkt->l3_off, &tpl, hash_src, flow_hash, pkt->key.family,
			     pkt->tos, pkt->ip_len))
		return KEEL_R_DROP_ENCAP_FAILED;
	return KEEL_CONTINUE;
}

static __always_inline int lb_l2dsr(struct xdp_md *ctx, const struct keel_node_config *node,
				    const struct keel_backend *be)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	if (keel_l2_rewrite(data, end, be->mac, node->local_mac))
		return KEEL_R_DROP_TRUNCATED;
	return KEEL_CONTINUE;
}

#endif
