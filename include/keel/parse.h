/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Packet parsing shared by the XDP program, the DPDK workers and the tests.
 *
 * Two stages, because the verdict for a malformed packet depends on whether
 * it is aimed at a VIP, and only the data plane can look that up:
 *
 *   keel_parse_l3()  Ethernet (at most one 802.1Q tag) and the fixed IP
 *                    header: family, addresses, L4 protocol. Anything we
 *                    cannot read this far is not provably ours -> XDP_PASS.
 *   <data plane: is key.dst a VIP? if not -> PASS_NOT_VIP>
 *   keel_parse_l4()  Everything after: IPv4 options and fragments, IPv6
 *                    extension headers, ICMP, ports. Aimed at a VIP, so a
 *                    packet that is unusable here is dropped and counted.
 *
 * Both return KEEL_CONTINUE or a keel_reason. The functions only read the
 * packet. Every read is preceded by a bounds check against `end`, written so
 * the BPF verifier can follow it (constant-size checks on pointers whose
 * variable part is bounded by a mask).
 *
 * Verdict table (documented in docs/architecture.md):
 *   frame < 14 bytes, VLAN tag cut, IP header cut     PASS_TRUNCATED
 *   not IPv4/IPv6 (ARP, LLDP, QinQ inner tag, ...)    PASS_NOT_IP
 *   IPv4 version != 4, IHL < 5, total length < IHL    PASS_BAD_HEADER (the kernel discards it)
 *   IPv6 version != 6                                 PASS_BAD_HEADER
 *   --- aimed at a VIP ---
 *   frame to an Ethernet broadcast/multicast address  DROP_L2_MULTICAST (RFC 1812 5.3.4)
 *   IPv4 options                                      parsed past (IHL), forwarded normally
 *   IPv4 fragment (MF set or offset != 0)             DROP_FRAGMENT (no ports: cannot hash consistently)
 *   IPv6 hop-by-hop (first only) / destination options parsed past (at most KEEL_IPV6_MAX_EXT), forwarded
 *   IPv6 routing header with Segments Left 0          parsed past (RFC 8200 4.4: the VIP is its last hop)
 *   IPv6 fragment header                              DROP_FRAGMENT, unless atomic (offset 0, M clear:
 *                                                     a whole packet, RFC 6946): parsed past, forwarded
 *   IPv6 routing header with segments left, a later   DROP_IPV6_EXT (the VIP may not be the final
 *   hop-by-hop header, other extension (AH, mobility, destination; RFC 8200 4.1: hop-by-hop comes first)
 *   HIP, shim6, 253/254; ESP is DROP_L4_PROTO)
 *   TCP/UDP header cut short, IP length > frame       DROP_TRUNCATED
 *   ICMP echo request                                 KEEL_ICMP_ECHO: the data plane answers it
 *   ICMP dest-unreachable (any code), time exceeded;  the flow it quotes is extracted, reversed, and the
 *   ICMPv6 dest-unreachable, PTB, time exceeded       packet follows that flow to its real (PMTUD works)
 *   other ICMP                                        DROP_ICMP
 *   other L4 protocol                                 DROP_L4_PROTO
 */
#ifndef KEEL_PARSE_H
#define KEEL_PARSE_H

#include "keel/flow.h"
#include "keel/maps_abi.h"

/* All supported targets are little-endian (see hash.h). */
#define KEEL_BSWAP16(x) ((__u16)((((__u16)(x) & 0xffu) << 8) | (((__u16)(x) >> 8) & 0xffu)))
#define KEEL_HTONS(x) KEEL_BSWAP16(x)
#define KEEL_NTOHS(x) KEEL_BSWAP16(x)

#define KEEL_ETH_P_IP 0x0800
#define KEEL_ETH_P_IPV6 0x86DD
#define KEEL_ETH_P_8021Q 0x8100
#define KEEL_ETH_P_8021AD 0x88A8

#define KEEL_IPPROTO_HOPOPTS 0
#define KEEL_IPPROTO_ICMP 1
#define KEEL_IPPROTO_IPIP 4
#define KEEL_IPPROTO_IPV6 41
#define KEEL_IPPROTO_ROUTING 43
#define KEEL_IPPROTO_GRE 47
#define KEEL_IPPROTO_FRAGMENT 44
#define KEEL_IPPROTO_ICMPV6 58
#define KEEL_IPPROTO_DSTOPTS 60
#define KEEL_IPPROTO_AH 51
#define KEEL_IPPROTO_MH 135 /* mobility header */
#define KEEL_IPPROTO_HIP 139
#define KEEL_IPPROTO_SHIM6 140

