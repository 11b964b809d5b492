/* Decapsulation on the uplink: parsing and checking the outer headers,
 * the switching half both hooks share, and stripping at XDP or tc. */
#pragma once
#include "ipv4.h"
#include "vx_encap.h"

struct vx_rx {
	struct xn_vtep *vtep;
	struct ethhdr *inner; /* valid until the frame changes; NULL if truncated */
	__u32 vni;
	__be32 vni_raw;    /* the header's word: VNI << 8 */
	__be32 saddr;      /* the sender VTEP */
	__be32 daddr;
	__be16 dport;
	__u16 pad;
	int bad;           /* 0, or why this is not usable VXLAN (a drop reason) */
	__u32 outer_len;   /* bytes in front of the inner frame */
	__u32 inner_len;
};

/* The headers of a frame received on the uplink, up to the inner Ethernet
 * header; no lookups. Returns 0 (rx filled; rx->bad says whether the VXLAN
 * part is usable), VX_RX_NOT_OURS, or a negative drop reason. IPv4 (checked
 * by ipv4_pull, as NAT checks it: options included, before the protocol is
 * looked at) and UDP that the kernel would drop as truncated or malformed are
 * dropped here too; fragments and other protocols go to the stack untouched. */
__inline_fn int vx_rx_headers(struct pkt *p, struct vx_rx *rx)
{
	struct cursor c = { .pos = p->data, .end = p->data_end };
	struct ethhdr *eth = cursor_pull(&c, ETH_HLEN);
	if (!eth)
		return -XN_DROP_TRUNC_ETH;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return VX_RX_NOT_OURS;
	struct iphdr *ip = c.pos;
	int r = ipv4_pull(&c, p->len - ETH_HLEN);
	if (r)
		return r;
	if (ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return VX_RX_NOT_OURS; /* fragments are the stack's to reassemble */
	__u32 hlen = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);
	struct udphdr *udp = cursor_pull(&c, sizeof(*udp));
	if (!udp || tot < hlen + sizeof(*udp))
		return -XN_DROP_TRUNC_UDP;
	__u32 ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(*udp) || ulen > tot - hlen)
		return -XN_DROP_TRUNC_UDP;
	rx->saddr = ip->saddr;
	rx->daddr = ip->daddr;
	rx->dport = udp->dest;
	struct vx_hdr *vx = cursor_pull(&c, sizeof(*vx));
	if (!vx || ulen < sizeof(*udp) + sizeof(*vx)) {
		rx->bad = -XN_DROP_VX_TRUNC;
		return 0;
	}
	if (vx->flags != VX_FLAG_I || (vx->vni & bpf_htonl(0xff))) {
		rx->bad = -XN_DROP_VX_FLAGS;
		return 0;
	}
	rx->vni_raw = vx->vni;
	rx->vni = bpf_ntohl(vx->vni) >> 8;
	if (ulen >= sizeof(*udp) + sizeof(*vx) + ETH_HLEN)
		rx->inner = cursor_pull(&c, ETH_HLEN);
	rx->outer_len = ETH_HLEN + hlen + sizeof(*udp) + sizeof(*vx);
	rx->inner_len = ulen - sizeof(*udp) - sizeof(*vx);
	return 0;
}

/* Whether parsed headers are VXLAN for one of our VTEPs: 0 (rx->vtep set),
 * VX_RX_NOT_OURS (UDP that is not to a VTEP's address and port goes to the
 * stack untouched) or a negative drop reason. */
__inline_fn int vx_rx_vtep(struct vx_rx *rx)
{
	int bad = rx->bad;
	if (!bad) {
		/* One lookup by VNI, then its port and address must match. */
		bad = -XN_DROP_VX_VNI;
		rx->vtep = bpf_map_lookup_elem(&xn_vteps, &rx->vni);
		if (rx->vtep && rx->vtep->port == rx->dport && rx->vtep->local == rx->daddr)
			bad = 0;
	}
	if (bad) {
		/* Broken VXLAN to a VTEP of ours is dropped; anything else is not ours. */
		struct xn_vx_port_key pk = { .local = rx->daddr, .port = rx->dport };
		return bpf_map_lookup_elem(&xn_vx_ports, &pk) ? bad : VX_RX_NOT_OURS;
	}
	return rx->inner ? 0 : -XN_DROP_VX_TRUNC;
}

