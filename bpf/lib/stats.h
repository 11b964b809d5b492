/* Per-interface counters and drop accounting. Helpers return 0 or a negative
 * enum drop_reason; the entry program counts a drop exactly once. */
#pragma once
#include "common.h"
#include "../include/stats.h"
#include "monitor.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XN_MAX_IFACES);
	__type(key, __u32); /* slot */
	__type(value, struct xn_if_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_if_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_MAX_IFACES);
	__type(key, __u32);   /* ifindex */
	__type(value, __u32); /* slot */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_if_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, XN_MAX_IFACES * 8);
	__type(key, struct xn_drop_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_drops SEC(".maps");

/* Hits and misses of the datapath's caches: one entry, per CPU, so a hit
 * adds to a line only its own CPU writes. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xn_cache_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_cache_stats SEC(".maps");

/* Counts one lookup of a cache (bridge, vx_nh or nat) that hit or missed.
 * A per-CPU array lookup with a constant key is inlined by the verifier: no
 * call. XN_CACHE_STATS_OFF compiles it out (bench/moncost.ts's baseline). */
#ifdef XN_CACHE_STATS_OFF
#define cache_count(cache, hit) do { } while (0)
#else
/* The key lives in .rodata, not on the stack: xn_br_tc's call chain is within
 * bytes of the verifier's 512-byte combined stack limit. */
static const __u32 xn_cache_key = 0;
#define cache_count(cache, hit)                                                    \
	do {                                                                       \
		struct xn_cache_stats *s_ = bpf_map_lookup_elem(&xn_cache_stats, &xn_cache_key); \
		if (s_) {                                                          \
			if (hit)                                                   \
				s_->cache##_hit++;                                 \
			else                                                       \
				s_->cache##_miss++;                                \
		}                                                                  \
	} while (0)
#endif

/* The counters in a slot (NULL for slot 0: the interface has none). */
__inline_fn struct xn_if_stats *slot_stats(__u32 slot)
{
	return slot ? bpf_map_lookup_elem(&xn_if_stats, &slot) : NULL;
}

/* An interface's slot (one hash lookup), 0 if xdpnet has not given it one. */
__inline_fn __u32 if_slot(__u32 ifindex)
{
	__u32 *slot = bpf_map_lookup_elem(&xn_if_slots, &ifindex);
	return slot ? *slot : 0;
}

/* An interface's counters through its slot, or NULL. Programs that know the
 * slot use slot_stats(). */
__inline_fn struct xn_if_stats *if_stats(__u32 ifindex)
{
	return slot_stats(if_slot(ifindex));
}

/* Per-CPU values: plain adds are safe. */
__inline_fn void stats_rx(struct xn_if_stats *s, __u32 len)
{
	if (s) {
		s->rx_packets++;
		s->rx_bytes += len;
	}
}

__inline_fn void stats_tx(struct xn_if_stats *s, __u32 len)
{
	if (s) {
		s->tx_packets++;
		s->tx_bytes += len;
	}
}

/* Counts a received frame; returns the interface's counters for the rest of the program. */
__inline_fn struct xn_if_stats *count_rx(__u32 ifindex, __u32 len)
{
	struct xn_if_stats *s = if_stats(ifindex);
	stats_rx(s, len);
	return s;
}

__inline_fn void count_tx(__u32 ifindex, __u32 len)
{
	stats_tx(if_stats(ifindex), len);
}

/* Counts n drops of frames (or copies) received on ifindex, for callers
 * without the frame (the kernel refused it after xdpnet handed it on); the
 * reason they were counted under. reason is negative (as helpers return it);
 * rx is that interface's counters, or NULL (copies: not in `dropped`). Drops
 * are the slow path: a hash insert on an interface's first drop of a reason
 * is fine. */
__inline_fn __u32 count_drops_only(__u32 ifindex, struct xn_if_stats *rx, int reason, __u32 n)
{
	struct xn_drop_key k = { .ifindex = ifindex, .reason = (__u32)(-reason) };
	if (k.reason >= XN_DROP_MAX || k.reason == 0)
		k.reason = XN_DROP_UNKNOWN;
	__u64 *c = bpf_map_lookup_elem(&xn_drops, &k);
	if (!c) {
		__u64 zero = 0;
		bpf_map_update_elem(&xn_drops, &k, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&xn_drops, &k);
	}
	if (c)
		*c += n;
	if (rx)
		rx->dropped += n;
	return k.reason;
}

__inline_fn __u32 count_drop_only(__u32 ifindex, struct xn_if_stats *rx, int reason)
{
	return count_drops_only(ifindex, rx, reason, 1);
}

/* Counts a drop of the frame in ctx (hook h) and shows it to a monitor. */
__inline_fn void count_drop(void *ctx, const enum hook h, __u32 ifindex, struct xn_if_stats *rx, int reason)
{
	__u32 why = count_drop_only(ifindex, rx, reason);
	mon_drop(ctx, h, ifindex, why);
}