#define KEEL_IPV6_MAX_EXT 4

#define KEEL_CONTINUE KEEL_R_MAX         /* parsing may go on */
#define KEEL_ICMP_ECHO (KEEL_R_MAX + 1)  /* echo request to a VIP: answer it */

/* Wire headers, defined here so every target sees the same layout without
 * mixing kernel uapi and libc headers. */
struct keel_eth {
	__u8 dst[6];
	__u8 src[6];
	__u16 proto;
} __attribute__((packed));

struct keel_vlan {
	__u16 tci;
	__u16 proto;
} __attribute__((packed));

struct keel_ipv4 {
	__u8 ver_ihl;
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
} __attribute__((packed));

struct keel_ipv6 {
	__u32 ver_tc_flow;
	__u16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u32 saddr[4];
	__u32 daddr[4];
} __attribute__((packed));

struct keel_ports {
	__u16 sport;
	__u16 dport;
} __attribute__((packed));

struct keel_tcp {
	__u16 sport;
	__u16 dport;
	__u32 seq;
	__u32 ack;
	__u8 doff_res;
	__u8 flags;
	__u16 window;
	__u16 check;
	__u16 urg;
} __attribute__((packed));

struct keel_udp {
	__u16 sport;
	__u16 dport;
	__u16 len;
	__u16 check;
} __attribute__((packed));

struct keel_icmp {
	__u8 type;
	__u8 code;
	__u16 check;
	__u32 rest;
} __attribute__((packed));

struct keel_ipv6_ext {
	__u8 nexthdr;
	__u8 hdrlen; /* in 8-octet units, not counting the first 8 */
} __attribute__((packed));

/* The routing header's first 4 bytes (RFC 8200 4.4). */
struct keel_ipv6_rt {
	__u8 nexthdr;
	__u8 hdrlen;
	__u8 type;
	__u8 segments_left;
} __attribute__((packed));

/* The fragment header's first 4 bytes (RFC 8200 4.5; 8 in all). */
struct keel_ipv6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__u16 frag_off; /* offset << 3, 2 reserved bits, M (network order) */
} __attribute__((packed));

#define KEEL_IP6_FRAG_OFF_MF 0xfff9 /* the offset and M: both 0 in an atomic fragment */

KEEL_STATIC_ASSERT(sizeof(struct keel_eth) == 14, "eth");
KEEL_STATIC_ASSERT(sizeof(struct keel_ipv4) == 20, "ipv4");
KEEL_STATIC_ASSERT(sizeof(struct keel_ipv6) == 40, "ipv6");
KEEL_STATIC_ASSERT(sizeof(struct keel_tcp) == 20, "tcp");
KEEL_STATIC_ASSERT(sizeof(struct keel_icmp) == 8, "icmp");

#define KEEL_TCP_FIN 0x01
#define KEEL_TCP_SYN 0x02
#define KEEL_TCP_RST 0x04
#define KEEL_TCP_ACK 0x10

#define KEEL_IP_MF 0x2000
#define KEEL_IP_OFFMASK 0x1fff

#define KEEL_ICMP_ECHO_REQUEST 8
#define KEEL_ICMP_DEST_UNREACH 3
#define KEEL_ICMP_FRAG_NEEDED 4
#define KEEL_ICMP_TIME_EXCEEDED 11
#define KEEL_ICMPV6_DEST_UNREACH 1
#define KEEL_ICMPV6_PKT_TOOBIG 2
#define KEEL_ICMPV6_TIME_EXCEEDED 3
#define KEEL_ICMPV6_ECHO_REQUEST 128

/* keel_pkt.icmp_error: an error about the path MTU (frag-needed, packet
 * too big), which path-MTU discovery needs to reach the flow's real, or
 * another (unreachable, time exceeded). Both planes treat them alike; the
 * DPDK plane gives each kind its own budget of cross-worker lookups. */
#define KEEL_ICMP_ERROR_OTHER 1
#define KEEL_ICMP_ERROR_PMTU 2

