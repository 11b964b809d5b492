/* The VXLAN VTEP (RFC 7348) of the bridge: encapsulation towards remote VTEPs
 * (XDP and tc ingress of bridge ports) and decapsulation (XDP on the uplink).
 * Configuration lookups, routing, header building and the flow hash are
 * shared; only the byte moving differs by hook. */
#pragma once
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include "bridge.h"
#include "vlan.h"
#include "../include/vxlan.h"


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_MAX_VTEPS);
	__type(key, __u32); /* VNI */
	__type(value, struct xn_vtep);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_vteps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_MAX_VTEPS);
	__type(key, struct xn_flood_key); /* (bridge, VLAN) */
	__type(value, __u32);             /* VNI */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_vx_vlans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_MAX_VTEPS);
	__type(key, struct xn_vx_port_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_vx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_MAX_VTEPS);
	__type(key, __u32); /* VNI */
	__type(value, struct xn_vx_remotes);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_vx_remotes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_VX_PEERS_MAX);
	__type(key, struct xn_vx_peer_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_vx_peers SEC(".maps");

#define VX_FLAG_I bpf_htonl(0x08000000)

struct vx_hdr {
	__be32 flags;
	__be32 vni; /* VNI << 8; the low byte is reserved */
};

/* The 50 bytes in front of the inner frame. Packet data is only 2-byte
 * aligned after an Ethernet header, and clang must know it. */
struct vx_outer {
	struct ethhdr eth;
	struct iphdr ip;
	struct udphdr udp;
	struct vx_hdr vx;
} __attribute__((packed, aligned(2)));

_Static_assert(sizeof(struct vx_outer) == XN_VX_HLEN, "outer headers are 50 bytes");

/* The VTEP that carries (bridge, vid) out of this host, and its VNI. */
__inline_fn struct xn_vtep *vx_vtep_of(__u32 bridge, __u16 vid, __u32 *vni)
{
	struct xn_flood_key k = { .bridge = bridge, .vid = vid };
	__u32 *n = bpf_map_lookup_elem(&xn_vx_vlans, &k);
	if (!n)
		return NULL;
	*vni = *n;
	return bpf_map_lookup_elem(&xn_vteps, n);
}

/* Whether floods of (bridge, vid) must also reach remote VTEPs. */
__inline_fn int vx_has_remotes(__u32 bridge, __u16 vid)
{
	struct xn_flood_key k = { .bridge = bridge, .vid = vid };
	__u32 *vni = bpf_map_lookup_elem(&xn_vx_vlans, &k);
	if (!vni)
		return 0;
	struct xn_vx_remotes *rm = bpf_map_lookup_elem(&xn_vx_remotes, vni);
	return rm && rm->count;
}

/* ---- flow entropy ------------------------------------------------------ */

/* The kernel's jhash_3words (include/linux/jhash.h). */
__inline_fn __u32 rol32(__u32 w, unsigned int s)
{
	return (w << s) | (w >> (32 - s));
}

__inline_fn __u32 jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	initval += 0xdeadbeef + (3 << 2);
	a += initval;
	b += initval;
	c += initval;
	c ^= b; c -= rol32(b, 14);
	a ^= c; a -= rol32(c, 11);
	b ^= a; b -= rol32(a, 25);
	c ^= b; c -= rol32(b, 16);
	a ^= c; a -= rol32(c, 4);
	b ^= a; b -= rol32(a, 14);
	c ^= b; c -= rol32(b, 24);
	return c;
}

/* Outer UDP source port from a flow hash, spread over 49152..65535 the way
 * the kernel's udp_flow_src_port() spreads it over its range. */
__inline_fn __be16 vx_sport(__u32 hash)
{
	hash ^= hash << 16;
	return bpf_htons((__u16)((((__u64)hash * XN_VX_SPORT_RANGE) >> 32) + XN_VX_SPORT_MIN));
}

/* XDP has no skb hash: hash the inner flow (addresses, protocol and ports;
 * the MACs for non-IP frames), words as they lie in the packet. */
__inline_fn __u32 vx_flow_hash(void *data, void *end, int tagged)
{
	struct cursor c = { .pos = data, .end = end };
	__u32 *eth = cursor_pull(&c, ETH_HLEN);
	if (!eth)
		return 0;
	__be16 proto = ((struct ethhdr *)eth)->h_proto;
	if (tagged) {
		struct vlan_hdr *vh = cursor_pull(&c, sizeof(*vh));
		if (!vh)
			return 0;
		proto = vh->proto;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cursor_pull(&c, sizeof(*ip));
		if (ip) {
			__u32 ports = 0;
			__u32 hlen = ip->ihl * 4;
			if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) &&
			    !(ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) && hlen >= sizeof(*ip)) {
				__u32 *l4 = (void *)ip + hlen;
				if ((void *)(l4 + 1) <= end)
					ports = *l4;
			}
			return jhash_3words(ip->saddr, ip->daddr, ports, ip->protocol);
		}
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cursor_pull(&c, sizeof(*ip6));
		if (ip6) {
			__u32 ports = 0;
			if (ip6->nexthdr == IPPROTO_TCP || ip6->nexthdr == IPPROTO_UDP) {
				__u32 *l4 = cursor_pull(&c, 4);
				if (l4)
					ports = *l4;
			}
			__u32 *s = ip6->saddr.in6_u.u6_addr32, *d = ip6->daddr.in6_u.u6_addr32;
			return jhash_3words(s[0] ^ s[1] ^ s[2] ^ s[3], d[0] ^ d[1] ^ d[2] ^ d[3], ports, ip6->nexthdr);
		}
	}
	return jhash_3words(eth[0], eth[1], eth[2], proto);
}

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

