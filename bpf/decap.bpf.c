// SPDX-License-Identifier: Apache-2.0
/*
 * keel-decap: the real-side half of ipip forwarding. Strips the outer header
 * the balancer added (IPIP: protocol 4 / 41 over IPv4; IP6IP6 / 4in6: next
 * header 41 / 4 over IPv6) when the inner destination is an address of this
 * host, then XDP_PASS so the kernel delivers the inner packet as if it had
 * arrived bare. Every other packet is passed unchanged. No ipip/ip6_tunnel
 * module is needed.
 *
 * "Local" is decided by bpf_fib_lookup on the inner destination (policy
 * rules and all tables, as the kernel's own input route lookup): a local
 * address resolves to a non-unicast (RTN_LOCAL) route, reported as
 * BPF_FIB_LKUP_RET_NOT_FWDED. The helper refuses to answer
 * (BPF_FIB_LKUP_RET_FWD_DISABLED) when forwarding is off on the device in
 * params->ifindex, so the lookup is made "as if arriving on" the loopback
 * device (keel_decap_fib_ifindex): `keel-decap attach` turns on
 * net.ipv{4,6}.conf.lo.forwarding, which has no effect on traffic because
 * nothing is ever routed out of lo. An address without any route also reads
 * NOT_FWDED; decapsulating it is harmless, the kernel drops the inner packet
 * just as it would have dropped the tunnel packet.
 *
 * "Local" is wider than the VIPs, so two checks come before the lookup. An
 * inner destination that is no unicast address (loopback, multicast,
 * broadcast, 0/8, 240/4, ::, ::1, ff00::/8, ::ffff:0:0/96) is never decapsulated: the FIB
 * calls 127/8, ::1 and ff00::/8 local too. With `--vip PREFIX` only inner
 * destinations in those prefixes are; without it every local address of the
 * real is a tunnel target, its management address included. The helper
 * cannot tell a subnet broadcast route (RTN_BROADCAST) from a local one (both
 * NOT_FWDED, nothing filled in), so a LAN broadcast such as 10.0.1.255 is
 * refused only by --vip.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "keel/encap.h"
#include "keel/parse.h"

#define DECAP_AF_INET 2   /* AF_INET for bpf_fib_lookup */
#define DECAP_AF_INET6 10 /* AF_INET6 */

/* Device whose forwarding setting the fib lookup checks (see above). */
const volatile __u32 keel_decap_fib_ifindex = 1;

/* The outer sources tunnel packets are accepted from (keel-decap attach
 * --allow-source); none: any. */
const volatile struct keel_decap_prefix keel_decap_allow[KEEL_DECAP_MAX_ALLOW] = {};
const volatile __u32 keel_decap_allow_n = 0;

/* The inner destinations decapsulated (keel-decap attach --vip); none: any
 * local one. */
const volatile struct keel_decap_prefix keel_decap_vip[KEEL_DECAP_MAX_VIP] = {};
const volatile __u32 keel_decap_vip_n = 0;

/* Whether addr (family, words as keel_decap_prefix holds them) is in p. */
static __always_inline int decap_prefix_has(const volatile struct keel_decap_prefix *p, __u8 family,
					    const __u32 *addr)
{
	return p->family == family && (addr[0] & p->mask[0]) == p->addr[0] &&
	       (addr[1] & p->mask[1]) == p->addr[1] && (addr[2] & p->mask[2]) == p->addr[2] &&
	       (addr[3] & p->mask[3]) == p->addr[3];
}

/* Whether addr is in one of the first n prefixes of list (max entries, a
 * constant once inlined: the verifier's loop bound), or n is 0 (no list:
 * everything is). */
static __always_inline int decap_listed(const volatile struct keel_decap_prefix *list, __u32 n, __u32 max,
					__u8 family, const __u32 *addr)
{
	__u32 i;

	if (n == 0)
		return 1;
	for (i = 0; i < max; i++) {
		if (i >= n)
			break;
		if (decap_prefix_has(&list[i], family, addr))
			return 1;
	}
	return 0;
}

/* Whether the outer source is in an allowed prefix (always, if none is set). */
static __always_inline int decap_source_allowed(const struct keel_pkt *pkt)
{
	return decap_listed(keel_decap_allow, keel_decap_allow_n, KEEL_DECAP_MAX_ALLOW, pkt->key.family,
			    pkt->key.src);
}

