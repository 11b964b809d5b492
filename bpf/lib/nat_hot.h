/* XDP's per-CPU hot copies of NAT flows in a steady state. */
#pragma once
#include <linux/in.h> /* ct.h uses IPPROTO_* and drop reasons without including them */
#include "common.h"
#include "../include/stats.h"
#include "ct.h"

/* XDP's per-CPU cache of flows in a steady state: one direction's translation
 * and next hop in one cache line. With many flows the conntrack LRU's bucket
 * and element miss the CPU caches on every packet (about a third of the time
 * at 10k flows); this array is inlined, four-way set-associative and 2 MB per
 * CPU. The slow path fills an entry from a fresh FIB answer in the flow's
 * entry, and it holds as long as that answer (about a second: then the slow
 * path refreshes last_seen and the next hop) and while xn_nat_gen is
 * unchanged (the control process deleted flows). A packet that would change
 * the flow's state (SYN, FIN, RST, a first reply) takes the slow path. An
 * entry the LRU evicts lives on here for that second at most. */
struct nat_hot {
	struct xn_ct_key key;
	__be32 to_src, to_dst;
	__be16 to_sport, to_dport;
	__u8 state, flags;
	__u16 mtu;
	__u32 ifindex;
	__u8 dmac[ETH_ALEN], smac[ETH_ALEN];
	__u32 until; /* xn_ticks(): when its FIB answer is due again */
	__u32 gen;   /* xn_nat_gen's low half when it was made */
	__u32 pad[2]; /* a cache line */
};

#define XN_NAT_HOT_SIZE 32768 /* entries a CPU, at most */

/* Entries a CPU (a power of two, XN_NAT_HOT_WAYS to XN_NAT_HOT_SIZE): the
 * loader sizes the copies from the conntrack capacity and sets this to match
 * (natHotPart in src/objects/memory.ts). Frozen, the verifier sees a constant. */
const volatile __u32 xn_nat_hot_part = XN_NAT_HOT_SIZE;

/* Each CPU owns xn_nat_hot_part consecutive entries of one plain array, not a
 * per-CPU array: a per-CPU lookup first loads the entry's pointer (a second
 * cache and TLB miss at 10k flows); BPF_F_MMAPABLE puts the values on a page
 * boundary, so every entry is one cache line and a set shares a page. It is
 * compiled with one CPU's largest part and the loader sizes it (perCpuCache in
 * src/objects/memory.ts); a CPU beyond the array (a test that loads the object
 * as compiled: every CPU but the first) caches nothing. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XN_NAT_HOT_SIZE);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct nat_hot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_nat_hot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64); /* written by the control process after deleting flows */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_nat_gen SEC(".maps");

__inline_fn __u32 nat_gen(void)
{
	__u32 zero = 0;
	__u64 *g = bpf_map_lookup_elem(&xn_nat_gen, &zero);
	return g ? (__u32)*g : 0;
}

#define XN_NAT_HOT_WAYS 4

/* The first way of k's set, in this CPU's part. */
__inline_fn __u32 nat_hot_set(const struct xn_ct_key *k)
{
	const __u32 *w = (const __u32 *)k; /* k may be 4-aligned on the stack */
	__u32 h = xn_hash(w[0] | (__u64)w[1] << 32, w[2] | (__u64)w[3] << 32, 0, 0);
	__u32 part = xn_nat_hot_part;
	return bpf_get_smp_processor_id() * part + (h & (part - XN_NAT_HOT_WAYS));
}

__inline_fn int nat_hot_is(const struct nat_hot *e, const struct xn_ct_key *k)
{
	const __u32 *a = (const __u32 *)&e->key, *b = (const __u32 *)k; /* k may be 4-aligned on the stack */
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

__inline_fn int nat_hot_holds(const struct nat_hot *e, __u32 gen, __u32 t)
{
	return e->gen == gen && xn_before(t, e->until);
}

/* The packet's cached flow, if it holds. */
__inline_fn struct nat_hot *nat_hot_get(const struct xn_ct_key *k, __u32 gen, __u32 t)
{
	__u32 first = nat_hot_set(k);
#pragma unroll
	for (__u32 w = 0; w < XN_NAT_HOT_WAYS; w++) {
		__u32 i = first + w;
		struct nat_hot *e = bpf_map_lookup_elem(&xn_nat_hot, &i);
		if (e && nat_hot_is(e, k))
			return nat_hot_holds(e, gen, t) ? e : NULL;
	}
	return NULL;
}

/* Caches flow entry e with its FIB answer, fresh in e (fib_time), for as long
 * as that answer is (now: coarse ns, t: xn_ticks()): in the way that holds k
 * or nothing live, else in a random one (four ways: at 10k flows, keys beyond
 * four to a set are rare; two ways missed 8%). */
__inline_fn void nat_hot_put(const struct xn_ct_key *k, const struct xn_ct_entry *e, __u32 gen, __u64 now, __u32 t)
{
	__s32 left = (__s32)(e->fib_time + XN_CT_FIB_TTL - (__u32)(now >> 20)); /* in 2^20 ns */
	if (left <= 0)
		return;
	__u32 first = nat_hot_set(k);
	struct nat_hot *h = NULL;
#pragma unroll
	for (__u32 w = 0; w < XN_NAT_HOT_WAYS; w++) {
		__u32 i = first + w;
		struct nat_hot *c = bpf_map_lookup_elem(&xn_nat_hot, &i);
		if (c && (nat_hot_is(c, k) || !nat_hot_holds(c, gen, t))) {
			h = c;
			break;
		}
	}
	if (!h) {
		__u32 i = first + (bpf_get_prandom_u32() & (XN_NAT_HOT_WAYS - 1));
		h = bpf_map_lookup_elem(&xn_nat_hot, &i);
	}
	if (!h)
		return;
	h->key = *k;
	h->to_src = e->to_src;
	h->to_dst = e->to_dst;
	h->to_sport = e->to_sport;
	h->to_dport = e->to_dport;
	h->state = e->state;
	h->flags = e->flags;
	h->mtu = e->fib_mtu;
	h->ifindex = e->fib_ifindex;
	__builtin_memcpy(h->dmac, e->fib_dmac, ETH_ALEN);
	__builtin_memcpy(h->smac, e->fib_smac, ETH_ALEN);
	h->until = t + xn_ticks_in((__u64)left << 20);
	h->gen = gen;
}
