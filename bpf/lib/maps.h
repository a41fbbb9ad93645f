/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every map of the balancer, defined once. The names are a contract with the
 * C++ owner (src/dataplane/xdp), which reaches them as skel->maps.NAME and
 * resizes them between open and load; the sizes here are only defaults.
 */
#ifndef KEEL_BPF_MAPS_H
#define KEEL_BPF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "keel/encap.h"
#include "keel/maglev_lookup.h"
#include "keel/maps_abi.h"

/* VIP address -> flags: the one lookup that tells "not ours" (fast path). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KEEL_MAX_SERVICES_DEFAULT);
	__type(key, struct keel_vip_key);
	__type(value, struct keel_vip_value);
} vips SEC(".maps");

/* (VIP, port, proto) -> service id and flags; port 0 = any port. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KEEL_MAX_SERVICES_DEFAULT);
	__type(key, struct keel_service_key);
	__type(value, struct keel_service_value);
} services SEC(".maps");

/* Template of one ring: word 0 = M, words 1..M = backend ids. BPF_F_INNER_MAP
 * lets inner arrays of different M (65537+1, 655373+1) share one outer map.
 * BPF_F_MMAPABLE lets keeld fill a new ring through mmap (~3x faster than a
 * batch update, which the kernel does element by element); the program reads
 * it as any array. The kernel checks an inner map's flags against these. */
struct keel_ring_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KEEL_RING_SIZE_DEFAULT + 1);
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
};

/* service id -> ring; replacing the inner map is the atomic ring swap. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, KEEL_MAX_SERVICES_DEFAULT);
	__type(key, __u32);
	__array(values, struct keel_ring_inner);
} rings SEC(".maps");

/* backend id -> real (address, owner service, generation, flags, MAC). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KEEL_MAX_BACKENDS_DEFAULT);
	__type(key, __u32);
	__type(value, struct keel_backend);
} backends SEC(".maps");

/* flow -> backend and generation; LRU so a flood of new flows evicts the
 * oldest instead of failing (docs/performance-xdp.md: flavour choice). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KEEL_CT_SIZE_DEFAULT);
	__type(key, struct keel_flow_key);
	__type(value, struct keel_ct_value);
} conntrack SEC(".maps");

/* [0]: tunnel sources, MACs, idle timeouts. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct keel_node_config);
} node_config SEC(".maps");

/* [0]: this CPU's ICMP too-big rate limit (keel_rate_allow's time).
 * State that may start empty: a keeld adopting pins made before it existed
 * creates and pins it (XdpDataplane::adoptPinnedMaps). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} icmp_limit SEC(".maps");

/* [keel_icmp_client_slot()]: this CPU's per-client ICMP too-big rate limit
 * times (keel_icmp_too_big_allow's client times). State that may start
 * empty, as icmp_limit. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KEEL_ICMP_CLIENT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} icmp_client_limit SEC(".maps");

/* [0]: this CPU's connection-table insert limit (keel_ct_insert_allow):
 * its time and the inserts it turned away. State that may start empty, as
 * icmp_limit. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct keel_ct_insert_limit);
} ct_insert_limit SEC(".maps");

/* [enum keel_ct_stat]: this CPU's count of each connection-table event.
 * Added after the first pinned builds: a keeld adopting pins made before it
 * creates and pins it; one pinned with fewer events has its counts carried
 * over (XdpDataplane::adoptPinnedMaps). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KEEL_CT_S_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats_conntrack SEC(".maps");

/* Forwarded packets/bytes per service id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KEEL_MAX_SERVICES_DEFAULT);
	__type(key, __u32);
	__type(value, struct keel_counter);
} stats_services SEC(".maps");

/* Forwarded packets/bytes per backend id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KEEL_MAX_BACKENDS_DEFAULT);
	__type(key, __u32);
	__type(value, struct keel_counter);
} stats_backends SEC(".maps");

/* Every packet, once, under its enum keel_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KEEL_R_MAX);
	__type(key, __u32);
	__type(value, struct keel_counter);
} stats_reasons SEC(".maps");

#endif
