/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counters. Every packet is counted exactly once under a reason
 * (stats_reasons); forwarded packets are also counted under their service and
 * backend. Per-CPU maps, so a plain increment is race-free; the control plane
 * sums the CPUs. Bytes are the frame length as received (before encap).
 */
#ifndef KEEL_BPF_STATS_H
#define KEEL_BPF_STATS_H

#include "lib/maps.h"

static __always_inline void lb_count(void *map, __u32 idx, __u64 bytes)
{
	struct keel_counter *c = bpf_map_lookup_elem(map, &idx);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* Counts the packet under `reason` and returns the XDP action for it. */
static __always_inline int lb_verdict(int action, __u32 reason, __u64 bytes)
{
	lb_count(&stats_reasons, reason, bytes);
	return action;
}

#endif
