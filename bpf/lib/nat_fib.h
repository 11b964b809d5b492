/* Where a NAT packet goes: the kernel's FIB, asked as its forwarding would
 * ask, and each flow's cached answer at XDP. */
#pragma once
#include "nat_parse.h"
#include "ct.h"

enum fwd {
	FWD_NONE,  /* the kernel would not forward it (local, no route, forwarding off) */
	FWD_OK,    /* egress and MACs known: forward it here */
	FWD_NEIGH, /* egress known, next hop unresolved (tc can still send it) */
	FWD_BIG,   /* egress known, too big for it */
};

/* Where a packet with this tuple goes, as the kernel's forwarding would send
 * it. tot_len stays 0 so XDP's lookup skips its MTU check and still names the
 * egress interface for a big packet; the size is compared here against the
 * route's MTU. tc's lookup checks a plain skb against the device MTU but lets
 * every GSO skb pass, so its segments are checked here (the kernel's forward
 * path does the same). */
__inline_fn int nat_fib(struct nat_ctx *c, const enum hook h, struct bpf_fib_lookup *f, __be32 src, __be32 dst,
			__be16 sport, __be16 dport)
{
	*f = (struct bpf_fib_lookup){ .family = AF_INET, .l4_protocol = c->ip->protocol, .sport = sport,
				      .dport = dport, .ifindex = c->p.ifindex, .tos = c->ip->tos,
				      .ipv4_src = src, .ipv4_dst = dst };
	int fwd;
	switch (bpf_fib_lookup(c->ctx, f, sizeof(*f), 0)) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		if (h == HOOK_XDP && bpf_ntohs(c->ip->tot_len) > f->mtu_result)
			return FWD_BIG;
		fwd = FWD_OK;
		break;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		fwd = FWD_NEIGH;
		break;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return FWD_BIG;
	default:
		return FWD_NONE;
	}
	if (h == HOOK_TC && ((struct __sk_buff *)c->ctx)->gso_size) {
		__u32 mtu = 0;
		if (bpf_check_mtu(c->ctx, f->ifindex, &mtu, 0, BPF_MTU_CHK_SEGS))
			return FWD_BIG;
	}
	return fwd;
}

/* nat_fib() for a packet of entry e; XDP answers from e's cache while it is
 * fresh, so a route or neighbour change reaches an established flow within a
 * second. Only complete answers are cached. tc looks up every packet: its
 * lookup checks the skb (GSO segments, length) and skbs cost more anyway. */
__inline_fn int nat_fib_cached(struct nat_ctx *c, const enum hook h, struct bpf_fib_lookup *f, struct xn_ct_entry *e,
			       __u64 now)
{
	__u32 t = now >> 20;
	if (h == HOOK_XDP && e->fib_ifindex && t - e->fib_time < XN_CT_FIB_TTL) {
		f->ifindex = e->fib_ifindex;
		__builtin_memcpy(f->dmac, e->fib_dmac, ETH_ALEN);
		__builtin_memcpy(f->smac, e->fib_smac, ETH_ALEN);
		return bpf_ntohs(c->ip->tot_len) > e->fib_mtu ? FWD_BIG : FWD_OK;
	}
	int fwd = nat_fib(c, h, f, e->to_src, e->to_dst, e->to_sport, e->to_dport);
	if (h == HOOK_XDP && fwd == FWD_OK) {
		e->fib_ifindex = f->ifindex;
		e->fib_time = t;
		__builtin_memcpy(e->fib_dmac, f->dmac, ETH_ALEN);
		__builtin_memcpy(e->fib_smac, f->smac, ETH_ALEN);
		e->fib_mtu = f->mtu_result;
	}
	return fwd;
}
