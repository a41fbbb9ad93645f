/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Packet rewrites shared by the XDP program, the DPDK workers and the tests:
 * the IPIP / IP6IP6 / 4in6 / 6in4 outer header, the outer source address, the
 * L2 rewrite, the in-place ICMP echo reply and the ICMP "too big" error.
 *
 * Like parse.h these compile as BPF C, C and C++. The functions never grow or
 * shrink a packet: the caller makes room first (bpf_xdp_adjust_head with a
 * negative delta, mbuf headroom), so `data` is the NEW start of the frame and
 * the original frame begins at data + keel_encap_hdr_len(real) (or
 * keel_icmp_too_big_grow(), whose caller also cuts the frame's tail).
 * Every write is preceded by a bounds check against `end` in a form the BPF
 * verifier can follow; a function returns 0 on success, -1 if the frame is
 * too short (the caller counts DROP_ENCAP_FAILED).
 *
 * Outer header rules (identical on both data planes, so the fixture tables
 * hold one expected byte string per row):
 *   outer family   = the real's family (a v6 real behind a v4 VIP is 4in6)
 *   IPv4 outer     ver 4, IHL 5, TOS = inner TOS/traffic class, total length,
 *                  id 0, DF set, TTL 64, protocol 4 (inner v4) / 41 (inner v6),
 *                  header checksum (RFC 791)
 *   IPv6 outer     ver 6, traffic class = inner TOS/TC, flow label = the
 *                  low 20 bits of the flow hash (RFC 6438: routers that hash
 *                  the label spread tunnels over ECMP paths per flow, as the
 *                  kernel's own ip6 tunnels do), payload length = inner IP
 *                  length, nexthdr 41 / 4, hop limit 64
 *   outer source   node tunnel_src_v4 / tunnel_src_v6, or, when hashed
 *                  (keel_encap_hash_src), derived from the flow hash so that a
 *                  real's NIC spreads tunnels over its RX queues (RSS sees one
 *                  outer 2-tuple per balancer otherwise):
 *                    v4: hash_src_v4_prefix | (hash & ~hash_src_v4_mask)
 *                    v6: hash_src_v6_prefix (tunnel_src_v6 when 0) words
 *                        0..2, word 3 = hash
 *                  (hash = keel_flow_hash of the flow key: per-flow, stable)
 *   L2             dst = node next_hop_mac, src = node local_mac, an 802.1Q tag
 *                  is kept, the ethertype becomes the outer family's
 */
#ifndef KEEL_ENCAP_H
#define KEEL_ENCAP_H

#include "keel/hash.h"
#include "keel/parse.h"
#include "keel/rate.h"

#define KEEL_ENCAP_TTL 64
#define KEEL_ETH_ALEN 6

#define KEEL_HTONL(x)                                                                   \
	((__u32)((((__u32)(x) & 0xffu) << 24) | (((__u32)(x) & 0xff00u) << 8) |         \
		 (((__u32)(x) >> 8) & 0xff00u) | (((__u32)(x) >> 24) & 0xffu)))

#define KEEL_IP_DF 0x4000

/* ---- Internet checksum (RFC 1071 / RFC 1624) ----
 * The one's-complement sum is byte-order independent (RFC 1071 §2(B)), so
 * these work on 16-bit words exactly as they sit in memory: no swaps. */

/* The 16-bit word two consecutive bytes form in memory (little-endian
 * targets, see hash.h); avoids taking the address of a packed member. */
KEEL_INLINE __u16 keel_mem_word16(__u8 first, __u8 second)
{
	return (__u16)(first | ((__u16)second << 8));
}

KEEL_INLINE __u16 keel_csum_fold(__u32 sum)
{
	sum = (sum & 0xffffu) + (sum >> 16);
	sum = (sum & 0xffffu) + (sum >> 16);
	return (__u16)sum;
}

/* Header checksum of an option-less IPv4 header (check field must be 0 or is
 * skipped: we skip word 5), read from the header. keel_encap_write sums
 * the same words from the values it writes; this is the reference the tests
 * check packets against. */
KEEL_INLINE __u16 keel_ipv4_hdr_csum(const struct keel_ipv4 *ip)
{
	const __u8 *b = (const __u8 *)ip;
	__u32 sum = 0;

	/* Unrolled by hand: 10 words, word 5 (bytes 10-11) is the checksum. */
	sum += keel_mem_word16(b[0], b[1]);
	sum += keel_mem_word16(b[2], b[3]);
	sum += keel_mem_word16(b[4], b[5]);
	sum += keel_mem_word16(b[6], b[7]);
	sum += keel_mem_word16(b[8], b[9]);
	sum += keel_mem_word16(b[12], b[13]);
	sum += keel_mem_word16(b[14], b[15]);
	sum += keel_mem_word16(b[16], b[17]);
	sum += keel_mem_word16(b[18], b[19]);
	return (__u16)~keel_csum_fold(sum);
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). All values as in memory.
 * One case remains: where every covered word is now zero (an ICMP echo
 * reply with id 0, sequence 0 and a zero or empty payload), the sum of
 * nonzero terms comes out as -0 (0xffff) where +0 is the truth, so eqn. 3
 * gives 0x0000, which no receiver accepts: only 0xffff verifies then. 0xffff
 * verifies wherever 0x0000 does (it adds -0 instead of +0), so 0x0000 is
 * never returned. */
KEEL_INLINE __u16 keel_csum_replace16(__u16 check, __u16 old_word, __u16 new_word)
{
	__u32 sum = (__u16)~check;
	__u16 out;

	sum += (__u16)~old_word;
	sum += new_word;
	out = (__u16)~keel_csum_fold(sum);
	return out ? out : 0xffff;
}

/* ---- Outer header ---- */

/* The frame length to tunnel: bytes after the IP packet (a sender's
 * garbage, or padding) are no part of it and are cut before encapsulation,
 * as a router cuts them, since the MTU check counts the IP length only and
 * they could take the tunnelled frame past the MTU unnoticed. A frame of at
 * most KEEL_ENCAP_KEEP_TAIL bytes keeps them: that is a short frame's
 * Ethernet padding, common (a bare TCP ACK), harmless (it cannot take a
 * frame near any MTU) and dropped by the real's stack, and cutting it would
 * cost XDP a helper call (bpf_xdp_adjust_tail) on each: ~20-30 ns of an
 * established flow's ~280 ns of kernel time (perf/xdp/xdp_bench, its cases
 * "established tcp, 60 B (padding kept)" against "200 B past IP (cut)";
 * docs/performance-xdp.md). */
#define KEEL_ENCAP_KEEP_TAIL 64
KEEL_INLINE __u32 keel_encap_frame_len(__u32 frame_len, __u16 l3_off, __u16 ip_len)
{
	__u32 packet = (__u32)l3_off + ip_len;

	return frame_len > KEEL_ENCAP_KEEP_TAIL && frame_len > packet ? packet : frame_len;
}

/* Bytes the caller must make room for in front of the frame. */
KEEL_INLINE __u16 keel_encap_hdr_len(__u8 real_family)
{
	return real_family == KEEL_AF_INET6 ? (__u16)sizeof(struct keel_ipv6)
					    : (__u16)sizeof(struct keel_ipv4);
}

/* ---- L2 ---- */

KEEL_INLINE void keel_eth_set_macs(struct keel_eth *eth, const __u8 dst[6], const __u8 src[6])
{
	__builtin_memcpy(eth->dst, dst, KEEL_ETH_ALEN);
	__builtin_memcpy(eth->src, src, KEEL_ETH_ALEN);
}

/* The source MAC of an answer keel makes itself (an echo reply, a too-big
 * error): the node's own (node.local_mac: the interface's, or the file's),
 * not the request's destination MAC, which is another host's when the
 * interface also sees frames for others (promiscuous: tcpdump, a bridge
 * member, DPDK's `promiscuous: true`): sent from it, the answer would teach
 * the switch that host's MAC on this port. An all-zero or absent local MAC
 * (not known): the request's destination. */
KEEL_INLINE const __u8 *keel_answer_src_mac(const __u8 *local_mac, const __u8 *asked)
{
	if (local_mac && (local_mac[0] | local_mac[1] | local_mac[2] | local_mac[3] | local_mac[4] | local_mac[5]))
		return local_mac;
	return asked;
}

/* l2dsr: the frame goes to the real's MAC unchanged above L2 (the real owns
 * the VIP on a loopback/dummy). A VLAN tag stays as it is. */
KEEL_INLINE int keel_l2_rewrite(void *data, void *end, const __u8 dst[6], const __u8 src[6])
{
	struct keel_eth *eth = (struct keel_eth *)data;

	if ((void *)(eth + 1) > end)
		return -1;
	keel_eth_set_macs(eth, dst, src);
	return 0;
}

/* ---- Encapsulation ----
 * In two steps, so that a data plane may do the first once per real:
 *   keel_encap_prepare()  what the outer headers hold that follows from the
 *                         node and the real alone (a template);
 *   keel_encap_write()    a packet's outer headers from the template and the
 *                         packet's own fields (inner family, TOS, length,
 *                         the flow hash of a hashed source).
 * XDP does both per packet (the template on its stack). The DPDK plane keeps
 * a prepared template beside each real in its snapshot, so its packets only
 * write. Every byte comes from these two functions either way. */

/* Ethernet header and the longest outer IP header, as sent. */
#define KEEL_ENCAP_TPL_HDR (sizeof(struct keel_eth) + sizeof(struct keel_ipv6))

struct keel_encap_tpl {
	/* The Ethernet header (dst next_hop_mac, src local_mac, the outer
	 * family's ethertype) and after it the outer IP header with every
	 * per-packet field zero: IPv4 ver/IHL 0x45, DF, TTL 64, the unhashed
	 * source, the real; IPv6 hop limit 64, the unhashed source, the real. */
	__u8 hdr[KEEL_ENCAP_TPL_HDR];
	__u8 family;        /* the real's family: the outer header's */
	__u8 node_hash_src; /* the node hashes the outer source of this family */
	__u32 csum;         /* IPv4: the sum of the header's 16-bit words as in hdr, less the source */
	__u32 src_v4;       /* IPv4 source when not hashed (node tunnel_src_v4) */
	__u32 src_prefix;   /* hashed IPv4 source: src_prefix | (hash & ~src_mask) */
	__u32 src_mask;
};

KEEL_INLINE void keel_encap_prepare(struct keel_encap_tpl *t, const struct keel_node_config *node,
				    const struct keel_backend *real)
{
	struct keel_eth *eth = (struct keel_eth *)t->hdr;

	/* Field by field, no memset of the whole template (XDP prepares one
	 * per packet; a memset of it cost ~15 ns there): every byte of hdr is
	 * written here. */
	keel_eth_set_macs(eth, node->next_hop_mac, node->local_mac);
	t->family = real->family;
	t->node_hash_src = (node->flags & (real->family == KEEL_AF_INET6 ? KEEL_NODE_F_HASH_SRC_V6
									 : KEEL_NODE_F_HASH_SRC_V4)) != 0;
	t->src_v4 = node->tunnel_src_v4;
	t->src_prefix = node->hash_src_v4_prefix;
	t->src_mask = node->hash_src_v4_mask;
	if (real->family == KEEL_AF_INET6) {
		struct keel_ipv6 *ip6 = (struct keel_ipv6 *)(eth + 1);

		eth->proto = KEEL_HTONS(KEEL_ETH_P_IPV6);
		/* Version/traffic class/flow label, payload length and next
		 * header are written per packet. */
		ip6->ver_tc_flow = 0;
		ip6->payload_len = 0;
		ip6->nexthdr = 0;
		ip6->hop_limit = KEEL_ENCAP_TTL;
		/* Hashed by the node with a prefix of its own (hash_source_v6):
		 * its 96 bits, the last 32 the flow hash's per packet. */
		if (t->node_hash_src &&
		    (node->hash_src_v6_prefix[0] | node->hash_src_v6_prefix[1] | node->hash_src_v6_prefix[2])) {
			ip6->saddr[0] = node->hash_src_v6_prefix[0];
			ip6->saddr[1] = node->hash_src_v6_prefix[1];
			ip6->saddr[2] = node->hash_src_v6_prefix[2];
		} else {
			ip6->saddr[0] = node->tunnel_src_v6[0];
			ip6->saddr[1] = node->tunnel_src_v6[1];
			ip6->saddr[2] = node->tunnel_src_v6[2];
		}
		ip6->saddr[3] = node->tunnel_src_v6[3];
		ip6->daddr[0] = real->addr[0];
		ip6->daddr[1] = real->addr[1];
		ip6->daddr[2] = real->addr[2];
		ip6->daddr[3] = real->addr[3];
	} else {
		struct keel_ipv4 *ip = (struct keel_ipv4 *)(eth + 1);
		__u32 daddr = real->addr[0];

		eth->proto = KEEL_HTONS(KEEL_ETH_P_IP);
		ip->ver_ihl = 0x45;
		/* TOS, total length, protocol, checksum and the source are
		 * written per packet (keel_encap_write); id stays 0. */
		ip->tos = 0;
		ip->tot_len = 0;
		ip->id = 0;
		/* DF: the encapsulated packet must not be fragmented on the way
		 * to the real (it could not reassemble at line rate); the MTU
		 * check and PMTUD steering (parse.h) handle the size instead. */
		ip->frag_off = KEEL_HTONS(KEEL_IP_DF);
		ip->ttl = KEEL_ENCAP_TTL;
		ip->protocol = 0;
		ip->check = 0;
		ip->saddr = node->tunnel_src_v4;
		ip->daddr = daddr;
		/* The rest of the room for an IPv6 header is never written to a
		 * packet from an IPv4 template, but a verifier that cannot tie
		 * keel_encap_write()'s family branch to this one would see it
		 * read: never uninitialised stack. */
		__builtin_memset(t->hdr + sizeof(struct keel_eth) + sizeof(*ip), 0,
				 sizeof(struct keel_ipv6) - sizeof(*ip));
		t->csum = keel_mem_word16(0x45, 0) + (__u16)KEEL_HTONS(KEEL_IP_DF) +
			  keel_mem_word16(KEEL_ENCAP_TTL, 0) + (daddr & 0xffffu) + (daddr >> 16);
	}
}

/* Whether the outer source is derived from the flow hash: the node enables
 * it per outer family, a service may ask for it on its own. */
KEEL_INLINE int keel_encap_hash_src(const struct keel_encap_tpl *t, __u32 svc_flags)
{
	return (svc_flags & KEEL_SVC_F_HASH_SRC_IP) || t->node_hash_src;
}

/* Whether keel_encap_write() reads flow_hash: for a hashed outer source,
 * and for every IPv6 outer header (its flow label). */
KEEL_INLINE int keel_encap_needs_flow_hash(const struct keel_encap_tpl *t, int hash_src)
{
	return hash_src || t->family == KEEL_AF_INET6;
}

/* Layout before:  data: [room: hdr_len][eth 14 (+ vlan 4)][inner IP ...]
 *         after:  data: [eth 14 (+ vlan 4)][outer IP hdr_len][inner IP ...]
 * l3_off: 14, or 18 with an 802.1Q tag (keel_pkt.l3_off of the original);
 * inner_len: inner IP length in bytes (keel_pkt.ip_len); flow_hash:
 * keel_flow_hash() of the packet's flow key wherever
 * keel_encap_needs_flow_hash() says it is read, else anything. */
KEEL_INLINE int keel_encap_write(void *data, void *end, __u16 l3_off, const struct keel_encap_tpl *t,
				 int hash_src, __u32 flow_hash, __u8 inner_family, __u8 tos,
				 __u16 inner_len)
{
	__u8 *p = (__u8 *)data;
	struct keel_eth *eth = (struct keel_eth *)data;
	const struct keel_eth *tpl_eth = (const struct keel_eth *)t->hdr;
	__u8 protocol = inner_family == KEEL_AF_INET6 ? KEEL_IPPROTO_IPV6 : KEEL_IPPROTO_IPIP;

	if (l3_off > sizeof(struct keel_eth)) {
		/* Move the 802.1Q tag (TPID + TCI) from the original frame to
		 * its new place BEFORE writing the outer header, which overlaps
		 * where the old tag sits. */
		struct keel_vlan *vlan = (struct keel_vlan *)(p + sizeof(struct keel_eth));
		__u16 tpid;
		__u16 tci;

		if (t->family == KEEL_AF_INET6) {
			struct keel_eth *old_eth = (struct keel_eth *)(p + sizeof(struct keel_ipv6));
			struct keel_vlan *old_vlan = (struct keel_vlan *)(old_eth + 1);

			if ((void *)(old_vlan + 1) > end)
				return -1;
			tpid = old_eth->proto;
			tci = old_vlan->tci;
		} else {
			struct keel_eth *old_eth = (struct keel_eth *)(p + sizeof(struct keel_ipv4));
			struct keel_vlan *old_vlan = (struct keel_vlan *)(old_eth + 1);

			if ((void *)(old_vlan + 1) > end)
				return -1;
			tpid = old_eth->proto;
			tci = old_vlan->tci;
		}
		if ((void *)(vlan + 1) > end)
			return -1;
		keel_eth_set_macs(eth, tpl_eth->dst, tpl_eth->src);
		eth->proto = tpid;
		vlan->tci = tci;
		vlan->proto = tpl_eth->proto;
	} else {
		if ((void *)(eth + 1) > end)
			return -1;
		__builtin_memcpy(eth, tpl_eth, sizeof(*eth));
	}

	if (t->family == KEEL_AF_INET6) {
		struct keel_ipv6 *ip6 = (struct keel_ipv6 *)(p + (l3_off & 0x1f));
		__u8 *v;

		if ((void *)(ip6 + 1) > end)
			return -1;
		__builtin_memcpy(ip6, t->hdr + sizeof(struct keel_eth), sizeof(*ip6));
		v = (__u8 *)&ip6->ver_tc_flow;
		v[0] = (__u8)(0x60 | (tos >> 4));
		v[1] = (__u8)(((tos & 0x0f) << 4) | ((flow_hash >> 16) & 0x0f));
		v[2] = (__u8)(flow_hash >> 8);
		v[3] = (__u8)flow_hash;
		ip6->payload_len = KEEL_HTONS(inner_len);
		ip6->nexthdr = protocol;
		if (hash_src)
			ip6->saddr[3] = flow_hash; /* words 0-2 stay tunnel_src_v6's */
	} else {
		struct keel_ipv4 *ip = (struct keel_ipv4 *)(p + (l3_off & 0x1f));
		__u16 tot_len = KEEL_HTONS((__u16)(inner_len + sizeof(struct keel_ipv4)));
		__u32 saddr = hash_src ? (t->src_prefix | (flow_hash & ~t->src_mask)) : t->src_v4;

		if ((void *)(ip + 1) > end)
			return -1;
		__builtin_memcpy(ip, t->hdr + sizeof(struct keel_eth), sizeof(*ip));
		ip->tos = tos;
		ip->tot_len = tot_len;
		ip->protocol = protocol;
		ip->saddr = saddr;
		/* The checksum from the template's sum and the values written
		 * rather than by reading the header back: the same sum of the
		 * header's 16-bit words as they sit in memory, check 0. */
		ip->check = (__u16)~keel_csum_fold(t->csum + keel_mem_word16(0, tos) + tot_len +
						    keel_mem_word16(0, protocol) + (saddr & 0xffffu) +
						    (saddr >> 16));
	}
	return 0;
}

/* ---- ICMP echo reply, in place ----
 * Answers an echo request aimed at a VIP (pkt from keel_parse_l4 returning
 * KEEL_ICMP_ECHO): back to the sender's MAC from local_mac
 * (keel_answer_src_mac), addresses swapped, type 0 / 129, TTL / hop limit 64.
 * Checksums are updated incrementally (RFC 1624): swapping addresses leaves
 * both the IPv4 header sum and the ICMPv6 pseudo-header sum unchanged, so only
 * the changed type word and the TTL word need a fix-up. */
KEEL_INLINE int keel_icmp_echo_reply(void *data, void *end, const struct keel_pkt *pkt, const __u8 *local_mac)
{
	struct keel_eth *eth = (struct keel_eth *)data;
	struct keel_icmp *icmp = (struct keel_icmp *)((__u8 *)data + (pkt->l4_off & 0x3fff));
	__u8 mac[KEEL_ETH_ALEN];
	__u16 old_word;

	if ((void *)(eth + 1) > end)
		return -1;
	if ((void *)(icmp + 1) > end)
		return -1;

	if (pkt->key.family == KEEL_AF_INET) {
		struct keel_ipv4 *ip = (struct keel_ipv4 *)((__u8 *)data + (pkt->l3_off & 0x1f));
		__u32 addr;

		if ((void *)(ip + 1) > end)
			return -1;
		addr = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = addr;
		/* ttl and protocol share a 16-bit word: the checksum sees both. */
		old_word = keel_mem_word16(ip->ttl, ip->protocol);
		ip->ttl = KEEL_ENCAP_TTL;
		ip->check = keel_csum_replace16(ip->check, old_word,
						keel_mem_word16(ip->ttl, ip->protocol));
		old_word = keel_mem_word16(icmp->type, icmp->code);
		icmp->type = 0; /* echo reply (RFC 792) */
	} else {
		struct keel_ipv6 *ip6 = (struct keel_ipv6 *)((__u8 *)data + (pkt->l3_off & 0x1f));
		__u32 a0, a1, a2, a3;

		if ((void *)(ip6 + 1) > end)
			return -1;
		a0 = ip6->saddr[0];
		a1 = ip6->saddr[1];
		a2 = ip6->saddr[2];
		a3 = ip6->saddr[3];
		ip6->saddr[0] = ip6->daddr[0];
		ip6->saddr[1] = ip6->daddr[1];
		ip6->saddr[2] = ip6->daddr[2];
		ip6->saddr[3] = ip6->daddr[3];
		ip6->daddr[0] = a0;
		ip6->daddr[1] = a1;
		ip6->daddr[2] = a2;
		ip6->daddr[3] = a3;
		ip6->hop_limit = KEEL_ENCAP_TTL; /* not covered by any checksum */
		old_word = keel_mem_word16(icmp->type, icmp->code);
		icmp->type = 129; /* ICMPv6 echo reply (RFC 4443 §4.2) */
	}
	icmp->check = keel_csum_replace16(icmp->check, old_word,
					  keel_mem_word16(icmp->type, icmp->code));

	__builtin_memcpy(mac, eth->dst, KEEL_ETH_ALEN);
	__builtin_memcpy(eth->dst, eth->src, KEEL_ETH_ALEN);
	__builtin_memcpy(eth->src, keel_answer_src_mac(local_mac, mac), KEEL_ETH_ALEN);
	return 0;
}

/* ---- ICMP "fragmentation needed" / ICMPv6 "packet too big", in place ----
 * A client packet that would exceed the MTU once encapsulated is answered
 * instead of silently dropped, so the client's path-MTU discovery learns the
 * smaller size (RFC 1191, RFC 8201) rather than stalling in a black hole:
 *   IPv4  type 3 code 4 (RFC 792), next-hop MTU in the low 16 bits of the
 *         second word (RFC 1191 §4); only when the packet has DF set: without
 *         it the sender allows fragmenting, which keel does not do (the caller
 *         keeps DROP_TOO_BIG)
 *   IPv6  type 2 code 0 (RFC 4443 §3.2), the 32-bit MTU
 * The MTU reported is the largest inner L3 packet that fits: the port's MTU
 * less the outer header of the chosen real's family.
 * From the VIP to the client (the client's stack matches the quoted header to
 * its socket), TTL / hop limit 64, MACs swapped, a VLAN tag kept as it came.
 * The quote is a FIXED KEEL_ICMP_TOO_BIG_QUOTE bytes from the start of the
 * original IP packet: at least the 60-byte IPv4 header + 8 RFC 792 asks for
 * and the 40 + 8 of IPv6; fixed so the checksum loop is bounded and the same
 * on both planes. The reply is smaller than the packet that caused it (no
 * amplifier), and the answers are rate limited, per client and in all
 * (keel_icmp_too_big_allow).
 * Never sent for an ICMP error (RFC 1122 §3.2.2, RFC 4443 §2.4(e)), nor for a
 * packet shorter than the quote (only possible with a tiny MTU). */
#define KEEL_ICMP_TOO_BIG_QUOTE 128
#define KEEL_ICMP_TOO_BIG_TTL 64

/* The answers are limited per CPU (XDP) or per worker (DPDK), as RFC 4443
 * §2.4(f) requires of ICMPv6 errors and RFC 1812 §4.3.2.8 asks of routers:
 * `rate` answers a second (node_config.icmp_too_big_rate; 0: none at all)
 * with bursts of up to keel_rate_burst(rate) (one twentieth of a second's
 * worth, at least 1: Linux's icmp_msgs_per_sec / icmp_msgs_burst are 1000 /
 * 50), by keel_rate_allow (keel/rate.h). A packet over the limit keeps
 * DROP_TOO_BIG.
 * Each client has a limit of its own too (keel_icmp_too_big_allow, below). */

/* ---- Per-client limit on the too-big answers ----
 * The limit above is global: one client sending oversized packets at the
 * rate would take the whole budget and every other client's path-MTU
 * discovery through keel would stop. So, as the kernel limits its ICMP
 * errors per peer as well as globally (net.ipv4.icmp_ratelimit beside
 * icmp_msgs_per_sec), each client also has a bucket of its own:
 * `client_rate` answers a second (node_config.icmp_too_big_client_rate; 0:
 * no per-client limit), bursts of keel_rate_burst(client_rate), per CPU /
 * worker like the global one.
 * The buckets are KEEL_ICMP_CLIENT_SLOTS GCRA times per CPU / worker, the
 * slot chosen by a hash of the client's address: an IPv4 address whole, an
 * IPv6 address's /64 (a client picks its own low 64 bits, so one host would
 * otherwise have 2^64 buckets). Clients whose hashes collide share a slot,
 * and its limit: with one client over its limit, another is refused with it
 * only if it shares that client's slot (1 in KEEL_ICMP_CLIENT_SLOTS). The
 * hash is unseeded: a seed would not stop a sender who forges a victim's
 * own source address, which takes the victim's slot whatever the hash. A
 * flood from many addresses spreads over many slots and is bounded by the
 * global limit alone, as before. */
#define KEEL_ICMP_CLIENT_SLOTS 4096u /* a power of 2: 32 KiB of u64 per CPU / worker */
#define KEEL_SEED_ICMP_CLIENT 0x69636d70u /* "icmp" */

/* The client's slot: a hash of its address (IPv6: the /64) and family. */
KEEL_INLINE __u32 keel_icmp_client_slot(const struct keel_flow_key *k)
{
	__u32 h = KEEL_SEED_ICMP_CLIENT;

	h = keel_hash_mix(h, k->src[0]);
	h = keel_hash_mix(h, k->family == KEEL_AF_INET6 ? k->src[1] : 0);
	h = keel_hash_mix(h, k->family);
	return keel_hash_final(h, 12) & (KEEL_ICMP_CLIENT_SLOTS - 1);
}

/* Whether a too-big answer may go: the client's own bucket first, so a
 * client over its limit spends none of the global budget, then the global
 * one (rate 0: none at all). Refused by the global bucket, the client's
 * keeps the place it had: the client got no answer, so it paid none. */
KEEL_INLINE int keel_icmp_too_big_allow(__u64 *client_tat, __u64 *tat, __u64 now_ns, __u32 client_rate,
					__u32 rate)
{
	__u64 before = *client_tat;

	if (rate == 0)
		return 0;
	if (client_rate != 0 && !keel_rate_allow(client_tat, now_ns, client_rate))
		return 0;
	if (!keel_rate_allow(tat, now_ns, rate)) {
		*client_tat = before;
		return 0;
	}
	return 1;
}

/* Bytes the frame grows at its front: the new IP header and the ICMP header. */
KEEL_INLINE __u16 keel_icmp_too_big_grow(__u8 family)
{
	return family == KEEL_AF_INET6 ? (__u16)(sizeof(struct keel_ipv6) + sizeof(struct keel_icmp))
				       : (__u16)(sizeof(struct keel_ipv4) + sizeof(struct keel_icmp));
}

/* The reply's frame length: L2 (with its tag), IP, ICMP, the quote. */
KEEL_INLINE __u16 keel_icmp_too_big_len(const struct keel_pkt *pkt)
{
	return (__u16)(pkt->l3_off + keel_icmp_too_big_grow(pkt->key.family) + KEEL_ICMP_TOO_BIG_QUOTE);
}

/* Whether a packet (parsed to the end by keel_parse_l4) that is over the MTU
 * gets the error rather than DROP_TOO_BIG. Reads the original frame. */
KEEL_INLINE int keel_icmp_too_big_wanted(void *data, void *end, const struct keel_pkt *pkt)
{
	/* Never an error about an error; a group frame or source never got
	 * this far (keel_parse_l4). */
	if (pkt->icmp_error)
		return 0;
	if (pkt->ip_len < KEEL_ICMP_TOO_BIG_QUOTE)
		return 0;
	if (pkt->key.family == KEEL_AF_INET) {
		struct keel_ipv4 *ip = (struct keel_ipv4 *)((__u8 *)data + (pkt->l3_off & 0x1f));

		if ((void *)(ip + 1) > end)
			return 0;
		return (ip->frag_off & KEEL_HTONS(KEEL_IP_DF)) != 0;
	}
	return 1;
}

/* The Ethernet header (and tag) from data + grow to data, back to the
 * sender's MAC from local_mac (keel_answer_src_mac). The
 * two places never overlap (grow >= 28 > 18), so the copy may go in any order;
 * it must come before the new IP header is written over the old L2 bytes. */
KEEL_INLINE int keel_icmp_move_l2(__u8 *p, void *end, __u16 l3_off, __u16 grow, const __u8 *local_mac)
{
	struct keel_eth *eth = (struct keel_eth *)p;
	struct keel_eth *old = (struct keel_eth *)(p + grow);

	if ((void *)(old + 1) > end)
		return -1;
	keel_eth_set_macs(eth, old->src, keel_answer_src_mac(local_mac, old->dst));
	eth->proto = old->proto;
	if (l3_off > sizeof(struct keel_eth)) {
		struct keel_vlan *vlan = (struct keel_vlan *)(eth + 1);
		struct keel_vlan *old_vlan = (struct keel_vlan *)(old + 1);

		if ((void *)(old_vlan + 1) > end)
			return -1;
		vlan->tci = old_vlan->tci;
		vlan->proto = old_vlan->proto;
	}
	return 0;
}

/* Sum of the quote's 16-bit words as they sit in memory. */
KEEL_INLINE int keel_icmp_quote_sum(const __u8 *q, void *end, __u32 *sum)
{
	__u32 s = 0;
	int i;

	if ((void *)(q + KEEL_ICMP_TOO_BIG_QUOTE) > end)
		return -1;
	/* A loop, not unrolled: unrolled, clang hoisted the 128 loads and
	 * spilled them past the BPF stack limit. Bounded, so the verifier
	 * walks it (kernel 5.3+). */
#if defined(__clang__)
#pragma nounroll
#endif
	for (i = 0; i < KEEL_ICMP_TOO_BIG_QUOTE; i += 2)
		s += keel_mem_word16(q[i], q[i + 1]);
	*sum = s;
	return 0;
}

/* Layout before:  data: [room: grow][eth 14 (+ vlan 4)][IP packet ...]
 *         after:  data: [eth (+ vlan)][IP VIP -> client][ICMP 8][quote 128]
 * The quote stays where the original IP packet starts: only L2 moves, and the
 * new headers fill the room and the old L2 bytes. The caller grows the frame
 * by keel_icmp_too_big_grow() at its front and cuts it to
 * keel_icmp_too_big_len() (end), after keel_icmp_too_big_wanted() said yes.
 * mtu: the next-hop MTU to report; local_mac: the answer's source MAC
 * (keel_answer_src_mac). Returns 0, or -1 if the frame is short. */
KEEL_INLINE int keel_icmp_too_big_write(void *data, void *end, const struct keel_pkt *pkt, __u32 mtu,
					const __u8 *local_mac)
{
	__u8 *p = (__u8 *)data;
	__u16 l3_off = pkt->l3_off & 0x1f;
	__u32 sum;

	if (pkt->key.family == KEEL_AF_INET) {
		const __u16 grow = sizeof(struct keel_ipv4) + sizeof(struct keel_icmp);
		struct keel_ipv4 *ip = (struct keel_ipv4 *)(p + l3_off);
		struct keel_icmp *icmp = (struct keel_icmp *)(p + l3_off + sizeof(struct keel_ipv4));
		const struct keel_ipv4 *orig = (const struct keel_ipv4 *)(p + l3_off + grow);
		__u16 tot_len = KEEL_HTONS((__u16)(grow + KEEL_ICMP_TOO_BIG_QUOTE));
		__u32 rest = KEEL_HTONL(mtu > 0xffffu ? 0xffffu : mtu);
		__u32 vip;
		__u32 client;

		if (keel_icmp_quote_sum((const __u8 *)orig, end, &sum))
			return -1;
		vip = orig->daddr;
		client = orig->saddr;
		if (keel_icmp_move_l2(p, end, l3_off, grow, local_mac))
			return -1;
		if ((void *)(icmp + 1) > end)
			return -1;
		ip->ver_ihl = 0x45;
		ip->tos = 0;
		ip->tot_len = tot_len;
		ip->id = 0;
		ip->frag_off = 0;
		ip->ttl = KEEL_ICMP_TOO_BIG_TTL;
		ip->protocol = KEEL_IPPROTO_ICMP;
		ip->saddr = vip;
		ip->daddr = client;
		ip->check = (__u16)~keel_csum_fold(keel_mem_word16(0x45, 0) + tot_len +
						   keel_mem_word16(KEEL_ICMP_TOO_BIG_TTL, KEEL_IPPROTO_ICMP) +
						   (vip & 0xffffu) + (vip >> 16) + (client & 0xffffu) +
						   (client >> 16));
		icmp->type = KEEL_ICMP_DEST_UNREACH;
		icmp->code = KEEL_ICMP_FRAG_NEEDED;
		icmp->rest = rest;
		sum += keel_mem_word16(KEEL_ICMP_DEST_UNREACH, KEEL_ICMP_FRAG_NEEDED) + (rest & 0xffffu) +
		       (rest >> 16);
		icmp->check = (__u16)~keel_csum_fold(sum);
	} else {
		const __u16 grow = sizeof(struct keel_ipv6) + sizeof(struct keel_icmp);
		struct keel_ipv6 *ip6 = (struct keel_ipv6 *)(p + l3_off);
		struct keel_icmp *icmp = (struct keel_icmp *)(p + l3_off + sizeof(struct keel_ipv6));
		const struct keel_ipv6 *orig = (const struct keel_ipv6 *)(p + l3_off + grow);
		__u16 plen = KEEL_HTONS((__u16)(sizeof(struct keel_icmp) + KEEL_ICMP_TOO_BIG_QUOTE));
		__u32 rest = KEEL_HTONL(mtu);
		__u32 vip[4];
		__u32 client[4];
		int i;

		if (keel_icmp_quote_sum((const __u8 *)orig, end, &sum))
			return -1;
		vip[0] = orig->daddr[0];
		vip[1] = orig->daddr[1];
		vip[2] = orig->daddr[2];
		vip[3] = orig->daddr[3];
		client[0] = orig->saddr[0];
		client[1] = orig->saddr[1];
		client[2] = orig->saddr[2];
		client[3] = orig->saddr[3];
		if (keel_icmp_move_l2(p, end, l3_off, grow, local_mac))
			return -1;
		if ((void *)(icmp + 1) > end)
			return -1;
		ip6->ver_tc_flow = KEEL_HTONL(0x60000000u);
		ip6->payload_len = plen;
		ip6->nexthdr = KEEL_IPPROTO_ICMPV6;
		ip6->hop_limit = KEEL_ICMP_TOO_BIG_TTL;
		ip6->saddr[0] = vip[0];
		ip6->saddr[1] = vip[1];
		ip6->saddr[2] = vip[2];
		ip6->saddr[3] = vip[3];
		ip6->daddr[0] = client[0];
		ip6->daddr[1] = client[1];
		ip6->daddr[2] = client[2];
		ip6->daddr[3] = client[3];
		icmp->type = KEEL_ICMPV6_PKT_TOOBIG;
		icmp->code = 0;
		icmp->rest = rest;
		/* RFC 4443 §2.3: the pseudo-header (RFC 8200 §8.1) of source,
		 * destination, upper-layer length (32 bits) and next header. */
#if defined(__clang__)
#pragma unroll
#endif
		for (i = 0; i < 4; i++)
			sum += (vip[i] & 0xffffu) + (vip[i] >> 16) + (client[i] & 0xffffu) + (client[i] >> 16);
		sum += plen + keel_mem_word16(0, KEEL_IPPROTO_ICMPV6) +
		       keel_mem_word16(KEEL_ICMPV6_PKT_TOOBIG, 0) + (rest & 0xffffu) + (rest >> 16);
		icmp->check = (__u16)~keel_csum_fold(sum);
	}
	return 0;
}

/* ---- keel-decap (bpf/decap.bpf.c) ----
 * The real-side decapsulator counts every packet under one of these, in a
 * per-CPU array the keel-decap CLI reads (`keel-decap status IFACE`). */
enum keel_decap_reason {
	KEEL_DECAP_R_PASS_NOT_TUNNEL = 0, /* not IPIP/IP6IP6/4in6/6in4: untouched */
	KEEL_DECAP_R_PASS_MALFORMED,      /* tunnel, but a header is cut or invalid */
	KEEL_DECAP_R_PASS_NOT_LOCAL,      /* inner destination is routed elsewhere */
	KEEL_DECAP_R_PASS_FIB_DISABLED,   /* fib lookup refused: forwarding off on lo */
	KEEL_DECAP_R_DECAP_V4,            /* outer IPv4 stripped (4in4, 6in4) */
	KEEL_DECAP_R_DECAP_V6,            /* outer IPv6 stripped (6in6, 4in6) */
	KEEL_DECAP_R_PASS_ADJUST_FAILED,  /* bpf_xdp_adjust_head refused */
	KEEL_DECAP_R_DROP_CE_NOT_ECT,     /* outer CE over a Not-ECT inner packet (RFC 6040 §4.2) */
	KEEL_DECAP_R_PASS_SOURCE,         /* tunnel from a source outside --allow-source: untouched */
	KEEL_DECAP_R_PASS_NOT_UNICAST,    /* inner destination multicast, broadcast, loopback, 0/8 or 240/4: untouched */
	KEEL_DECAP_R_PASS_NOT_VIP,        /* inner destination outside --vip: untouched */
	KEEL_DECAP_R_PASS_OUTER_NOT_UNICAST, /* tunnel sent to an Ethernet group address or a non-unicast outer IP: untouched */
	KEEL_DECAP_R_PASS_OUTER_NOT_LOCAL,   /* tunnel addressed to another host (this one routes it): untouched */
	KEEL_DECAP_R_MAX
};

/* `keel-decap attach --allow-source PREFIX` (load-time .rodata): when any is
 * given, only tunnel packets whose outer source is in one of them are
 * decapsulated. Address and mask as the packet holds them (network order,
 * an IPv4 one in word 0, the other words 0). */
#define KEEL_DECAP_MAX_ALLOW 16
/* `keel-decap attach --vip PREFIX`, the same way: when any is given, only
 * inner destinations in one of them are decapsulated. */
#define KEEL_DECAP_MAX_VIP 64
struct keel_decap_prefix {
	__u32 addr[4]; /* with the host bits cleared */
	__u32 mask[4];
	__u8 family;   /* KEEL_AF_INET / KEEL_AF_INET6 */
	__u8 pad[3];
};

#define KEEL_DECAP_REASON_NAMES                                                  \
	"pass_not_tunnel", "pass_malformed", "pass_not_local", "pass_fib_disabled", \
	"decap_v4", "decap_v6", "pass_adjust_failed", "drop_ce_not_ect", "pass_source", \
	"pass_not_unicast", "pass_not_vip", "pass_outer_not_unicast", "pass_outer_not_local"

#endif
