/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A rate limit both planes share, per CPU (XDP) or per worker (DPDK): `rate`
 * events a second with bursts of up to keel_rate_burst(rate), one twentieth
 * of a second's worth and at least 1. It limits ICMP too-big answers
 * (encap.h), the DPDK workers' ICMP peer lookups and connection-table
 * inserts (node_config.conntrack_insert_rate).
 * The bucket is one 64-bit "theoretical arrival time" (GCRA): *tat is when
 * the bucket would be full again, 0 at first. Each event moves it one
 * interval later; an event may go while *tat is at most burst - 1 intervals
 * ahead of now. keel_rate_allow returns 1 (and takes the event's place) or
 * 0; a rate of 0 allows nothing.
 *
 * Compiles as BPF C, C and C++ (KEEL_INLINE, types.h).
 */
#ifndef KEEL_RATE_H
#define KEEL_RATE_H

#include "keel/types.h"

KEEL_INLINE __u32 keel_rate_burst(__u32 rate)
{
	return rate / 20 > 1 ? rate / 20 : 1;
}

KEEL_INLINE int keel_rate_allow(__u64 *tat, __u64 now_ns, __u32 rate)
{
	__u64 interval;
	__u64 t;

	if (rate == 0)
		return 0;
	interval = 1000000000ull / rate;
	t = *tat > now_ns ? *tat : now_ns;
	if (t - now_ns > interval * (keel_rate_burst(rate) - 1))
		return 0;
	*tat = t + interval;
	return 1;
}

/* Whether a packet of a flow the connection table does not hold may write
 * it now: node_config.conntrack_insert_rate writes a second per CPU / worker,
 * every service together (0: always). Past it the packet is still
 * forwarded, by the ring, but its flow is not remembered and the caller
 * counts the packet (keel_ct_insert_limit.skipped): a flood of new flows
 * (spoofed SYNs, a scan) then cannot push the established flows out of the
 * table. That matters once the ring changes (until then an evicted flow is
 * picked again onto the same real); a flow not remembered likewise keeps
 * its real only while the ring does. A flow not written tries again with
 * its next packet, and re-picks (a real down or removed, an entry idle or
 * evicted) share the budget. Katran's flood mode defends the same way. */
KEEL_INLINE int keel_ct_insert_allow(__u64 *tat, __u64 now_ns, __u32 rate)
{
	return rate == 0 || keel_rate_allow(tat, now_ns, rate);
}

#endif
