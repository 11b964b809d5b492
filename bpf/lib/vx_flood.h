/* Head-end replication at tc: one encapsulated copy of a flood per remote
 * VTEP of the VNI. The frame is counted once, as flooded (flood_local); a
 * copy refused here is counted by reason under the ingress interface but not
 * in its `dropped`, which counts frames (as xn_br_egress does for a local
 * copy), so one frame is never both flooded and dropped, nor dropped once per
 * remote. */
#pragma once
#include "vx_encap.h"

struct vx_flood_ctx {
	struct __sk_buff *skb;
	struct xn_vx_remotes *rm;
	struct xn_vtep *v;
	__u32 fib_len;
	__u32 inner_len;
	__u32 vni;
};

/* One remote VTEP of a flood: only the outer Ethernet and IPv4 headers
 * differ between copies. A bpf_loop callback, verified once. */
static long vx_flood_one(__u64 i, void *data)
{
	struct vx_flood_ctx *c = data;
	if (i >= c->rm->count || i >= XN_VX_REMOTES_MAX)
		return 1;
	__be32 remote = c->rm->addr[i];
	struct bpf_fib_lookup fib;
	int r = vx_route(c->skb, c->v, remote, c->fib_len, &fib);
	if (r) { /* a clone cannot wait for the neighbour: count it, go on */
		count_drop(c->skb, HOOK_TC, c->skb->ifindex, 0, r == VX_ROUTE_NEIGH ? -XN_DROP_VX_NO_NEIGH : r);
		return 0;
	}
	struct vx_outer h;
	vx_fill_eth(&h, &fib);
	vx_fill_ip(&h, c->v->local, remote, c->inner_len);
	if (bpf_skb_store_bytes(c->skb, 0, &h, ETH_HLEN + sizeof(struct iphdr), 0) == 0 &&
	    bpf_clone_redirect(c->skb, fib.ifindex, 0) == 0) {
		count_tx(fib.ifindex, c->skb->len);
		mon_trace(c->skb, HOOK_TC, XN_EV_ENCAP, c->skb->ifindex, fib.ifindex, c->vni);
	}
	return 0;
}

/* tc: after the local ports have their copies, one encapsulated copy per
 * remote VTEP of the frame's VNI (head-end replication). tagged: whether the
 * skb carries a tag now. The caller drops the original afterwards. */
__inline_fn void vx_skb_flood(struct __sk_buff *skb, struct br_frame *f, int tagged)
{
	__u32 vni = 0;
	struct xn_vtep *v = vx_vtep_of(f->bridge, f->vid, &vni);
	if (!v)
		return;
	struct xn_vx_remotes *rm = bpf_map_lookup_elem(&xn_vx_remotes, &vni);
	if (!rm || !rm->count)
		return;
	if (skb_vlan_set(skb, tagged, 0, f->vid)) {
		count_drop(skb, HOOK_TC, skb->ifindex, 0, -XN_DROP_VLAN_OP); /* every remote copy: counted once */
		return;
	}
	struct vx_flood_ctx c = {
		.skb = skb, .rm = rm, .v = v, .fib_len = vx_skb_fib_len(skb), .inner_len = skb->len, .vni = vni,
	};
	struct vx_encap h = {};
	vx_fill_udp(&h.o, vx_sport(bpf_get_hash_recalc(skb)), v->port, c.inner_len, vni);
	int r = vx_skb_push(skb, &h);
	if (r) {
		count_drop(skb, HOOK_TC, skb->ifindex, 0, r); /* every remote copy: counted once */
		return;
	}
	bpf_loop(XN_VX_REMOTES_MAX, vx_flood_one, &c, 0);
}
