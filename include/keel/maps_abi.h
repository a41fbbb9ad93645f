/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data-plane ABI: every table the control plane writes and the data
 * planes read. The XDP plane keeps these in BPF maps (bpf/lib/maps.h), the
 * DPDK plane in its own per-lcore/RCU tables; the structs are the same bytes.
 *
 * Identity rules (one mechanism for removal, health-down and id reuse):
 *  - A service has a small integer id (index into rings and service stats).
 *  - A backend is one (service, real) pair with a small integer id (index into
 *    the backends table and backend stats). Rings hold backend ids.
 *  - A backend carries a generation. The connection table stores the
 *    generation it saw. When a real is removed or goes down the control plane
 *    first swaps in a ring without it, then bumps its generation, so every
 *    connection-table entry that still points at it is stale and the flow is
 *    re-picked from the ring. Drain only removes the backend from the ring and
 *    keeps the generation, so established flows stay; so does health-down
 *    under established_on_down: keep (VALID | KEEL_BE_F_KEPT_DOWN).
 *  - A connection-table hit is valid only if backend.service_id matches the
 *    service the packet matched and backend.gen matches the entry's gen and
 *    the backend is KEEL_BE_F_VALID.
 *
 * Layout rules (the XDP maps outlive keeld, and a restarted keeld of another
 * build adopts them: src/dataplane/xdp/map_layout.h compares the members):
 *  - Padding and reserved bytes are named pad or reserved (leading
 *    underscores and a number allowed: __pad, reserved2) and always written
 *    zero, so a later build may turn them into a field whose 0 means what
 *    the builds before it did. (keel_vip_value.flags is a field: reserved
 *    in words only.)
 *  - A field whose meaning changes is renamed: a restart compares names,
 *    places and types, never meaning. A retired field is renamed too
 *    (unused_gen), never made padding: its bytes hold old values.
 */
#ifndef KEEL_MAPS_ABI_H
#define KEEL_MAPS_ABI_H

#include "keel/flow.h"

#define KEEL_MAX_SERVICES_DEFAULT 1024u
#define KEEL_MAX_BACKENDS_DEFAULT 16384u
#define KEEL_CT_SIZE_DEFAULT 1000000u
#define KEEL_INVALID_ID 0xffffffffu

/* vips: VIP address -> flags. Lets the fast path tell "not ours" with one
 * lookup before parsing L4, and classify malformed packets aimed at a VIP. */
struct keel_vip_key {
	__u32 addr[4];
	__u8 family;
	__u8 pad[3];
};
KEEL_STATIC_ASSERT(sizeof(struct keel_vip_key) == 20, "vip key ABI");

struct keel_vip_value {
	__u32 flags; /* reserved, 0 */
};

/* services: (VIP, port, proto) -> service. Port 0 matches every port; the
 * data plane looks up the exact port first, then port 0. */
struct keel_service_key {
	__u32 vip[4];
	__u16 port;   /* network order; 0 = any port */
	__u8 proto;   /* KEEL_PROTO_* */
	__u8 family;  /* KEEL_AF_* */
};
KEEL_STATIC_ASSERT(sizeof(struct keel_service_key) == 20, "service key ABI");

#define KEEL_SVC_F_SCHED_SRC (1u << 0)  /* maglev-src: hash the source only */
#define KEEL_SVC_F_FWD_L2DSR (1u << 1)  /* l2dsr; otherwise ipip */
#define KEEL_SVC_F_HASH_SRC_IP (1u << 2) /* ipip: outer source from flow hash */

struct keel_service_value {
	__u32 id;        /* index into rings / service stats */
	__u32 flags;     /* KEEL_SVC_F_* */
	__u32 reserved[2];
};
KEEL_STATIC_ASSERT(sizeof(struct keel_service_value) == 16, "service value ABI");

#define KEEL_BE_F_VALID (1u << 0)
/* Control plane only (data planes test VALID alone): VALID but health-down,
 * flows kept (established_on_down: keep); Registry::adopt reads it. */
#define KEEL_BE_F_KEPT_DOWN (1u << 1)
/* Control plane only: VALID, health-down, kept in the ring by fail-open
 * (every real of its service down); Registry::adopt reads it, so a
 * restarted keeld holds it again instead of taking it for up. */
