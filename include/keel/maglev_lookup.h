/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ring lookup. Data planes only ever compute ring[hash % M]; the table itself
 * is built in C++ (src/control/maglev). M is prime (65537 or 655373).
 *
 * Published ring layout (both planes): an array of M + 1 u32 words.
 *   word 0       = M
 *   word 1 + s   = backend id in slot s, for s in [0, M)
 * M travels inside the ring, so replacing a ring (even with a different M) is
 * one atomic pointer swap: a packet sees either the old table or the new one,
 * never a size from one and slots from the other.
 */
#ifndef KEEL_MAGLEV_LOOKUP_H
#define KEEL_MAGLEV_LOOKUP_H

#include "keel/hash.h"
#include "keel/maps_abi.h"

#define KEEL_RING_SIZE_DEFAULT 65537u
#define KEEL_RING_SIZE_LARGE 655373u

/* The hash a service's scheduler uses for a flow. */
KEEL_INLINE __u32 keel_sched_hash(const struct keel_flow_key *k, __u32 svc_flags)
{
	if (svc_flags & KEEL_SVC_F_SCHED_SRC)
		return keel_src_hash(k);
	return keel_flow_hash(k);
}

KEEL_INLINE __u32 keel_ring_slot(__u32 hash, __u32 ring_size)
{
	return hash % ring_size;
}

/* Index into the published array (word 0 holds M). */
KEEL_INLINE __u32 keel_ring_index(__u32 hash, __u32 ring_size)
{
	return 1 + keel_ring_slot(hash, ring_size);
}

#endif
