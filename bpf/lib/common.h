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

/* Hashing for the datapath's set-associative caches: a multiply-xorshift
 * step per 32-bit word (MACs and ports often differ only in a few bits), then
 * murmur3's finalizer. */
__inline_fn __u32 xn_mix(__u32 h, __u32 v)
{
	h = (h ^ v) * 0x9e3779b1U;
	return h ^ (h >> 15);
}

__inline_fn __u32 xn_fmix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bU;
	h ^= h >> 13;
	h *= 0xc2b2ae35U;
	return h ^ (h >> 16);
}