/* The fillers take the whole struct vx_outer so clang knows every field is
 * only 2-byte aligned (packet data after Ethernet; stack accesses must be
 * aligned to their size). */
__inline_fn void vx_fill_eth(struct vx_outer *o, const struct bpf_fib_lookup *fib)
{
	__builtin_memcpy(o->eth.h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(o->eth.h_source, fib->smac, ETH_ALEN);
	o->eth.h_proto = bpf_htons(ETH_P_IP);
}

/* IPv4 without options, TTL 64, DF (the underlay never fragments), id 0
 * (allowed for atomic datagrams, RFC 6864), with its header checksum. */
__inline_fn void vx_fill_ip(struct vx_outer *o, __be32 saddr, __be32 daddr, __u32 inner_len)
{
	__u16 *w = (void *)o + ETH_HLEN;
	w[0] = bpf_htons(0x4500); /* version 4, 5 words, TOS 0 */
	o->ip.tot_len = bpf_htons(inner_len + XN_VX_HLEN - ETH_HLEN);
	o->ip.id = 0;
	o->ip.frag_off = bpf_htons(IP_DF);
	o->ip.ttl = 64;
	o->ip.protocol = IPPROTO_UDP;
	o->ip.check = 0;
	o->ip.saddr = saddr;
	o->ip.daddr = daddr;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	o->ip.check = (__u16)~sum;
}

/* UDP (checksum 0, as RFC 7348 allows for IPv4) and VXLAN with the I flag. */
__inline_fn void vx_fill_udp(struct vx_outer *o, __be16 sport, __be16 dport, __u32 inner_len, __u32 vni)
{
	o->udp.source = sport;
	o->udp.dest = dport;
	o->udp.len = bpf_htons(inner_len + sizeof(struct udphdr) + sizeof(struct vx_hdr));
	o->udp.check = 0;
	o->vx.flags = VX_FLAG_I;
	o->vx.vni = bpf_htonl(vni << 8);
}

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
	mon_trace(ctx, HOOK_XDP, XN_EV_ENCAP, ctx->ingress_ifindex, fib.ifindex, t.vni);
	return bpf_redirect(fib.ifindex, 0);
}

enum { VX_RX_NOT_OURS = 1 };

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
 * part is usable), VX_RX_NOT_OURS, or a negative drop reason. IPv4 and UDP
 * that the kernel would drop as truncated or malformed are dropped here too;
 * fragments and other protocols go to the stack untouched. */
__inline_fn int vx_rx_headers(struct pkt *p, struct vx_rx *rx)
{
	struct cursor c = { .pos = p->data, .end = p->data_end };
	struct ethhdr *eth = cursor_pull(&c, ETH_HLEN);
	if (!eth)
		return -XN_DROP_TRUNC_ETH;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return VX_RX_NOT_OURS;
	struct iphdr *ip = cursor_pull(&c, sizeof(*ip));
	if (!ip)
		return -XN_DROP_TRUNC_IP;
	__u32 hlen = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);
	if (ip->version != 4 || hlen < sizeof(*ip) || tot < hlen)
		return -XN_DROP_BAD_IP;
	if (tot > p->len - ETH_HLEN)
		return -XN_DROP_TRUNC_IP;
	if (ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return VX_RX_NOT_OURS; /* fragments are the stack's to reassemble */
	if (hlen > sizeof(*ip) && !cursor_pull(&c, hlen - sizeof(*ip)))
		return -XN_DROP_TRUNC_IP;
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
	mon_trace(skb, HOOK_TC, XN_EV_ENCAP, skb->ifindex, fib.ifindex, vni);
	if (route == VX_ROUTE_NEIGH) {
		struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = fib.ipv4_dst };
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	return bpf_redirect(fib.ifindex, 0);
}

struct vx_flood_ctx {
	struct __sk_buff *skb;
	struct xn_vx_remotes *rm;
	struct xn_vtep *v;
	struct xn_if_stats *st;
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
		count_drop(c->skb, HOOK_TC, c->skb->ifindex, c->st, r == VX_ROUTE_NEIGH ? -XN_DROP_VX_NO_NEIGH : r);
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
__inline_fn void vx_skb_flood(struct __sk_buff *skb, struct br_frame *f, int tagged, struct xn_if_stats *st)
{
	__u32 vni = 0;
	struct xn_vtep *v = vx_vtep_of(f->bridge, f->vid, &vni);
	if (!v)
		return;
	struct xn_vx_remotes *rm = bpf_map_lookup_elem(&xn_vx_remotes, &vni);
	if (!rm || !rm->count)
		return;
	if (skb_vlan_set(skb, tagged, 0, f->vid)) {
		count_drop(skb, HOOK_TC, skb->ifindex, st, -XN_DROP_VLAN_OP);
		return;
	}
	struct vx_flood_ctx c = {
		.skb = skb, .rm = rm, .v = v, .st = st, .fib_len = vx_skb_fib_len(skb), .inner_len = skb->len, .vni = vni,
	};
	struct vx_encap h = {};
	vx_fill_udp(&h.o, vx_sport(bpf_get_hash_recalc(skb)), v->port, c.inner_len, vni);
	int r = vx_skb_push(skb, &h);
	if (r) {
		count_drop(skb, HOOK_TC, skb->ifindex, st, r);
		return;
	}
	bpf_loop(XN_VX_REMOTES_MAX, vx_flood_one, &c, 0);
}
