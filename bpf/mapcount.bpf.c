/* How many entries a big table holds, counted in the kernel so that a metrics
 * scrape copies no entry to user space (src/objects/mapcount.ts runs these).
 * Each program writes its answer to the iterator's seq_file; user space reads
 * it from the iterator's fd and zeroes the .bss state before each read.
 *
 * xn_cnt_sum   (Linux 6.6+): the hash map's own per-CPU element count
 *              (kept by the kernel across inserts, deletes and LRU evictions),
 *              read with bpf_map_sum_elem_count(): O(CPUs), no walk.
 * xn_cnt_walk  (older kernels): visits every element of the map in the
 *              kernel and counts them. */
#include "lib/common.h"

/* Just the fields read (CO-RE relocates them against the kernel's BTF). */
struct seq_file;
struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));
struct bpf_map {
	__u32 id;
} __attribute__((preserve_access_index));
struct bpf_iter__bpf_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
} __attribute__((preserve_access_index));
struct bpf_iter__bpf_map_elem {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
	void *key;
	void *value;
} __attribute__((preserve_access_index));

/* Weak: an object holding it still loads its other programs where the kernel lacks it. */
extern __s64 bpf_map_sum_elem_count(const struct bpf_map *map) __ksym __weak;

/* Per read: set (zeroed) by user space before the iterator runs. */
__u32 xn_cnt_target;  /* xn_cnt_sum: the id of the map to count */
__u64 xn_cnt_n;       /* xn_cnt_walk: elements seen so far */

SEC("iter/bpf_map")
int xn_cnt_sum(struct bpf_iter__bpf_map *ctx)
{
	struct bpf_map *map = ctx->map;
	if (!map || map->id != xn_cnt_target)
		return 0;
	__s64 n = bpf_map_sum_elem_count(map);
	bpf_seq_write(ctx->meta->seq, &n, sizeof(n));
	return 0;
}

/* Called once per element, then once with no element when the walk ends. */
SEC("iter/bpf_map_elem")
int xn_cnt_walk(struct bpf_iter__bpf_map_elem *ctx)
{
	if (ctx->key) {
		xn_cnt_n++;
		return 0;
	}
	bpf_seq_write(ctx->meta->seq, &xn_cnt_n, sizeof(xn_cnt_n));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