/* What the parser learned. Offsets are from the start of the frame. */
struct keel_pkt {
	struct keel_flow_key key; /* for ICMP errors: the quoted flow, reversed */
	__u16 l3_off;             /* IP header (14, or 18 with a VLAN tag) */
	__u16 l4_off;             /* TCP/UDP/ICMP header */
	__u16 ip_len;             /* IPv4 total length / IPv6 40 + payload length */
	__u8 l4_proto;            /* protocol of the header at l4_off */
	__u8 tcp_flags;           /* KEEL_TCP_* of a TCP packet, else 0 */
	__u8 icmp_error;          /* an ICMP error steered by its quoted flow: KEEL_ICMP_ERROR_* (0: none) */
	__u8 tos;                 /* IPv4 TOS / IPv6 traffic class (copied to the outer header) */
	__u8 pad[2];
};

/* A TCP packet that carries a connection on (neither SYN nor RST), so its
 * flow should already be in a connection table (KEEL_CT_S_MIDFLOW_MISS). A
 * RST ends a connection rather than carrying it on, and a stray one (a
 * client's reset after its entry idled out, backscatter of traffic spoofed
 * from a VIP) says nothing about the table losing live flows, which the
 * count is there to show. An ICMP error quoting a TCP flow is not one: its
 * own protocol is ICMP. Valid once keel_parse_l4() returned KEEL_CONTINUE. */
KEEL_INLINE int keel_tcp_midflow(const struct keel_pkt *pkt)
{
	return pkt->l4_proto == KEEL_PROTO_TCP && !(pkt->tcp_flags & (KEEL_TCP_SYN | KEEL_TCP_RST));
}

/* A TCP SYN without ACK, RST or FIN: a connection's first segment (or a
 * retransmit of it). Both planes pick its real from the ring and write the flow's entry
 * over whatever it held, without looking it up, as Katran does: a client
 * that reuses a 5-tuple within the idle timeout opens a new connection,
 * which must go where the ring sends new flows (not to a drained real, nor
 * where a changed ring no longer sends them). Valid once keel_parse_l4()
 * returned KEEL_CONTINUE; an ICMP error quoting a SYN is not one. */
KEEL_INLINE int keel_tcp_syn(const struct keel_pkt *pkt)
{
	return pkt->l4_proto == KEEL_PROTO_TCP && !pkt->icmp_error &&
	       (pkt->tcp_flags & (KEEL_TCP_SYN | KEEL_TCP_ACK | KEEL_TCP_RST | KEEL_TCP_FIN)) == KEEL_TCP_SYN;
}

/* Whether a packet whose flow the connection table does not hold may write
 * the flow's entry once the ring picked its real. Not an ICMP error: it
 * follows a flow, and forged errors would fill the table. Not a TCP RST: it
 * ends the connection it names (an entry would only take a way until it
 * idles out), and forged RSTs (or backscatter) would evict live flows and
 * spend node.conntrack_insert_rate. Either is still forwarded to the
 * ring's real. */
KEEL_INLINE int keel_ct_may_insert(const struct keel_pkt *pkt)
{
	return !pkt->icmp_error && !(pkt->l4_proto == KEEL_PROTO_TCP && (pkt->tcp_flags & KEEL_TCP_RST));
}

