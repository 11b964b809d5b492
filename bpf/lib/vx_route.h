/* Routing the outer packet (bpf_fib_lookup) and the per-CPU next-hop
 * cache the XDP encap takes it from. */
#pragma once
#include "vx_hash.h"

/* ---- routing and headers ----------------------------------------------- */

enum { VX_ROUTE_OK = 0, VX_ROUTE_NEIGH = 1 };

/* Routes the outer packet like the kernel's vxlan device does (output lookup
 * through the uplink, from the local address) and checks its length against
 * the route's MTU: tot_len is the outer IPv4 length, 0 for a GSO skb (whose
 * segments adjust_room shrinks to fit). Returns VX_ROUTE_OK (MACs and egress
 * ifindex set), VX_ROUTE_NEIGH (next hop unresolved; fib->ipv4_dst is the
 * next hop), or a negative drop reason. */
__inline_fn int vx_route(void *ctx, const struct xn_vtep *v, __be32 remote, __u32 tot_len, struct bpf_fib_lookup *fib)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET;
	fib->l4_protocol = IPPROTO_UDP;
	fib->tot_len = tot_len;
	fib->ipv4_src = v->local;
	fib->ipv4_dst = remote;
	fib->ifindex = v->ifindex;
	long r = bpf_fib_lookup(ctx, fib, sizeof(*fib), BPF_FIB_LOOKUP_OUTPUT);
	if (r == BPF_FIB_LKUP_RET_SUCCESS)
		return VX_ROUTE_OK;
	if (r == BPF_FIB_LKUP_RET_NO_NEIGH)
		return VX_ROUTE_NEIGH;
	if (r == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return -XN_DROP_VX_TOO_BIG;
	return -XN_DROP_VX_NO_ROUTE;
}

/* Encapsulations towards remote VTEPs, cached per CPU by the XDP encap,
 * which would otherwise pay a bpf_fib_lookup per frame (FIB walk, neighbour
 * lookup, MTU) and two hash lookups for the VTEP ((bridge, VLAN) -> VNI ->
 * VTEP). The rule that keeps a stale next hop from misforwarding: an entry is
 * used for at most XN_VX_NH_TTL_NS after the lookup that produced it, then
 * looked up again; a route or neighbour change reaches the datapath within
 * that time (the kernel itself keeps sending to a STALE neighbour for
 * seconds). A VTEP change reaches it at once: the control process writes
 * xn_br_gen.ctl after every change, and an entry holds only while ctl is the
 * one it was made under. Only complete answers are cached: no route, an
 * unresolved neighbour or a frame too big always go the slow way. The key is
 * (bridge, VLAN, remote), checked in the slot; per CPU, so a reader never
 * sees a half-written entry. Not pinned: each loaded object has its own, and
 * nothing outside the datapath reads it. */
#define XN_VX_NH_SLOTS 256
#define XN_VX_NH_TTL 2 /* ticks: at most 20 ms */

struct vx_nh {
	__u32 expires;  /* xn_ticks() */
	__be32 remote;
	__u32 bridge;
	__u16 vid;
	__be16 port;    /* the VTEP's: what encapsulation needs of it */
	__be32 local;
	__u32 vni;
	__u32 ctl;      /* xn_br_gen.ctl's low half when it was made */
	__u32 ifindex;  /* egress */
	__u32 tx_slot;  /* its counters slot (0: none), so counting costs no lookup */
	__u16 mtu;      /* largest outer IPv4 packet the route takes */
	__u8 dmac[ETH_ALEN];
	__u8 smac[ETH_ALEN];
	__u8 pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XN_VX_NH_SLOTS);
	__type(key, __u32);
	__type(value, struct vx_nh);
} xn_vx_nh SEC(".maps");

/* What an XDP encapsulation sends with: the VTEP's fields and the route. */
struct vx_tx {
	__be32 local;
	__u32 vni;
	__be16 port;
	struct xn_if_stats *stats; /* the egress interface's counters */
};

/* Finds what encapsulating a frame of (f->bridge, f->vid) for f->remote
 * takes, through the per-CPU cache: fib gets the MACs and egress ifindex
 * (ipv4_dst when unresolved). Returns VX_ROUTE_OK, VX_ROUTE_NEIGH or a
 * negative drop reason. t: the caller's xn_ticks(); ctl: xn_br_gen.ctl read
 * before anything was looked up. */
__inline_fn int vx_tx_cached(void *ctx, const struct br_frame *f, __u32 tot_len, __u32 t_now, __u32 ctl,
			     struct bpf_fib_lookup *fib, struct vx_tx *t)
{
	__u32 slot = xn_hash((__u64)f->bridge << 32 | f->remote, f->vid, 0, 0) % XN_VX_NH_SLOTS;
	struct vx_nh *nh = bpf_map_lookup_elem(&xn_vx_nh, &slot);
	if (nh && nh->remote == f->remote && nh->bridge == f->bridge && nh->vid == f->vid && nh->ctl == ctl &&
	    xn_before(t_now, nh->expires)) {
		cache_count(vx_nh, 1);
		if (tot_len > nh->mtu)
			return -XN_DROP_VX_TOO_BIG;
		__builtin_memcpy(fib->dmac, nh->dmac, ETH_ALEN);
		__builtin_memcpy(fib->smac, nh->smac, ETH_ALEN);
		fib->ifindex = nh->ifindex;
		t->local = nh->local;
		t->vni = nh->vni;
		t->port = nh->port;
		t->stats = slot_stats(nh->tx_slot);
		return VX_ROUTE_OK;
	}
	cache_count(vx_nh, 0);
	struct xn_vtep *v = vx_vtep_of(f->bridge, f->vid, &t->vni);
	if (!v)
		return -XN_DROP_VX_VNI;
	t->local = v->local;
	t->port = v->port;
	int r = vx_route(ctx, v, f->remote, tot_len, fib);
	if (r != VX_ROUTE_OK)
		return r;
	__u32 tx_slot = if_slot(fib->ifindex);
	t->stats = slot_stats(tx_slot);
	if (!nh)
		return r;
	/* The route's MTU: a lookup for the largest packet answers FRAG_NEEDED with it. */
	struct bpf_fib_lookup m;
	__u16 mtu = 0xffff;
	int rm = vx_route(ctx, v, f->remote, 0xffff, &m);
	if (rm == -XN_DROP_VX_TOO_BIG)
		mtu = m.mtu_result;
	else if (rm != VX_ROUTE_OK)
		return r;
	nh->remote = f->remote;
	nh->bridge = f->bridge;
	nh->vid = f->vid;
	nh->port = v->port;
	nh->local = v->local;
	nh->vni = t->vni;
	nh->ctl = ctl;
	nh->ifindex = fib->ifindex;
	nh->tx_slot = tx_slot;
	nh->mtu = mtu;
	__builtin_memcpy(nh->dmac, fib->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib->smac, ETH_ALEN);
	nh->expires = t_now + XN_VX_NH_TTL;
	return r;
}