/* Whether the inner destination is in a --vip prefix (always, if none is set). */
static __always_inline int decap_dst_is_vip(__u8 family, const __u32 *dst)
{
	return decap_listed(keel_decap_vip, keel_decap_vip_n, KEEL_DECAP_MAX_VIP, family, dst);
}

/* Every packet once, under its enum keel_decap_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KEEL_DECAP_R_MAX);
	__type(key, __u32);
	__type(value, struct keel_counter);
} decap_stats SEC(".maps");

static __always_inline int decap_count(__u32 reason, __u64 bytes, int action)
{
	struct keel_counter *c = bpf_map_lookup_elem(&decap_stats, &reason);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
	return action;
}

static __always_inline int decap_verdict(__u32 reason, __u64 bytes)
{
	return decap_count(reason, bytes, XDP_PASS);
}

/* What the outer header told us. */
struct decap_tunnel {
	__u16 l3_off;    /* outer IP header */
	__u16 outer_len; /* bytes to strip */
	__u16 ip_len;    /* the outer packet's length (IPv4 total length, IPv6 40 + payload) */
	__u8 outer_family;
	__u8 inner_proto; /* KEEL_IPPROTO_IPIP (inner v4) or KEEL_IPPROTO_IPV6 */
	__u32 outer_src[4];
	__u32 outer_dst[4];
};

/* Whether an IPv4 header of ihl 32-bit words sums to 0xffff, its checksum
 * included (RFC 1071), as the kernel checks before any tunnel sees it. */
static __always_inline int decap_ipv4_csum_ok(const __u8 *ip, const void *end, __u8 ihl)
{
	__u32 sum = 0;
	int i;

#if defined(__clang__)
#pragma unroll
#endif
	for (i = 0; i < 30; i++) {
		const __u16 *w = (const __u16 *)(ip + 2 * i);

		if (i >= ihl * 2)
			break;
		if ((const void *)(w + 1) > end)
			return 0;
		sum += *w;
	}
	return keel_csum_fold(sum) == 0xffff;
}

/* Returns KEEL_CONTINUE for a tunnel packet, else the pass reason. */
static __always_inline int decap_parse_outer(void *data, void *end, struct decap_tunnel *t)
{
	struct keel_pkt pkt;
	int rc = keel_parse_l3(data, end, &pkt);

	if (rc != KEEL_CONTINUE)
		return KEEL_DECAP_R_PASS_NOT_TUNNEL;
	if (pkt.l4_proto != KEEL_IPPROTO_IPIP && pkt.l4_proto != KEEL_IPPROTO_IPV6)
		return KEEL_DECAP_R_PASS_NOT_TUNNEL;
	/* Addressed to this host alone, as the kernel's own tunnels require: a
	 * tunnel packet sent to an Ethernet group address, or to a multicast or
	 * broadcast IP, reaches every real on the segment, and each would
	 * deliver the inner packet (UDP takes it even as a link-layer
	 * broadcast) and answer its client: one frame, many replies. */
	if ((((const __u8 *)data)[0] & 1) || !keel_addr_unicast(pkt.key.family, pkt.key.dst))
		return KEEL_DECAP_R_PASS_OUTER_NOT_UNICAST;
	/* Anyone can send a tunnel packet; with --allow-source only the
	 * balancers' are ours (the inner source is the client's, so an
	 * open decapsulator lets any host inject packets "from" anyone). */
	if (!decap_source_allowed(&pkt))
		return KEEL_DECAP_R_PASS_SOURCE;
	t->l3_off = pkt.l3_off;
	t->outer_len = pkt.l4_off - pkt.l3_off;
	t->ip_len = pkt.ip_len;
	t->outer_family = pkt.key.family;
	t->inner_proto = pkt.l4_proto;
	__builtin_memcpy(t->outer_src, pkt.key.src, sizeof(t->outer_src));
	__builtin_memcpy(t->outer_dst, pkt.key.dst, sizeof(t->outer_dst));
	if (pkt.key.family == KEEL_AF_INET) {
		struct keel_ipv4 *ip = (struct keel_ipv4 *)((__u8 *)data + (pkt.l3_off & 0x1f));

		if ((void *)(ip + 1) > end)
			return KEEL_DECAP_R_PASS_MALFORMED;
		/* A fragment of a tunnel packet: leave reassembly to the kernel. */
		if (ip->frag_off & KEEL_HTONS(KEEL_IP_MF | KEEL_IP_OFFMASK))
			return KEEL_DECAP_R_PASS_MALFORMED;
		/* A header the kernel would drop (ip_rcv) is not a tunnel to strip. */
		if (!decap_ipv4_csum_ok((const __u8 *)ip, end, ip->ver_ihl & 0x0f))
			return KEEL_DECAP_R_PASS_MALFORMED;
	}
	if ((__u8 *)data + pkt.l3_off + pkt.ip_len > (__u8 *)end)
		return KEEL_DECAP_R_PASS_MALFORMED;
	return KEEL_CONTINUE;
}