/* Stage 1: Ethernet, VLAN and the fixed IP header. */
KEEL_INLINE int keel_parse_l3(void *data, void *end, struct keel_pkt *pkt)
{
	struct keel_eth *eth = (struct keel_eth *)data;
	__u16 proto;
	__u16 off = sizeof(struct keel_eth);

	__builtin_memset(pkt, 0, sizeof(*pkt));
	if ((void *)(eth + 1) > end)
		return KEEL_R_PASS_TRUNCATED;
	proto = eth->proto;
	if (proto == KEEL_HTONS(KEEL_ETH_P_8021Q) || proto == KEEL_HTONS(KEEL_ETH_P_8021AD)) {
		struct keel_vlan *vlan = (struct keel_vlan *)(eth + 1);

		if ((void *)(vlan + 1) > end)
			return KEEL_R_PASS_TRUNCATED;
		proto = vlan->proto;
		off += sizeof(struct keel_vlan);
		/* A second tag (QinQ) is not ours: the proto check below passes it. */
	}
	pkt->l3_off = off;

	if (proto == KEEL_HTONS(KEEL_ETH_P_IP)) {
		struct keel_ipv4 *ip = (struct keel_ipv4 *)((__u8 *)data + off);
		__u16 ihl_bytes;

		if ((void *)(ip + 1) > end)
			return KEEL_R_PASS_TRUNCATED;
		ihl_bytes = (__u16)((ip->ver_ihl & 0x0f) * 4);
		if ((ip->ver_ihl >> 4) != 4 || ihl_bytes < sizeof(*ip))
			return KEEL_R_PASS_BAD_HEADER;
		pkt->ip_len = KEEL_NTOHS(ip->tot_len);
		if (pkt->ip_len < ihl_bytes)
			return KEEL_R_PASS_BAD_HEADER;
		pkt->key.family = KEEL_AF_INET;
		pkt->key.src[0] = ip->saddr;
		pkt->key.dst[0] = ip->daddr;
		pkt->key.proto = ip->protocol;
		pkt->l4_proto = ip->protocol;
		pkt->tos = ip->tos;
		pkt->l4_off = off + ihl_bytes;
		return KEEL_CONTINUE;
	}
	if (proto == KEEL_HTONS(KEEL_ETH_P_IPV6)) {
		struct keel_ipv6 *ip6 = (struct keel_ipv6 *)((__u8 *)data + off);
		__u32 vtf;

		if ((void *)(ip6 + 1) > end)
			return KEEL_R_PASS_TRUNCATED;
		vtf = ip6->ver_tc_flow;
		/* Network order: version is the top nibble of the first byte. */
		if ((((__u8 *)&vtf)[0] >> 4) != 6)
			return KEEL_R_PASS_BAD_HEADER;
		/* A payload length that does not fit ip_len with the fixed
		 * header cannot arrive on Ethernet (jumbograms are not ours). */
		if (KEEL_NTOHS(ip6->payload_len) > 0xffff - sizeof(*ip6))
			return KEEL_R_PASS_BAD_HEADER;
		pkt->ip_len = (__u16)(sizeof(*ip6) + KEEL_NTOHS(ip6->payload_len));
		pkt->key.family = KEEL_AF_INET6;
		pkt->key.src[0] = ip6->saddr[0];
		pkt->key.src[1] = ip6->saddr[1];
		pkt->key.src[2] = ip6->saddr[2];
		pkt->key.src[3] = ip6->saddr[3];
		pkt->key.dst[0] = ip6->daddr[0];
		pkt->key.dst[1] = ip6->daddr[1];
		pkt->key.dst[2] = ip6->daddr[2];
		pkt->key.dst[3] = ip6->daddr[3];
		pkt->key.proto = ip6->nexthdr;
		pkt->l4_proto = ip6->nexthdr;
		pkt->tos = (__u8)(((((__u8 *)&vtf)[0] & 0x0f) << 4) | (((__u8 *)&vtf)[1] >> 4));
		pkt->l4_off = off + sizeof(*ip6);
		return KEEL_CONTINUE;
	}
	return KEEL_R_PASS_NOT_IP;
}

/* Whether `len` bytes at frame offset `off` end inside the IP packet (its
 * total / payload length), not only inside the frame: bytes past it are
 * Ethernet padding or garbage, never a header. Offsets, not pointers, so
 * the callers keep their checks against the frame end for the verifier. */
KEEL_INLINE int keel_in_ip(const struct keel_pkt *pkt, __u32 off, __u32 len)
{
	return off + len <= (__u32)pkt->l3_off + pkt->ip_len;
}

/* Walk IPv6 hop-by-hop (first only) and destination-options headers, a
 * routing header with no segments left, and an atomic fragment header
 * (bounded). */
