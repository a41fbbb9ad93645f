// SPDX-License-Identifier: Apache-2.0
/* Connection-table occupancy without walking the table.
 *
 * Hash maps (LRU included) keep a per-CPU element count since kernel 6.6;
 * the kfunc bpf_map_sum_elem_count() sums it. Kfuncs are only callable from
 * BPF, so this bpf_map iterator visits the (few) maps in the system and, for
 * the one whose id keeld set in target_map_id before load, writes the sum as
 * one native-endian u64 to the iterator's seq_file. Reading it is one
 * read() per scrape, O(maps + CPUs), never O(entries).
 *
 * The kernel structs are declared minimally with preserve_access_index, so
 * libbpf relocates the two field offsets from the running kernel's BTF (no
 * vmlinux.h needed). */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct seq_file;

struct bpf_map {
	__u32 id;
} __attribute__((preserve_access_index));

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
} __attribute__((preserve_access_index));

extern __s64 bpf_map_sum_elem_count(const struct bpf_map *map) __ksym;

const volatile __u32 target_map_id = 0;

SEC("iter/bpf_map")
int count_map_elems(struct bpf_iter__bpf_map *ctx)
{
	struct bpf_map *map = ctx->map;
	__s64 n;

	if (!map || map->id != target_map_id)
		return 0;
	n = bpf_map_sum_elem_count(map);
	bpf_seq_write(ctx->meta->seq, &n, sizeof(n));
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
