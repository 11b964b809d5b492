/* Head-end replication at tc: one encapsulated copy of a flood per remote
 * VTEP of the VNI. The frame is counted once, as flooded (flood_local); a
 * copy refused here is counted by reason under the ingress interface but not
 * in its `dropped`, which counts frames (as xn_br_egress does for a local
 * copy), so one frame is never both flooded and dropped, nor dropped once per
 * remote. */
#pragma once
#include "vx_encap.h"
#include "loop.h"

/* What every copy of a flood shares but the skb and the maps' values. */
struct vx_flood_arg {
	__u32 fib_len;
	__u32 inner_len;
	__u32 vni;
	__be32 remote; /* this copy's */
};

struct vx_flood_ctx {
	struct __sk_buff *skb;
	struct xn_vx_remotes *rm;
	struct xn_vtep *v;
	struct vx_flood_arg a;
};

/* One copy of a flood, to a->remote: only the outer Ethernet and IPv4
 * headers differ between copies. A global function under XN_COMPAT (loop.h):
 * checked once, not once per remote of the loop. */
__loop_fn int vx_flood_to(struct __sk_buff *skb, const struct xn_vtep *v, const struct vx_flood_arg *a)
{
	if (!v || !a)
		return 0;
	/* The outer Ethernet and IPv4 headers are written over the route's
	 * answer once its egress is kept: they end before its MACs (checked
	 * below), which they take. A second buffer put this frame past the stack
	 * that kernels before 6.8 leave it (they count frames in steps of 32). */
	union {
		struct bpf_fib_lookup fib;
		struct vx_outer h;
	} u;
	_Static_assert(ETH_HLEN + sizeof(struct iphdr) <= __builtin_offsetof(struct bpf_fib_lookup, smac),
		       "the outer headers must end before the MACs they are made from");
	int r = vx_route(skb, v, a->remote, a->fib_len, &u.fib);
	if (r) { /* a clone cannot wait for the neighbour: count it, go on */
		count_drop(skb, HOOK_TC, skb->ifindex, 0, r == VX_ROUTE_NEIGH ? -XN_DROP_VX_NO_NEIGH : r);
		return 0;
	}
	__u32 out = u.fib.ifindex;
	vx_fill_eth(&u.h, &u.fib);
	vx_fill_ip(&u.h, v->local, a->remote, a->inner_len);
	if (bpf_skb_store_bytes(skb, 0, &u.h, ETH_HLEN + sizeof(struct iphdr), 0)) {
		count_drop(skb, HOOK_TC, skb->ifindex, 0, -XN_DROP_VX_ENCAP);
		return 0;
	}
	if (bpf_clone_redirect(skb, out, 0)) { /* the uplink gone, down, without carrier: this copy is lost */
		count_drop(skb, HOOK_TC, skb->ifindex, 0, -XN_DROP_COPY_REFUSED);
		return 0;
	}
	count_tx(out, skb->len);
	mon_trace(skb, HOOK_TC, XN_EV_ENCAP, skb->ifindex, out, a->vni);
	return 0;
}

/* Remote VTEP i of a flood. An xn_loop callback (loop.h). */
static long vx_flood_one(__u64 i, void *data)
{
	struct vx_flood_ctx *c = data;
	if (i >= c->rm->count || i >= XN_VX_REMOTES_MAX)
		return 1;
	c->a.remote = c->rm->addr[i];
	vx_flood_to(c->skb, c->v, &c->a);
	return 0;
}

/* tc: after the local ports have their copies, one encapsulated copy per
 * remote VTEP of the frame's VNI (head-end replication). tagged: whether the
 * skb carries a tag now. The caller drops the original afterwards. Returns 0
 * (an int: a global function under XN_COMPAT, loop.h). */
__inline_fn int vx_skb_flood(struct __sk_buff *skb, struct br_frame *f, int tagged)
{
	if (!f)
		return 0;
	__u32 vni = 0;
	struct xn_vtep *v = vx_vtep_of(f->bridge, f->vid, &vni);
	if (!v)
		return 0;
	struct xn_vx_remotes *rm = bpf_map_lookup_elem(&xn_vx_remotes, &vni);
	if (!rm || !rm->count)
		return 0;
	if (skb_vlan_set(skb, tagged, 0, f->vid)) {
		count_drop(skb, HOOK_TC, skb->ifindex, 0, -XN_DROP_VLAN_OP); /* every remote copy: counted once */
		return 0;
	}
	struct vx_flood_ctx c = {
		.skb = skb, .rm = rm, .v = v,
		.a = { .fib_len = vx_skb_fib_len(skb), .inner_len = skb->len, .vni = vni },
	};
	struct vx_encap h = {};
	vx_fill_udp(&h.o, vx_sport(bpf_get_hash_recalc(skb)), v->port, c.a.inner_len, vni);
	int r = vx_skb_push(skb, &h);
	if (r) {
		count_drop(skb, HOOK_TC, skb->ifindex, 0, r); /* every remote copy: counted once */
		return 0;
	}
	xn_loop(XN_VX_REMOTES_MAX, XN_VX_REMOTES_MAX, vx_flood_one, &c);
	return 0;
}
