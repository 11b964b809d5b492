/* Encapsulation towards a remote VTEP: XDP (cached route, redirect to the
 * uplink) and tc (bpf_skb_adjust_room, keeps GSO). */
#pragma once
#include "vx_header.h"

/* ---- XDP --------------------------------------------------------------- */

/* Makes the frame's metadata exactly len bytes: frames may arrive with some
 * (live-frame pages, some drivers), and it may not exceed 32 bytes. */
__inline_fn int xdp_set_meta(struct xdp_md *ctx, int len)
{
	return bpf_xdp_adjust_meta(ctx, (int)(ctx->data - ctx->data_meta) - len);
}

/* XDP_PASS with a note for the port's tc program (XN_META_*). */
__inline_fn int xdp_pass_to_tc(struct xdp_md *ctx, __u32 what)
{
	if (xdp_set_meta(ctx, sizeof(__u32)) == 0) {
		__u32 *m = (void *)(long)ctx->data_meta;
		if ((void *)(m + 1) <= (void *)(long)ctx->data)
			*m = what;
	}
	return XDP_PASS;
}

/* XDP: encapsulates a frame for f->remote and redirects it to the uplink.
 * Returns an XDP action or a negative drop reason. A next hop the kernel has
 * not resolved yet goes to tc, whose bpf_redirect_neigh resolves it. t:
 * xn_ticks(); ctl: xn_br_gen.ctl as the caller read it first. */
__inline_fn int vx_xdp_encap(struct xdp_md *ctx, struct br_frame *f, __u32 t_now, __u32 ctl)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 inner_len = (__u32)(end - data) - (f->tagged ? sizeof(struct vlan_hdr) : 0);
	__be16 sport = vx_sport(vx_flow_hash(data, end, f->tagged));

	struct bpf_fib_lookup fib;
	struct vx_tx t = {};
	int r = vx_tx_cached(ctx, f, inner_len + XN_VX_HLEN - ETH_HLEN, t_now, ctl, &fib, &t);
	if (r == VX_ROUTE_NEIGH)
		return xdp_pass_to_tc(ctx, XN_META_PUNT);
	if (r < 0)
		return r;

	if (f->tagged && xdp_vlan_set(ctx, 1, 0, f->vid)) /* the VNI stands for the VLAN */
		return -XN_DROP_VLAN_OP;
	if (bpf_xdp_adjust_head(ctx, -XN_VX_HLEN))
		return -XN_DROP_VX_ENCAP;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	struct vx_outer *o = data;
	if ((void *)(o + 1) > end)
		return -XN_DROP_VX_ENCAP;
	vx_fill_eth(o, &fib);
	vx_fill_ip(o, t.local, f->remote, inner_len);
	vx_fill_udp(o, sport, t.port, inner_len, t.vni);
	stats_tx(t.stats, inner_len + XN_VX_HLEN);
	return bpf_redirect(fib.ifindex, 0);
}

enum { VX_RX_NOT_OURS = 1 };

/* ---- tc ---------------------------------------------------------------- */

struct vx_encap {
	struct vx_outer o;
	struct ethhdr inner;
} __attribute__((packed, aligned(2)));

__inline_fn int vx_skb_is_ip(struct __sk_buff *skb)
{
	return skb->protocol == bpf_htons(ETH_P_IP) || skb->protocol == bpf_htons(ETH_P_IPV6);
}

/* tc: puts h in front of the (untagged) frame. IP frames grow with
 * bpf_skb_adjust_room and the tunnel flags, which record the inner headers so
 * GSO/TSO and checksum offload still work on the TCP inside the tunnel; it
 * takes only IP, so other frames (ARP, never GSO) get bpf_skb_change_head. */
__inline_fn int vx_skb_push(struct __sk_buff *skb, struct vx_encap *h)
{
	if (vx_skb_is_ip(skb)) {
		/* The room goes after the Ethernet header, which becomes the
		 * outer one: its copy goes in as the inner one. */
		if (bpf_skb_load_bytes(skb, 0, &h->inner, ETH_HLEN))
			return -XN_DROP_VX_ENCAP;
		if (bpf_skb_adjust_room(skb, XN_VX_HLEN, BPF_ADJ_ROOM_MAC,
					BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
					BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN)))
			return -XN_DROP_VX_ENCAP;
		if (bpf_skb_store_bytes(skb, 0, h, sizeof(*h), 0))
			return -XN_DROP_VX_ENCAP;
		return 0;
	}
	if (bpf_skb_change_head(skb, XN_VX_HLEN, 0) || bpf_skb_store_bytes(skb, 0, &h->o, sizeof(h->o), 0))
		return -XN_DROP_VX_ENCAP;
	return 0;
}

/* Outer IPv4 length for the FIB's MTU check: 0 for GSO, whose segments
 * adjust_room shrinks by the header it adds. */
__inline_fn __u32 vx_skb_fib_len(struct __sk_buff *skb)
{
	return skb->gso_size ? 0 : skb->len + XN_VX_HLEN - ETH_HLEN;
}

/* tc: encapsulates a frame for f->remote. Returns a tc action or a negative
 * drop reason. */
__inline_fn int vx_skb_encap(struct __sk_buff *skb, struct br_frame *f)
{
	__u32 vni = 0;
	struct xn_vtep *v = vx_vtep_of(f->bridge, f->vid, &vni);
	if (!v)
		return -XN_DROP_VX_VNI;
	if (skb_vlan_set(skb, f->tagged, 0, f->vid))
		return -XN_DROP_VLAN_OP;
	__u32 inner_len = skb->len;
	__be16 sport = vx_sport(bpf_get_hash_recalc(skb));
	struct bpf_fib_lookup fib;
	int route = vx_route(skb, v, f->remote, vx_skb_fib_len(skb), &fib);
	if (route < 0)
		return route;
	if (route == VX_ROUTE_NEIGH && !vx_skb_is_ip(skb))
		return -XN_DROP_VX_NO_NEIGH; /* bpf_redirect_neigh takes only IP skbs */

	struct vx_encap h;
	vx_fill_eth(&h.o, &fib); /* zero MACs when unresolved: bpf_redirect_neigh fills them */
	vx_fill_ip(&h.o, v->local, f->remote, inner_len);
	vx_fill_udp(&h.o, sport, v->port, inner_len, vni);
	int r = vx_skb_push(skb, &h);
	if (r)
		return r;
	count_tx(fib.ifindex, skb->len);
	if (route == VX_ROUTE_NEIGH) {
		struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = fib.ipv4_dst };
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	return bpf_redirect(fib.ifindex, 0);
}