/* Whether fib's destination (family, addresses, protocol and length filled
 * in) is an address of this host, asked as described at the top: returns
 * KEEL_CONTINUE if so, else not_local or the refused lookup's reason. */
static __always_inline int decap_fib_local(struct xdp_md *ctx, struct bpf_fib_lookup *fib, int not_local)
{
	long rc;

	fib->ifindex = keel_decap_fib_ifindex;
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED)
		return KEEL_CONTINUE;
	if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED)
		return KEEL_DECAP_R_PASS_FIB_DISABLED;
	return not_local;
}

/* The tunnel is addressed to this host, as the kernel's own tunnels
 * require (their lookup is by local address): a host that routes for
 * others (a hypervisor, a node in front of pods) would otherwise strip
 * tunnels meant for the reals behind it and take their connections when
 * the VIP is local here too. Returns KEEL_CONTINUE if so, else the reason. */
static __always_inline int decap_outer_local(struct xdp_md *ctx, const struct decap_tunnel *t)
{
	struct bpf_fib_lookup fib = {};

	fib.l4_protocol = t->inner_proto;
	fib.tot_len = t->ip_len;
	if (t->outer_family == KEEL_AF_INET) {
		fib.family = DECAP_AF_INET;
		fib.ipv4_src = t->outer_src[0];
		fib.ipv4_dst = t->outer_dst[0];
	} else {
		fib.family = DECAP_AF_INET6;
		__builtin_memcpy(fib.ipv6_src, t->outer_src, 16);
		__builtin_memcpy(fib.ipv6_dst, t->outer_dst, 16);
	}
	return decap_fib_local(ctx, &fib, KEEL_DECAP_R_PASS_OUTER_NOT_LOCAL);
}

/* Inner destination one to decapsulate for: unicast, in --vip, local?
 * Returns KEEL_CONTINUE if so, else the reason. The cheap checks come
 * first, so a refused packet costs no fib lookup. */