KEEL_INLINE int keel_parse_ipv6_ext(void *data, void *end, struct keel_pkt *pkt)
{
	__u8 nh = pkt->l4_proto;
	__u16 off = pkt->l4_off;
	__u8 frags = 0;
	int i;

#if defined(__clang__)
#pragma unroll
#endif
	for (i = 0; i < KEEL_IPV6_MAX_EXT; i++) {
		struct keel_ipv6_ext *ext;

		if (nh != KEEL_IPPROTO_HOPOPTS && nh != KEEL_IPPROTO_DSTOPTS && nh != KEEL_IPPROTO_FRAGMENT &&
		    nh != KEEL_IPPROTO_ROUTING)
			break;
		/* Hop-by-hop options only right after the IPv6 header (RFC 8200
		 * 4.1; a router would answer a parameter problem). */
		if (nh == KEEL_IPPROTO_HOPOPTS && i != 0)
			return KEEL_R_DROP_IPV6_EXT;
		/* off stays below 18 + 40 + 4 * 2048: the mask makes that visible
		 * to the verifier. */
		off &= 0x3fff;
		if (nh == KEEL_IPPROTO_FRAGMENT) {
			struct keel_ipv6_frag *frag = (struct keel_ipv6_frag *)((__u8 *)data + off);

			/* One fragment header at most (RFC 8200 4.1). */
			if (frags++)
				return KEEL_R_DROP_IPV6_EXT;
			if ((void *)(frag + 1) > end || !keel_in_ip(pkt, off, 8))
				return KEEL_R_DROP_TRUNCATED;
			/* A real fragment has no ports to steer by (a later one) or
			 * its datagram's later fragments would go elsewhere: dropped.
			 * An atomic fragment, offset 0 and M clear, is a whole packet
			 * (RFC 6946 4: processed as unfragmented; older stacks send
			 * them after a too-big reporting under 1280); it travels on
			 * with its header, which the real's stack also accepts. */
			if (frag->frag_off & KEEL_HTONS(KEEL_IP6_FRAG_OFF_MF))
				return KEEL_R_DROP_FRAGMENT;
			nh = frag->nexthdr;
			off += 8;
			continue;
		}
		if (nh == KEEL_IPPROTO_ROUTING) {
			struct keel_ipv6_rt *rt = (struct keel_ipv6_rt *)((__u8 *)data + off);

			if ((void *)(rt + 1) > end || !keel_in_ip(pkt, off, sizeof(*rt)))
				return KEEL_R_DROP_TRUNCATED;
			/* Segments left: the VIP is not the final destination, and
			 * keel forwards nothing on to the next segment. None left:
			 * the header is ignored (RFC 8200 4.4) and travels on. */
			if (rt->segments_left != 0)
				return KEEL_R_DROP_IPV6_EXT;
		}
		ext = (struct keel_ipv6_ext *)((__u8 *)data + off);
		if ((void *)(ext + 1) > end || !keel_in_ip(pkt, off, sizeof(*ext)))
			return KEEL_R_DROP_TRUNCATED;
		nh = ext->nexthdr;
		off += (__u16)((ext->hdrlen + 1) * 8);
	}
	/* Past KEEL_IPV6_MAX_EXT headers (a fragment header among them), or an
	 * extension header keel does not parse past (IANA's IPv6 Extension
	 * Header Types: AH, mobility, HIP, shim6, the experimental 253/254):
	 * a TCP/UDP header, if any, is behind it. ESP is not among them: it
	 * hides the transport, so it counts as the L4 protocol, as in IPv4. */
	if (nh == KEEL_IPPROTO_HOPOPTS || nh == KEEL_IPPROTO_DSTOPTS || nh == KEEL_IPPROTO_ROUTING ||
	    nh == KEEL_IPPROTO_FRAGMENT || nh == KEEL_IPPROTO_AH || nh == KEEL_IPPROTO_MH || nh == KEEL_IPPROTO_HIP ||
	    nh == KEEL_IPPROTO_SHIM6 || nh == 253 || nh == 254)
		return KEEL_R_DROP_IPV6_EXT;
	pkt->l4_proto = nh;
	pkt->key.proto = nh;
	pkt->l4_off = off;
	return KEEL_CONTINUE;
}

/* An ICMP error quotes the IP header and the first 8 bytes of the packet that
 * caused it: one of ours, sent by a real from the VIP to the client. Steer the
 * error by that flow, reversed to the client->VIP direction, so it reaches the
 * real that owns the connection (needed for path-MTU discovery). */
