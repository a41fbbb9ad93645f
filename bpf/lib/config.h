/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Load-time options: `const volatile` globals set by the loader between
 * skeleton open and load (skel->rodata->NAME). The verifier sees them as
 * constants and prunes the code they switch off.
 */
#ifndef KEEL_BPF_CONFIG_H
#define KEEL_BPF_CONFIG_H

#include <linux/types.h>

/* Stop an encapsulated packet that would exceed the MTU of the device it
 * leaves by (XDP_TX: the ingress device) instead of sending a frame the NIC or
 * the peer would discard silently: answer the client with ICMP frag-needed /
 * packet-too-big (TX_ICMP_TOO_BIG), or drop it (DROP_TOO_BIG). 0: no check. */
const volatile __u8 keel_check_mtu = 1;

/* Use the connection table. Off: every packet is picked from the ring (pure
 * Maglev); only for measuring the table's cost (perf/xdp). */
const volatile __u8 keel_use_conntrack = 1;

#endif
