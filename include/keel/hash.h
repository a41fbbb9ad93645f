/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The flow hash and the real (backend) hashes for the Maglev permutation.
 *
 * MurmurHash3 x86_32 (Austin Appleby, public domain) over a fixed number of
 * 32-bit words. Fixed-length and loop-free after unrolling, so the verifier
 * accepts it and every target computes bit-identical results. Words are read
 * in host order; all supported targets (x86_64, arm64, BPF on them) are
 * little-endian, and tests/model/keel_model.py reads them the same way.
 *
 * Changing anything here changes which real every new flow maps to, and
 * every ring. Nothing refuses it at a restart: established flows keep their
 * reals through the connection tables (adopted on XDP, restored on DPDK),
 * as across any ring change; but while an ECMP group of balancers is
 * upgraded, balancers on either side of the change pick different reals for
 * the same new flow. tests/model/keel_model.py must change with it (the
 * model agreement tests fail otherwise); say so in the release notes.
 */
#ifndef KEEL_HASH_H
#define KEEL_HASH_H

#include "keel/flow.h"

#define KEEL_SEED_FLOW 0x6b65656cu      /* "keel" */
#define KEEL_SEED_OFFSET 0x4d61676cu    /* Maglev offset hash h1 */
#define KEEL_SEED_SKIP 0x536b6970u      /* Maglev skip hash h2 */

KEEL_INLINE __u32 keel_rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

KEEL_INLINE __u32 keel_hash_mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51u;
	k = keel_rotl32(k, 15);
	k *= 0x1b873593u;
	h ^= k;
	h = keel_rotl32(h, 13);
	return h * 5 + 0xe6546b64u;
}

KEEL_INLINE __u32 keel_hash_final(__u32 h, __u32 len_bytes)
{
	h ^= len_bytes;
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* Hash of an address (4 words) plus one extra word. */
KEEL_INLINE __u32 keel_hash_addr(const __u32 addr[4], __u32 extra, __u32 seed)
{
	__u32 h = seed;
	h = keel_hash_mix(h, addr[0]);
	h = keel_hash_mix(h, addr[1]);
	h = keel_hash_mix(h, addr[2]);
	h = keel_hash_mix(h, addr[3]);
	h = keel_hash_mix(h, extra);
	return keel_hash_final(h, 20);
}

/* Scheduler "maglev": the whole 5-tuple. */
KEEL_INLINE __u32 keel_flow_hash(const struct keel_flow_key *k)
{
	__u32 h = KEEL_SEED_FLOW;

	/* An IPv4 key's address words 1-3 are zero (flow.h): mixing a literal
	 * 0 folds to the rotate and the step (two instructions instead of
	 * eight); tests/unit check both branches agree. */
	if (k->family == KEEL_AF_INET) {
		h = keel_hash_mix(h, k->src[0]);
		h = keel_hash_mix(keel_hash_mix(keel_hash_mix(h, 0), 0), 0);
		h = keel_hash_mix(h, k->dst[0]);
		h = keel_hash_mix(keel_hash_mix(keel_hash_mix(h, 0), 0), 0);
		h = keel_hash_mix(h, (__u32)k->sport | ((__u32)k->dport << 16));
		h = keel_hash_mix(h, (__u32)k->proto | ((__u32)k->family << 8));
		return keel_hash_final(h, 40);
	}
	h = keel_hash_mix(h, k->src[0]);
	h = keel_hash_mix(h, k->src[1]);
	h = keel_hash_mix(h, k->src[2]);
	h = keel_hash_mix(h, k->src[3]);
	h = keel_hash_mix(h, k->dst[0]);
	h = keel_hash_mix(h, k->dst[1]);
	h = keel_hash_mix(h, k->dst[2]);
	h = keel_hash_mix(h, k->dst[3]);
	h = keel_hash_mix(h, (__u32)k->sport | ((__u32)k->dport << 16));
	h = keel_hash_mix(h, (__u32)k->proto | ((__u32)k->family << 8));
	return keel_hash_final(h, 40);
}

/* Scheduler "maglev-src": the client address only, so a client keeps its real
 * across connections and ports. */
KEEL_INLINE __u32 keel_src_hash(const struct keel_flow_key *k)
{
	return keel_hash_addr(k->src, k->family, KEEL_SEED_FLOW);
}

/* Maglev permutation inputs for a real (paper §3.4: offset = h1(b) mod M,
 * skip = h2(b) mod (M-1) + 1). They depend only on the real's address, never
 * on its position in a list, so the table is independent of listing order. */
KEEL_INLINE __u32 keel_real_offset_hash(const __u32 addr[4], __u8 family)
{
	return keel_hash_addr(addr, family, KEEL_SEED_OFFSET);
}

KEEL_INLINE __u32 keel_real_skip_hash(const __u32 addr[4], __u8 family)
{
	return keel_hash_addr(addr, family, KEEL_SEED_SKIP);
}

#endif