__inline_fn int vx_rx_parse(struct pkt *p, struct vx_rx *rx)
{
	int r = vx_rx_headers(p, rx);
	return r ? r : vx_rx_vtep(rx);
}

/* The cache key of a parsed frame: its inner MACs behind the outer fields
 * that chose the VTEP; -1 if it cannot have a cached decision (not usable
 * VXLAN, or an inner tag, which the slow path drops). */
__inline_fn int vx_rx_key(const struct pkt *p, const struct vx_rx *rx, struct br_key *k)
{
	if (rx->bad || !rx->inner || br_key_of_eth(p, rx->inner, k) || k->tci ||
	    rx->inner->h_proto == bpf_htons(ETH_P_8021AD))
		return -1;
	k->w[2] = (__u64)rx->dport << 16 | (__u64)rx->saddr << 32; /* tci is 0 */
	k->w[3] = rx->daddr | (__u64)rx->vni_raw << 32;
	return 0;
}

/* The switching half of decap, for both hooks: checks the sender and the
 * inner frame, learns, and finds the local port. Returns 0 with f->out the
 * port (0: flood to local ports only) and its expiry, or a negative drop
 * reason. */
__inline_fn int vx_rx_switch(struct vx_rx *rx, __u64 now, struct xn_if_stats *st, struct br_frame *f)
{
	struct xn_vtep *v = rx->vtep;
	struct ethhdr *in = rx->inner;
	if (!v || !in)
		return -XN_DROP_UNKNOWN;
	if (!(v->flags & XN_VTEP_LEARNING)) {
		struct xn_vx_peer_key pk = { .vni = rx->vni, .addr = rx->saddr };
		if (!bpf_map_lookup_elem(&xn_vx_peers, &pk))
			return -XN_DROP_VX_VTEP;
	}
	if (in->h_proto == bpf_htons(ETH_P_8021Q) || in->h_proto == bpf_htons(ETH_P_8021AD))
		return -XN_DROP_VLAN_INGRESS; /* the VNI carries one VLAN, untagged */
	if (mac_is_multicast(in->h_source) || mac_is_zero(in->h_source))
		return -XN_DROP_SRC_MAC;
	if (v->flags & XN_VTEP_LEARNING)
		br_learn(v->bridge, v->vid, in->h_source, v->ifindex, rx->saddr, now, st);
	f->bridge = v->bridge;
	f->vid = v->vid;
	f->tagged = 0;
	f->out = 0;
	if (!mac_is_multicast(in->h_dest)) {
		struct xn_fdb_entry *e = br_fdb_find(v->bridge, v->vid, in->h_dest, now);
		if (e) {
			if (e->remote)
				return -XN_DROP_SAME_PORT;
			f->out = e->ifindex;
			f->expires = (e->flags & XN_FDB_STATIC) ? ~0ULL : e->updated_ns + (__u64)e->ageing_sec * 1000000000ULL;
		}
	}
	return 0;
}

/* XDP: strips the outer headers (and any Ethernet padding after the outer
 * IP packet) of a parsed frame; 0 or a negative drop reason. */
__inline_fn int vx_xdp_strip(struct xdp_md *ctx, const struct pkt *p, const struct vx_rx *rx)
{
	__u32 trim = p->len - rx->outer_len - rx->inner_len;
	if (bpf_xdp_adjust_head(ctx, rx->outer_len))
		return -XN_DROP_UNKNOWN;
	if (trim && bpf_xdp_adjust_tail(ctx, -(int)trim))
		return -XN_DROP_UNKNOWN;
	return 0;
}

/* XDP on the uplink, the slow path (parsed, not in the cache): decapsulates
 * VXLAN for our VTEPs and switches the inner frame to local ports only
 * (split horizon: nothing from the overlay goes back into it). Returns an
 * XDP action or a negative drop reason; for known unicast it returns
 * VX_RX_UNICAST with f filled instead, and the caller redirects (straight out
 * of the port: no devmap egress program). */