#define KEEL_BE_F_HELD (1u << 2)

/* backends[id].service_id of an id the control plane released (its real
 * removed): no service's, so a restarted keeld adopting the pins does not
 * take the slot for a real of the service it had (a real added back then
 * read as adopted, not added). Written with VALID clear. */
#define KEEL_SERVICE_NONE 0xffffffffu

/* backends[id]: one real of one service. */
struct keel_backend {
	__u32 addr[4];     /* real address, network order bytes */
	__u32 service_id;  /* owner service */
	__u32 gen;         /* bumped when the real is removed or goes down */
	__u8 family;       /* KEEL_AF_*; selects IPIP/IP6IP6 outer header */
	__u8 flags;        /* KEEL_BE_F_* */
	__u8 mac[6];       /* l2dsr: the real's MAC */
};
KEEL_STATIC_ASSERT(sizeof(struct keel_backend) == 32, "backend ABI");

/* conntrack: flow key -> backend. */
struct keel_ct_value {
	__u32 backend_id;
	__u32 gen;
	__u64 last_seen_ns; /* refreshed at most once a second (cache-line economy) */
};
KEEL_STATIC_ASSERT(sizeof(struct keel_ct_value) == 16, "ct value ABI");

#define KEEL_NODE_F_HASH_SRC_V4 (1u << 0) /* derive outer v4 source from flow hash */
#define KEEL_NODE_F_HASH_SRC_V6 (1u << 1)

/* node_config[0]: per-balancer settings. Fields are only ever appended, and
 * a new field's 0 means what the builds before it did: a keeld adopting the
 * pins of an older build copies that build's shorter value into its own as
 * a prefix, the rest zero, before its program runs (the XDP plane's
 * adoption, docs/architecture.md "Restart and adoption"). */
struct keel_node_config {
	__u32 tunnel_src_v4;        /* network order */
	__u32 tunnel_src_v6[4];     /* network order bytes */
	__u8 next_hop_mac[6];       /* ipip: outer destination MAC */
	__u8 local_mac[6];          /* source MAC of everything we send */
	__u32 flags;                /* KEEL_NODE_F_* */
	__u32 hash_src_v4_prefix;   /* network order; hashed source = prefix | (hash & ~mask) */
	__u32 hash_src_v4_mask;     /* network order netmask of that prefix */
	__u32 udp_idle_timeout_s;   /* UDP conntrack entries older than this are re-picked */
	__u32 tcp_idle_timeout_s;   /* same for TCP */
	__u32 icmp_too_big_rate;    /* ICMP too-big answers a second per CPU / worker; 0: none (encap.h) */
	__u32 icmp_too_big_client_rate; /* the same per client (its slot); 0: no per-client limit (encap.h) */
	__u32 tunnel_mtu;           /* 0: none; else the path MTU toward the reals: an encapsulated
				     * packet over it (or the port's) gets ICMP too-big (encap.h) */
	__u32 conntrack_insert_rate; /* 0: no limit; else connection-table inserts a second per CPU /
				      * worker; past it a new flow is forwarded by the ring but not
				      * remembered (keel_ct_insert_allow, rate.h) */
	__u32 hash_src_v6_prefix[3]; /* network order: the first 96 bits of a hashed IPv6 outer
				      * source (the last 32 the flow hash, encap.h); all 0:
				      * tunnel_src_v6's */
};
KEEL_STATIC_ASSERT(sizeof(struct keel_node_config) == 80, "node config ABI");

/* Per CPU (XDP: ct_insert_limit[0]) / per worker (DPDK): the connection-table
 * insert limit's GCRA time and the inserts it turned away. */
struct keel_ct_insert_limit {
	__u64 tat;
	__u64 skipped;
};
KEEL_STATIC_ASSERT(sizeof(struct keel_ct_insert_limit) == 16, "ct insert limit ABI");

/*
 * Connection-table events, a count each per CPU (XDP: stats_conntrack) /
 * per worker (DPDK), summed by the control plane. Only appended: an index is
 * the key of its count in a pinned map.
 */