KEEL_INLINE int keel_parse_icmp_quote(void *data, void *end, struct keel_pkt *pkt, __u16 off, __u8 kind)
{
	struct keel_ports *ports;

	off &= 0x3fff;
	if (pkt->key.family == KEEL_AF_INET) {
		struct keel_ipv4 *in = (struct keel_ipv4 *)((__u8 *)data + off);
		__u16 ihl_bytes;

		if ((void *)(in + 1) > end || !keel_in_ip(pkt, off, sizeof(*in)))
			return KEEL_R_DROP_TRUNCATED;
		ihl_bytes = (__u16)((in->ver_ihl & 0x0f) * 4);
		if ((in->ver_ihl >> 4) != 4 || ihl_bytes < sizeof(*in))
			return KEEL_R_DROP_ICMP;
		if (in->protocol != KEEL_PROTO_TCP && in->protocol != KEEL_PROTO_UDP)
			return KEEL_R_DROP_ICMP;
		/* A later fragment holds no ports where they would be read. */
		if (in->frag_off & KEEL_HTONS(KEEL_IP_OFFMASK))
			return KEEL_R_DROP_ICMP;
		/* Quoted src must be the VIP we matched (the real sends as the VIP). */
		if (in->saddr != pkt->key.dst[0])
			return KEEL_R_DROP_ICMP;
		pkt->key.src[0] = in->daddr;
		pkt->key.proto = in->protocol;
		off += ihl_bytes;
	} else {
		struct keel_ipv6 *in6 = (struct keel_ipv6 *)((__u8 *)data + off);

		if ((void *)(in6 + 1) > end || !keel_in_ip(pkt, off, sizeof(*in6)))
			return KEEL_R_DROP_TRUNCATED;
		if ((((const __u8 *)&in6->ver_tc_flow)[0] >> 4) != 6)
			return KEEL_R_DROP_ICMP;
		if (in6->nexthdr != KEEL_PROTO_TCP && in6->nexthdr != KEEL_PROTO_UDP)
			return KEEL_R_DROP_ICMP;
		if (in6->saddr[0] != pkt->key.dst[0] || in6->saddr[1] != pkt->key.dst[1] ||
		    in6->saddr[2] != pkt->key.dst[2] || in6->saddr[3] != pkt->key.dst[3])
			return KEEL_R_DROP_ICMP;
		pkt->key.src[0] = in6->daddr[0];
		pkt->key.src[1] = in6->daddr[1];
		pkt->key.src[2] = in6->daddr[2];
		pkt->key.src[3] = in6->daddr[3];
		pkt->key.proto = in6->nexthdr;
		off += sizeof(*in6);
	}
	off &= 0x3fff;
	ports = (struct keel_ports *)((__u8 *)data + off);
	if ((void *)(ports + 1) > end || !keel_in_ip(pkt, off, sizeof(*ports)))
		return KEEL_R_DROP_TRUNCATED;
	pkt->key.sport = ports->dport;
	pkt->key.dport = ports->sport;
	pkt->icmp_error = kind;
	return KEEL_CONTINUE;
}

/* Whether an address (network-order words, as in keel_flow_key) is one
 * host's: not IPv4 0/8 ("this network", RFC 1122 3.2.1.3), 127/8
 * (loopback), 224/4 (multicast) or 240/4 (reserved, with the limited
 * broadcast 255.255.255.255); not IPv6 :: (unspecified), ::1 (loopback),
 * ff00::/8 (multicast) (RFC 4291 2.5.2, 2.5.3, 2.7) or IPv4-mapped
 * ::ffff:0:0/96, which a stack uses internally and never sends (RFC 4291
 * 2.5.5.2; Linux drops it as a source). keel-decap asks it of a tunnel's
 * destinations, keel_parse_l4() of a VIP packet's source. */
KEEL_INLINE int keel_addr_unicast(__u8 family, const __u32 *addr)
{
	const __u8 *b = (const __u8 *)addr;

	if (family == KEEL_AF_INET)
		return b[0] != 0 && b[0] != 127 && b[0] < 224;
	if (b[0] == 0xff)
		return 0;
	if ((addr[0] | addr[1]) == 0 && b[8] == 0 && b[9] == 0 && b[10] == 0xff && b[11] == 0xff)
		return 0;
	if ((addr[0] | addr[1] | addr[2]) != 0)
		return 1;
	/* :: and ::1 */
	return (b[12] | b[13] | b[14]) != 0 || b[15] > 1;
}