static __always_inline int decap_inner_accepted(struct xdp_md *ctx, void *data, void *end,
						const struct decap_tunnel *t)
{
	struct bpf_fib_lookup fib = {};
	__u16 off = (t->l3_off + t->outer_len) & 0x7f;
	__u32 dst[4] = {};
	__u8 family;
	__u8 proto; /* the inner packet's transport: past IPv6 extension headers */
	long rc;

	if (t->inner_proto == KEEL_IPPROTO_IPIP) {
		struct keel_ipv4 *in = (struct keel_ipv4 *)((__u8 *)data + off);

		if ((void *)(in + 1) > end)
			return KEEL_DECAP_R_PASS_MALFORMED;
		if ((in->ver_ihl >> 4) != 4 || (in->ver_ihl & 0x0f) < 5)
			return KEEL_DECAP_R_PASS_MALFORMED;
		/* The inner packet lies within the outer one, as the kernel's
		 * tunnel sees it (the outer packet cut to its length). */
		if (KEEL_NTOHS(in->tot_len) > t->ip_len - t->outer_len)
			return KEEL_DECAP_R_PASS_MALFORMED;
		fib.family = DECAP_AF_INET;
		fib.tos = in->tos;
		fib.l4_protocol = in->protocol;
		fib.tot_len = KEEL_NTOHS(in->tot_len);
		fib.ipv4_src = in->saddr;
		fib.ipv4_dst = in->daddr;
		family = KEEL_AF_INET;
		dst[0] = in->daddr;
		proto = in->protocol;
	} else {
		struct keel_ipv6 *in6 = (struct keel_ipv6 *)((__u8 *)data + off);
		struct keel_pkt inner = {};

		if ((void *)(in6 + 1) > end)
			return KEEL_DECAP_R_PASS_MALFORMED;
		if ((((__u8 *)&in6->ver_tc_flow)[0] >> 4) != 6)
			return KEEL_DECAP_R_PASS_MALFORMED;
		if (KEEL_NTOHS(in6->payload_len) + sizeof(*in6) > (__u32)(t->ip_len - t->outer_len))
			return KEEL_DECAP_R_PASS_MALFORMED;
		fib.family = DECAP_AF_INET6;
		fib.l4_protocol = in6->nexthdr;
		fib.tot_len = KEEL_NTOHS(in6->payload_len) + sizeof(*in6);
		__builtin_memcpy(fib.ipv6_src, in6->saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, in6->daddr, 16);
		__builtin_memcpy(dst, in6->daddr, 16);
		family = KEEL_AF_INET6;
		/* The transport behind the inner packet's extension headers, walked
		 * as the balancer walks them (include/keel/parse.h): the kernel
		 * hands a tunnel header behind a destination-options header to its
		 * tunnel as it would a bare one. What the balancer would have
		 * dropped there (a real fragment, a routing header with segments
		 * left, too many headers) it never sent: not decapsulated. */
		inner.l3_off = off;
		inner.ip_len = (__u16)fib.tot_len;
		inner.l4_proto = in6->nexthdr;
		inner.l4_off = off + sizeof(*in6);
		if (keel_parse_ipv6_ext(data, end, &inner) != KEEL_CONTINUE)
			return KEEL_DECAP_R_PASS_MALFORMED;
		proto = inner.l4_proto;
		/* The transport, as the kernel's rules see it: a rule that
		 * matches on the protocol looks past extension headers
		 * (fib6_rules_early_flow_dissect). */
		fib.l4_protocol = proto;
	}
	/* A tunnel in the tunnel (IPIP, IPv6, GRE as the inner protocol): the
	 * balancer never sends one (its inner packet is the client's), and on
	 * a real whose kernel has tunl0, sit, ip6tnl or a GRE device up the
	 * kernel would strip that second layer too, delivering a packet whose
	 * destination this program never checked. */
	if (proto == KEEL_IPPROTO_IPIP || proto == KEEL_IPPROTO_IPV6 || proto == KEEL_IPPROTO_GRE)
		return KEEL_DECAP_R_PASS_MALFORMED;
	if (!keel_addr_unicast(family, dst))
		return KEEL_DECAP_R_PASS_NOT_UNICAST;
	if (!decap_dst_is_vip(family, dst))
		return KEEL_DECAP_R_PASS_NOT_VIP;
	rc = decap_fib_local(ctx, &fib, KEEL_DECAP_R_PASS_NOT_LOCAL);
	return rc == KEEL_CONTINUE ? decap_outer_local(ctx, t) : rc;
}

#define DECAP_ECN_MASK 3
#define DECAP_ECT1 1
#define DECAP_ECT0 2
#define DECAP_CE 3

/* The ECN field of an IP header: the low two bits of the TOS / traffic class. */
static __always_inline __u8 decap_ecn_of(const __u8 *ip, __u8 family)
{
	return family == KEEL_AF_INET ? ip[1] & DECAP_ECN_MASK : (ip[1] >> 4) & DECAP_ECN_MASK;
}

/* RFC 6040 §4.2 (normal mode), as the kernel's own tunnels decapsulate: the
 * balancer copies the inner ECN field to the outer header, so a router
 * between balancer and real may mark the outer one CE. That mark must reach
 * the inner packet, or the congestion is invisible to the flow:
 *   outer CE over inner ECT(0)/ECT(1)/CE  -> inner CE
 *   outer ECT(1) over inner ECT(0)        -> inner ECT(1)
 *   outer CE over inner Not-ECT           -> dropped (the only signal left)
 *   anything else                         -> inner unchanged
 * Rewrites the inner header in place (IPv4: checksum updated, RFC 1624).
 * Returns 0, or -1 when the packet is to be dropped. */
