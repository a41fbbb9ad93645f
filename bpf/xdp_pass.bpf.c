// SPDX-License-Identifier: Apache-2.0
/* A trivial XDP_PASS: the floor in perf/ benchmarks, and the program labs
 * attach to the router-side veth peer so XDP_TX frames are delivered. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