enum keel_ct_stat {
	/* A TCP packet without SYN or RST (keel_tcp_midflow) whose flow the table did
	 * not hold: no entry, or one idle past its timeout. Not one held for a
	 * real the flow may no longer use (that re-pick is keel's own choice).
	 * The flow began before this table saw it: another balancer or an ECMP
	 * change sent it here, the table evicted it (full, or past
	 * conntrack_insert_rate), or it idled out. docs/operations.md. */
	KEEL_CT_S_MIDFLOW_MISS = 0,
	KEEL_CT_S_MAX
};

/* Counters (per CPU / per lcore, summed by the control plane). */
struct keel_counter {
	__u64 packets;
	__u64 bytes;
};
KEEL_STATIC_ASSERT(sizeof(struct keel_counter) == 16, "counter ABI");

/*
 * Every packet is counted under exactly one reason. docs/architecture.md
 * documents each verdict; keep that table and keel_reason_names in sync.
 */
enum keel_reason {
	/* XDP_PASS: not ours, the kernel decides. */
	KEEL_R_PASS_NOT_IP = 0,       /* not IPv4/IPv6 (ARP, LLDP, ...) */
	KEEL_R_PASS_NOT_VIP,          /* destination is not a VIP */
	KEEL_R_PASS_NO_SERVICE,       /* VIP, but no service for that port/proto */
	KEEL_R_PASS_TRUNCATED,        /* too short to read the destination */
	KEEL_R_PASS_BAD_HEADER,       /* IPv4 IHL < 5 or version mismatch */
	/* Forwarded. */
	KEEL_R_TX_IPIP,               /* encapsulated toward a real */
	KEEL_R_TX_L2DSR,              /* MAC-rewritten toward a real */
	KEEL_R_TX_ICMP_ECHO,          /* echo reply from a VIP */
	/* Dropped: aimed at a VIP but unusable. */
	KEEL_R_DROP_TRUNCATED,        /* VIP, L3/L4 header cut short */
	KEEL_R_DROP_FRAGMENT,         /* VIP, IPv4 fragment or IPv6 fragment (not an atomic one) */
	KEEL_R_DROP_IPV6_EXT,         /* VIP, IPv6 extension header not supported */
	KEEL_R_DROP_ICMP,             /* VIP, ICMP neither echo request nor an error keel_parse_l4 steers */
	KEEL_R_DROP_L4_PROTO,         /* VIP, protocol other than TCP/UDP/ICMP */
	KEEL_R_DROP_NO_BACKEND,       /* service has no usable real */
	KEEL_R_DROP_ENCAP_FAILED,     /* could not grow the packet (adjust_head) */
	KEEL_R_DROP_TOO_BIG,          /* encapsulated packet would exceed the MTU (no DF, ICMP error, rate limits) */
	/* Appended, not grouped with the other TX reasons: a reason's index is
	 * the key of its counter in pinned maps and in keeld's adoption. */
	KEEL_R_TX_ICMP_TOO_BIG,       /* over the MTU: ICMP frag-needed / PTB sent back to the client */
	KEEL_R_DROP_L2_MULTICAST,     /* VIP, in a frame to an Ethernet broadcast or multicast address */
	KEEL_R_DROP_BAD_SOURCE,       /* VIP, from a source no one host has (0/8, loopback, multicast, ...) or the VIP */
	KEEL_R_DROP_SOURCE_ROUTE,     /* VIP, IPv4 loose/strict source route with hops left (the VIP is not the last hop) */
	KEEL_R_MAX
};

#define KEEL_REASON_NAMES                                                     \
	"pass_not_ip", "pass_not_vip", "pass_no_service", "pass_truncated",   \
	"pass_bad_header", "tx_ipip", "tx_l2dsr", "tx_icmp_echo",             \
	"drop_truncated", "drop_fragment", "drop_ipv6_ext", "drop_icmp",      \
	"drop_l4_proto", "drop_no_backend", "drop_encap_failed", "drop_too_big", \
	"tx_icmp_too_big", "drop_l2_multicast", "drop_bad_source", \
	"drop_source_route"

#endif