static __always_inline int decap_ecn(void *data, void *end, const struct decap_tunnel *t)
{
	__u8 *outer = (__u8 *)data + (t->l3_off & 0x1f);
	__u8 *inner = (__u8 *)data + ((t->l3_off + t->outer_len) & 0x7f);
	__u8 out_ecn;
	__u8 in_ecn;
	__u8 set;

	if ((void *)(outer + 2) > end || (void *)(inner + sizeof(struct keel_ipv4)) > end)
		return 0; /* decap_inner_accepted checked both; for the verifier */
	out_ecn = decap_ecn_of(outer, t->outer_family);
	in_ecn = decap_ecn_of(inner, t->inner_proto == KEEL_IPPROTO_IPIP ? KEEL_AF_INET : KEEL_AF_INET6);
	if (out_ecn == DECAP_CE) {
		if (in_ecn == 0)
			return -1;
		set = DECAP_CE;
	} else if (out_ecn == DECAP_ECT1 && in_ecn == DECAP_ECT0) {
		set = DECAP_ECT1;
	} else {
		return 0;
	}
	if (set == in_ecn)
		return 0;
	if (t->inner_proto == KEEL_IPPROTO_IPIP) {
		struct keel_ipv4 *ip = (struct keel_ipv4 *)inner;
		__u16 old = keel_mem_word16(inner[0], inner[1]);
		__u32 sum;

		ip->tos = (ip->tos & ~DECAP_ECN_MASK) | set;
		/* HC' = ~(~HC + ~m + m'), on the 16-bit word holding the TOS. */
		sum = (__u16)~ip->check + (__u16)~old + keel_mem_word16(inner[0], inner[1]);
		ip->check = (__u16)~keel_csum_fold(sum);
	} else {
		inner[1] = (inner[1] & ~(DECAP_ECN_MASK << 4)) | (set << 4);
	}
	return 0;
}

/* Drops the outer IP header: the L2 header (MACs and an 802.1Q tag) is saved
 * on the stack, the head moved past the outer header, and the L2 header
 * written again in front of the inner packet. Saving first means a refused
 * adjust_head leaves the frame untouched. */
static __always_inline int decap_strip(struct xdp_md *ctx, const struct decap_tunnel *t)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct keel_eth *eth = (struct keel_eth *)data;
	struct keel_vlan *vlan = (struct keel_vlan *)(eth + 1);
	__u16 inner_type = t->inner_proto == KEEL_IPPROTO_IPIP ? KEEL_HTONS(KEEL_ETH_P_IP)
							       : KEEL_HTONS(KEEL_ETH_P_IPV6);
	int tagged = t->l3_off > sizeof(struct keel_eth);
	struct keel_eth saved;
	__u16 tci = 0;

	if ((void *)(eth + 1) > end)
		return -1;
	saved = *eth;
	if (tagged) {
		if ((void *)(vlan + 1) > end)
			return -1;
		tci = vlan->tci;
	}
	if (bpf_xdp_adjust_head(ctx, (int)(t->outer_len & 0x7f)))
		return -1;

	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = (struct keel_eth *)data;
	vlan = (struct keel_vlan *)(eth + 1);
	if ((void *)(vlan + 1) > end)
		return -1;
	*eth = saved;
	if (tagged) {
		/* eth->proto keeps the saved TPID. */
		vlan->tci = tci;
		vlan->proto = inner_type;
	} else {
		eth->proto = inner_type;
	}
	return 0;
}

SEC("xdp")
int decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 bytes = (__u64)(end - data);
	struct decap_tunnel t = {};
	int rc;

	rc = decap_parse_outer(data, end, &t);
	if (rc != KEEL_CONTINUE)
		return decap_verdict(rc, bytes);
	rc = decap_inner_accepted(ctx, data, end, &t);
	if (rc != KEEL_CONTINUE)
		return decap_verdict(rc, bytes);
	if (decap_ecn(data, end, &t))
		return decap_count(KEEL_DECAP_R_DROP_CE_NOT_ECT, bytes, XDP_DROP);
	if (decap_strip(ctx, &t))
		return decap_verdict(KEEL_DECAP_R_PASS_ADJUST_FAILED, bytes);
	return decap_verdict(t.outer_family == KEEL_AF_INET6 ? KEEL_DECAP_R_DECAP_V6
							      : KEEL_DECAP_R_DECAP_V4,
			     bytes);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
