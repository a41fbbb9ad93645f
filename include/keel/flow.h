/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The flow key: the one identity of a flow that both data planes, the
 * control plane (keelctl lookup) and the reference model hash.
 *
 * Addresses are raw network-order bytes. An IPv4 address sits in the first
 * 4 bytes and the remaining 12 are zero, so one layout serves both families.
 * Ports are network order. Hashing reads the key as little-endian 32-bit
 * words (every supported target is little-endian; see hash.h).
 */
#ifndef KEEL_FLOW_H
#define KEEL_FLOW_H

#include "keel/types.h"

#define KEEL_AF_INET 4
#define KEEL_AF_INET6 6

#define KEEL_PROTO_TCP 6
#define KEEL_PROTO_UDP 17

struct keel_flow_key {
	__u32 src[4];   /* client address, network order bytes */
	__u32 dst[4];   /* VIP, network order bytes */
	__u16 sport;    /* network order */
	__u16 dport;    /* network order */
	__u8 proto;     /* KEEL_PROTO_* */
	__u8 family;    /* KEEL_AF_* */
	__u8 pad[2];    /* always zero: the key is hashed and compared as bytes */
};
KEEL_STATIC_ASSERT(sizeof(struct keel_flow_key) == 40, "flow key ABI");

#endif
