// SPDX-License-Identifier: Apache-2.0
/* placeholder: replaced by its owner */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int balancer(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
