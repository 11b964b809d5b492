/* Common includes and macros for every xdpnet BPF object. */
#pragma once

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define __inline_fn static __always_inline

#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

/* The hit paths' clock: jiffies, which the verifier inlines into one load
 * (a helper call such as bpf_ktime_get_coarse_ns costs ~15 ns on this CPU's
 * return-thunk mitigations, a quarter of the bridge's hit). A tick is 1 to
 * 10 ms (HZ 1000 to 100); durations become ticks at the longest, so nothing
 * cached lasts longer than meant (at HZ 1000, a tenth as long). */
#define XN_TICK_NS 10000000ULL

__inline_fn __u32 xn_ticks(void)
{
	return (__u32)bpf_jiffies64();
}

/* Whole ticks in ns, rounded down. */
__inline_fn __u32 xn_ticks_in(__u64 ns)
{
	return ns / XN_TICK_NS;
}

/* Whether a deadline set in ticks is still ahead of t (wraps safely). */
__inline_fn int xn_before(__u32 t, __u32 deadline)
{
	return (__s32)(deadline - t) > 0;
}

/* Hashing for the datapath's set-associative caches: each 64-bit word times
 * its own odd constant, summed (independent multiplies: a per-word mix step
 * chained eight multiplies, ~60 cycles on the hit path), then a
 * xorshift-multiply that carries every input bit into the high half, which is
 * returned. Unused words are 0 and fold away. */
__inline_fn __u32 xn_hash(__u64 a, __u64 b, __u64 c, __u64 d)
{
	__u64 h = a * 0x9e3779b97f4a7c15ULL + b * 0xc2b2ae3d27d4eb4fULL + c * 0x165667b19e3779f9ULL +
		  d * 0xd6e8feb86659fd93ULL;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	return h >> 32;
}