enum { VX_RX_UNICAST = 0x100 };

__inline_fn int vx_xdp_decap(struct xdp_md *ctx, struct pkt *p, struct vx_rx *rx, __u64 now, struct xn_if_stats *st,
			     struct br_frame *f)
{
	int r = vx_rx_vtep(rx);
	if (r == VX_RX_NOT_OURS)
		return XDP_PASS;
	if (r < 0)
		return r;
	r = vx_rx_switch(rx, now, st, f);
	if (r < 0)
		return r;
	r = vx_xdp_strip(ctx, p, rx);
	if (r < 0)
		return r;
	mon_trace(ctx, HOOK_XDP, XN_EV_DECAP, p->ifindex, f->out, rx->vni);
	if (f->out)
		return VX_RX_UNICAST;
	/* Floods go through the devmap: its egress program needs the bridge
	 * and VLAN in the metadata. */
	if (xdp_set_meta(ctx, sizeof(struct xn_br_meta)))
		return -XN_DROP_UNKNOWN;
	struct xn_br_meta *m = (void *)(long)ctx->data_meta;
	if ((void *)(m + 1) > (void *)(long)ctx->data)
		return -XN_DROP_UNKNOWN;
	m->bridge = f->bridge;
	m->vid = f->vid;
	m->tagged = 0;
	if (st)
		st->flooded++;
	return bpf_redirect_map(&xn_tx_ports, 0, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS);
}

/* Outer headers of a decap at tc: Ethernet, IPv4 with the longest options,
 * UDP, VXLAN, the inner Ethernet header. */
#define VX_SKB_PULL (ETH_HLEN + 60 + 8 + 8 + ETH_HLEN)

/* tc ingress of the uplink (the alternative to XDP where XDP costs more than
 * it saves: on a veth underlay, XDP turns off GSO on the far end, so every
 * TCP segment would cross it alone). A GSO skb stays one skb through decap:
 * adjust_room removes the outer headers behind the outer Ethernet header
 * (FIXED_GSO: the inner MSS is unchanged), then the inner Ethernet header
 * takes its place. Returns VX_RX_NOT_OURS, a negative drop reason, or 0 with
 * f filled (f->out 0: flood to local ports only). */
__inline_fn int vx_skb_decap(struct __sk_buff *skb, __u64 now, struct xn_if_stats *st, struct br_frame *f)
{
	struct pkt p;
	bpf_skb_pull_data(skb, skb->len < VX_SKB_PULL ? skb->len : VX_SKB_PULL);
	pkt_from_skb(&p, skb);
	if (p.vlan_present)
		return VX_RX_NOT_OURS; /* a tagged underlay is the stack's */
	struct vx_rx rx = {};
	int r = vx_rx_parse(&p, &rx);
	if (r)
		return r;
	/* bpf_skb_adjust_room leaves at least the outer protocol's header (IPv4:
	 * 20 bytes) behind the MAC header: a shorter inner frame cannot be
	 * decapsulated here, and is dropped before it teaches the FDB anything. */
	if (rx.inner_len < ETH_HLEN + sizeof(struct iphdr))
		return -XN_DROP_VX_TRUNC;
	r = vx_rx_switch(&rx, now, st, f);
	if (r < 0)
		return r;
	struct ethhdr inner;
	__builtin_memcpy(&inner, rx.inner, ETH_HLEN);
	__u32 trim = p.len - rx.outer_len - rx.inner_len;
	if (trim && bpf_skb_change_tail(skb, p.len - trim, 0))
		return -XN_DROP_UNKNOWN;
	if (bpf_skb_adjust_room(skb, -(__s32)rx.outer_len, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO))
		return -XN_DROP_UNKNOWN;
	if (bpf_skb_store_bytes(skb, 0, &inner, ETH_HLEN, 0))
		return -XN_DROP_UNKNOWN;
	mon_trace(skb, HOOK_TC, XN_EV_DECAP, p.ifindex, f->out, rx.vni);
	return 0;
}