/* Whether a packet from src to the VIP dst is a martian: its source is no
 * one host's (keel_addr_unicast) or the VIP itself. A host discards it (RFC
 * 1122 3.2.1.3, RFC 1812 5.3.7, RFC 4291 2.7); keel_parse_l4 drops it as
 * DROP_BAD_SOURCE, and keelctl lookup refuses such a client. */
KEEL_INLINE int keel_src_martian(__u8 family, const __u32 *src, const __u32 *dst)
{
	return !keel_addr_unicast(family, src) ||
	       (src[0] == dst[0] && src[1] == dst[1] && src[2] == dst[2] && src[3] == dst[3]);
}

/* IPv4 options of a VIP packet (after the fixed header, up to the IHL's
 * end): KEEL_R_DROP_SOURCE_ROUTE for a loose or strict source route (LSRR
 * 131, SSRR 137) with hops left, whose next hop is not the VIP's to keep
 * (RFC 791 3.1, RFC 1812 5.2.4.1): the IPv6 rule for a routing header with
 * segments left (keel_parse_ipv6_ext), and what a Linux host does without
 * accept_source_route; a real that accepted it would route the packet on.
 * Options cut short or overrunning the header are DROP_TRUNCATED. The
 * others are read past. Each option is at least a byte, so 40 steps cover
 * the 40 bytes options can take. */
KEEL_INLINE int keel_parse_ipv4_options(void *data, void *end, const struct keel_pkt *pkt)
{
	__u16 off = (__u16)((pkt->l3_off & 0x1f) + sizeof(struct keel_ipv4));
	const __u16 stop = pkt->l4_off & 0x7f;
	int i;

	for (i = 0; i < 40; i++) {
		const __u8 *o = (const __u8 *)data + (off & 0x7f);
		__u8 len;

		if (off >= stop)
			break;
		if (o + 1 > (const __u8 *)end)
			return KEEL_R_DROP_TRUNCATED;
		if (o[0] == 0)  /* end of options */
			break;
		if (o[0] == 1) {  /* no-op */
			off++;
			continue;
		}
		if (o + 3 > (const __u8 *)end || off + 2 > stop)
			return KEEL_R_DROP_TRUNCATED;
		len = o[1];
		if (len < 2 || off + len > stop)
			return KEEL_R_DROP_TRUNCATED;
		/* The pointer (o[2], 1-based, at least 4) past the route's end:
		 * no hops left, the VIP the last; within it, hops to go. */
		if ((o[0] == 131 || o[0] == 137) && o[2] <= len)
			return KEEL_R_DROP_SOURCE_ROUTE;
		off += len;
	}
	return KEEL_CONTINUE;
}

/* Stage 2, for packets aimed at a VIP: fragments, extension headers, ICMP,
 * ports. On KEEL_CONTINUE pkt->key is the complete flow key. */
