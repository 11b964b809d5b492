/* Events for `xdpnet monitor`: drops (with their reason) and traces of what
 * the datapath did, through one BPF ring buffer per instance. Nothing is
 * emitted unless a monitor has set xn_mon; the test for that is one load and
 * a branch, and the work behind it is out of line. A full ring buffer loses
 * events (counted in xn_mon_lost), never stalls a packet. */
#pragma once
#include "ctx.h"
#include "../include/monitor.h"

_Static_assert(HOOK_XDP == XN_EV_HOOK_XDP && HOOK_TC == XN_EV_HOOK_TC, "events carry enum hook as it is");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_mon_lost SEC(".maps");

/* The loader pins this section's map as "xn_mon" (src/sys/libbpf.ts). */
volatile struct xn_mon_cfg xn_mon SEC(".data.xn_mon") = {};

__inline_fn struct xn_event *mon_reserve(__u16 type, __u8 hook, __u32 in, __u32 out, __u32 len, __u32 info)
{
	struct xn_event *e = bpf_ringbuf_reserve(&xn_events, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&xn_mon_lost, &zero);
		if (lost)
			*lost += 1;
		return NULL;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->ifindex = in;
	e->out_ifindex = out;
	e->len = len;
	e->info = info;
	e->type = type;
	e->hook = hook;
	e->cap_len = 0;
	e->vlan_tci = 0;
	e->vlan_present = 0;
	return e;
}

/* Bytes of the frame to copy: at most XN_EV_CAP, in a form the verifier
 * bounds (the barrier keeps clang from folding the clamp away). */
__inline_fn __u32 mon_cap(__u32 len)
{
	__u32 n = len < XN_EV_CAP ? len : XN_EV_CAP;
	asm volatile("%0 &= 0xff" : "+r"(n));
	if (n > XN_EV_CAP)
		n = XN_EV_CAP;
	return n;
}

/* Copies the frame's head into e. Functions of their own (their signatures
 * also put struct xn_event in the object's BTF for the layout test). */
/* The size passed is ((n - 1) & 0x7f) + 1: in [1, XN_EV_CAP] by arithmetic. A
 * plain `n &&` test before the call is not enough for Debian 12's 6.1 verifier,
 * which then still saw a size of 0 ("invalid access to memory ... size=0") and
 * refused the whole object. */
_Static_assert((XN_EV_CAP & (XN_EV_CAP - 1)) == 0, "XN_EV_CAP must be a power of two");
#ifdef XN_COMPAT
/* No bpf_xdp_load_bytes before 5.18: direct packet access, a byte at a time
 * (each one bounds-checked, a loop the verifier walks XN_EV_CAP times). A
 * frame is one buffer there (no XDP multi-buffer before 5.18). Inlined: before
 * 6.8 each frame of a call chain counts at least 32 bytes against the 512. */
__inline_fn int mon_copy_xdp(struct xdp_md *ctx, struct xn_event *e)
{
	__u8 *p = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u32 i;
	for (i = 0; i < XN_EV_CAP; i++) {
		if (p + i + 1 > end)
			break;
		e->data[i] = p[i];
	}
	e->cap_len = i;
	return 0;
}

/* data_end - data, subtracted in asm: computed in C, clang may keep (and
 * spill) the two pointers in 32 bits, which the verifier refuses. */
__inline_fn __u32 mon_xdp_len(struct xdp_md *ctx)
{
	__u64 d = ctx->data, end = ctx->data_end;
	asm volatile("%0 -= %1" : "+r"(end) : "r"(d));
	return end;
}
#else
static __noinline int mon_copy_xdp(struct xdp_md *ctx, struct xn_event *e)
{
	__u32 n = mon_cap(e->len);
	if (!n)
		return 0;
	n = ((n - 1) & (XN_EV_CAP - 1)) + 1;
	if (bpf_xdp_load_bytes(ctx, 0, e->data, n) == 0)
		e->cap_len = n;
	return 0;
}

/* A helper, not data_end - data: clang spills such a difference's pointers in
 * 32 bits, which the verifier refuses. */
__inline_fn __u32 mon_xdp_len(struct xdp_md *ctx)
{
	return bpf_xdp_get_buff_len(ctx);
}
#endif

#ifdef XN_COMPAT
__inline_fn int mon_copy_skb(struct __sk_buff *skb, struct xn_event *e) /* inlined: see mon_copy_xdp */
#else
static __noinline int mon_copy_skb(struct __sk_buff *skb, struct xn_event *e)
#endif
{
	__u32 n = mon_cap(e->len);
	if (!n)
		return 0;
	n = ((n - 1) & (XN_EV_CAP - 1)) + 1;
	if (bpf_skb_load_bytes(skb, 0, e->data, n) == 0)
		e->cap_len = n;
	return 0;
}

static __noinline int mon_emit_xdp(struct xdp_md *ctx, __u32 type, __u32 in, __u32 out, __u32 info)
{
	struct xn_event *e = mon_reserve(type, HOOK_XDP, in, out, mon_xdp_len(ctx), info);
	if (!e)
		return 0;
	mon_copy_xdp(ctx, e);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

static __noinline int mon_emit_skb(struct __sk_buff *skb, __u32 type, __u32 in, __u32 out, __u32 info)
{
	struct xn_event *e = mon_reserve(type, HOOK_TC, in, out, skb->len, info);
	if (!e)
		return 0;
	e->vlan_tci = skb->vlan_tci;
	e->vlan_present = skb->vlan_present;
	mon_copy_skb(skb, e);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

__inline_fn void mon_emit(void *ctx, const enum hook h, __u32 type, __u32 in, __u32 out, __u32 info)
{
	if (h == HOOK_XDP)
		mon_emit_xdp(ctx, type, in, out, info);
	else
		mon_emit_skb(ctx, type, in, out, info);
}

/* XN_MON_OFF compiles the event sites out: bench/moncost.ts's baseline only. */
#ifdef XN_MON_OFF
#define mon_wants(bit) 0
#else
#define mon_wants(bit) (xn_mon.flags & (bit))
#endif

/* A drop event (the frame as it is now), if a monitor wants drops. */
__inline_fn void mon_drop(void *ctx, const enum hook h, __u32 ifindex, __u32 reason)
{
	if (unlikely(mon_wants(XN_MON_DROPS)))
		mon_emit(ctx, h, XN_EV_DROP, ifindex, 0, reason);
}

/* A trace event, if a monitor wants traces; sampled as it asked. */
__inline_fn void mon_trace(void *ctx, const enum hook h, __u32 type, __u32 in, __u32 out, __u32 info)
{
	if (likely(!mon_wants(XN_MON_TRACE)))
		return;
	__u32 s = xn_mon.sample;
	if (s && (bpf_get_prandom_u32() & s))
		return;
	mon_emit(ctx, h, type, in, out, info);
}
