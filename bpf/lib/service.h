/* SPDX-License-Identifier: Apache-2.0 */
/* VIP and service lookups. */
#ifndef KEEL_BPF_SERVICE_H
#define KEEL_BPF_SERVICE_H

#include "keel/parse.h"
#include "lib/maps.h"

/* The fast "not ours" test: one hash lookup on the destination address,
 * before any L4 parsing. */
static __always_inline int lb_is_vip(const struct keel_flow_key *key)
{
	struct keel_vip_key vk = {};

	vk.addr[0] = key->dst[0];
	vk.addr[1] = key->dst[1];
	vk.addr[2] = key->dst[2];
	vk.addr[3] = key->dst[3];
	vk.family = key->family;
	return bpf_map_lookup_elem(&vips, &vk) != NULL;
}

/* Exact (VIP, port, proto) first, then the VIP's any-port service. */
static __always_inline struct keel_service_value *lb_service_lookup(const struct keel_flow_key *key)
{
	struct keel_service_key sk = {};
	struct keel_service_value *svc;

	sk.vip[0] = key->dst[0];
	sk.vip[1] = key->dst[1];
	sk.vip[2] = key->dst[2];
	sk.vip[3] = key->dst[3];
	sk.port = key->dport;
	sk.proto = key->proto;
	sk.family = key->family;
	svc = bpf_map_lookup_elem(&services, &sk);
	if (svc)
		return svc;
	sk.port = 0;
	return bpf_map_lookup_elem(&services, &sk);
}

#endif