KEEL_INLINE int keel_parse_l4(void *data, void *end, struct keel_pkt *pkt)
{
	__u16 off;
	int rc;

	/* A datagram to a VIP in a frame sent to an Ethernet group address
	 * (broadcast, multicast) reached every station on the link: every
	 * balancer there would forward it (each real getting a copy from
	 * each) or answer it. A router must not forward a link-layer
	 * broadcast (RFC 1812 5.3.4; a host discards it, RFC 1122 3.3.6).
	 * These two checks also keep every answer keel sends (an echo reply,
	 * an ICMP too-big) to one host (RFC 1122 3.2.2, RFC 1812 4.3.2.7,
	 * RFC 4443 2.4(e)): a forged group source would aim them at many. */
	if ((__u8 *)data + 1 > (__u8 *)end || (((const __u8 *)data)[0] & 1))
		return KEEL_R_DROP_L2_MULTICAST;
	/* A martian (keel_src_martian), which IPVS's kernel discarded too.
	 * Forwarded, it would take a connection-table entry and reach a real
	 * that drops it. */
	if (keel_src_martian(pkt->key.family, pkt->key.src, pkt->key.dst))
		return KEEL_R_DROP_BAD_SOURCE;
	if ((__u8 *)data + pkt->l3_off + pkt->ip_len > (__u8 *)end)
		return KEEL_R_DROP_TRUNCATED;

	if (pkt->key.family == KEEL_AF_INET) {
		struct keel_ipv4 *ip = (struct keel_ipv4 *)((__u8 *)data + (pkt->l3_off & 0x1f));

		if ((void *)(ip + 1) > end)
			return KEEL_R_DROP_TRUNCATED;
		if (ip->frag_off & KEEL_HTONS(KEEL_IP_MF | KEEL_IP_OFFMASK))
			return KEEL_R_DROP_FRAGMENT;
		if ((ip->ver_ihl & 0x0f) > 5) {
			rc = keel_parse_ipv4_options(data, end, pkt);
			if (rc != KEEL_CONTINUE)
				return rc;
		}
	} else {
		rc = keel_parse_ipv6_ext(data, end, pkt);
		if (rc != KEEL_CONTINUE)
			return rc;
	}

	off = pkt->l4_off & 0x3fff;
	switch (pkt->l4_proto) {
	case KEEL_PROTO_TCP: {
		struct keel_tcp *tcp = (struct keel_tcp *)((__u8 *)data + off);

		if ((void *)(tcp + 1) > end || !keel_in_ip(pkt, off, sizeof(*tcp)))
			return KEEL_R_DROP_TRUNCATED;
		pkt->key.sport = tcp->sport;
		pkt->key.dport = tcp->dport;
		pkt->tcp_flags = tcp->flags;
		return KEEL_CONTINUE;
	}
	case KEEL_PROTO_UDP: {
		struct keel_udp *udp = (struct keel_udp *)((__u8 *)data + off);

		if ((void *)(udp + 1) > end || !keel_in_ip(pkt, off, sizeof(*udp)))
			return KEEL_R_DROP_TRUNCATED;
		pkt->key.sport = udp->sport;
		pkt->key.dport = udp->dport;
		return KEEL_CONTINUE;
	}
	case KEEL_IPPROTO_ICMP:
	case KEEL_IPPROTO_ICMPV6: {
		struct keel_icmp *icmp = (struct keel_icmp *)((__u8 *)data + off);

		if ((void *)(icmp + 1) > end || !keel_in_ip(pkt, off, sizeof(*icmp)))
			return KEEL_R_DROP_TRUNCATED;
		if (pkt->key.family == KEEL_AF_INET && pkt->l4_proto == KEEL_IPPROTO_ICMP) {
			if (icmp->type == KEEL_ICMP_ECHO_REQUEST && icmp->code == 0)
				return KEEL_ICMP_ECHO;
			/* Errors about a real's packet go to that real, as Katran
			 * steers type 3: frag-needed for its path MTU, and the rest
			 * (port, host or net unreachable, administratively
			 * prohibited, time exceeded) so that its stack learns of
			 * them; it judges them as errors it gets directly (Linux
			 * drops a pending connection on some, docs/architecture.md
			 * "ICMP errors toward a VIP" says which, and what UDP
			 * sockets make of them). */
			if (icmp->type == KEEL_ICMP_DEST_UNREACH || icmp->type == KEEL_ICMP_TIME_EXCEEDED)
				return keel_parse_icmp_quote(
					data, end, pkt, off + sizeof(*icmp),
					icmp->type == KEEL_ICMP_DEST_UNREACH && icmp->code == KEEL_ICMP_FRAG_NEEDED
						? KEEL_ICMP_ERROR_PMTU
						: KEEL_ICMP_ERROR_OTHER);
		} else if (pkt->key.family == KEEL_AF_INET6 && pkt->l4_proto == KEEL_IPPROTO_ICMPV6) {
			if (icmp->type == KEEL_ICMPV6_ECHO_REQUEST && icmp->code == 0)
				return KEEL_ICMP_ECHO;
			if (icmp->type == KEEL_ICMPV6_DEST_UNREACH || icmp->type == KEEL_ICMPV6_PKT_TOOBIG ||
			    icmp->type == KEEL_ICMPV6_TIME_EXCEEDED)
				return keel_parse_icmp_quote(data, end, pkt, off + sizeof(*icmp),
							     icmp->type == KEEL_ICMPV6_PKT_TOOBIG ? KEEL_ICMP_ERROR_PMTU
												  : KEEL_ICMP_ERROR_OTHER);
		}
		return KEEL_R_DROP_ICMP;
	}
	default:
		return KEEL_R_DROP_L4_PROTO;
	}
}

#endif
