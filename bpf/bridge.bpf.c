/* The L2 bridge's entry programs: XDP ingress (+ its devmap egress program),
 * tc ingress, and the VXLAN uplink's XDP program. The switching logic is in
 * lib/bridge.h, the overlay's in lib/vxlan.h. The uplink program lives here
 * because decapsulation feeds this bridge: the same FDB, learning, devmap and
 * egress program, one set of map definitions for the verifier and libbpf. */
#include "lib/bridge.h"
#include "lib/arp.h"
#include "lib/vlan.h"
#include "lib/vxlan.h"
#include "lib/loop.h"

/* Makes a known-unicast frame carry its VLAN as the egress port wants it (tag,
 * untag or rewrite), noting the egress port's slot and tagging in f for the
 * cache: 0, or a negative drop reason. */
__inline_fn int forward_vlan(void *ctx, const enum hook h, struct br_frame *f)
{
	struct xn_port *out = br_port(f->out);
	int tag = out ? br_egress_tagging(out, f->out, f->vid) : -1; /* no port: a stale static entry */
	if (!out || tag < 0)
		return -XN_DROP_VLAN_EGRESS;
	if ((f->tagged || tag) &&
	    (h == HOOK_XDP ? xdp_vlan_set(ctx, f->tagged, tag, f->vid) : skb_vlan_set(ctx, f->tagged, tag, f->vid)))
		return -XN_DROP_VLAN_OP;
	f->out_slot = out->slot;
	f->out_tag = tag;
	f->out_peer = !!(out->flags & XN_PORT_PEER);
	return 0;
}

/* Known unicast from the cache: counts it in and out, checks a locked
 * port's frame and tags it as the egress port wants; 0, or a negative drop
 * reason. */
__inline_fn int forward_cached(void *ctx, const enum hook h, const struct pkt *p, const struct br_key *k,
			       const struct br_cached *c)
{
	stats_rx(slot_stats(c->in_slot), p->len);
	int r = br_cached_admit(ctx, h, c);
	if (r < 0)
		return r;
	int tagged = k->tci != 0;
	if ((tagged || c->out_tag) &&
	    (h == HOOK_XDP ? xdp_vlan_set(ctx, tagged, c->out_tag, c->vid) : skb_vlan_set(ctx, tagged, c->out_tag, c->vid)))
		return -XN_DROP_VLAN_OP;
	stats_tx(slot_stats(c->out_slot), h == HOOK_XDP ? (__u32)(((struct xdp_md *)ctx)->data_end - ((struct xdp_md *)ctx)->data)
						       : ((struct __sk_buff *)ctx)->len);
	return 0;
}

/* xn_br_xdp's slow path: everything but a cached local decision. A function
 * of its own (a call only when the cache misses) so that the hit path's
 * registers are its own: inlined, the slow path's values filled the hit's
 * stack with spills. k is the frame's key (NULL: it cannot be cached), g the
 * generations the entry program read before its cache lookup, c a cached
 * remote MAC's decision (encapsulate at once) or NULL. */
static __noinline int br_xdp_slow(struct xdp_md *ctx, const struct br_key *k, const struct xn_br_gen *g,
				  const struct br_cached *c)
{
	struct pkt p;
	pkt_from_xdp(&p, ctx);
	__u32 t = xn_ticks();
	struct br_frame f = {};
	struct xn_if_stats *st;
	__u64 now = 0; /* the slow path's clock, read only where needed */
	int r;
	if (c) { /* a remote MAC: straight to encapsulation */
		st = slot_stats(c->in_slot);
		stats_rx(st, p.len);
		r = br_cached_admit(ctx, HOOK_XDP, c);
		if (r < 0)
			goto drop;
		f.bridge = c->bridge;
		f.vid = c->vid;
		f.tagged = k->tci != 0;
		f.out = c->out;
		f.remote = c->remote;
		k = NULL; /* nothing to cache */
		goto encap;
	}

	struct xn_port *port = br_port(p.ifindex);
	if (!port)
		return XDP_PASS; /* not (or no longer) a port */
	st = slot_stats(port->slot);
	stats_rx(st, p.len);
	if (port->flags & XN_PORT_LOCKED) { /* before br_ingress: a refused frame teaches the FDB nothing */
		r = br_lock_check(ctx, HOOK_XDP);
		if (r < 0)
			goto drop;
		f.in_locked = 1;
	}
	now = br_now();
	r = br_ingress(&p, port, &f, now, st, 1);
	if (r < 0)
		goto drop;
	if (r == BR_LOCAL)
		return xdp_pass_to_tc(ctx, XN_META_LOCAL);
	if (r == BR_FORWARD && f.remote) {
encap:
		r = vx_xdp_encap(ctx, &f, t, (__u32)g->ctl);
		if (r < 0)
			goto drop;
		if (k)
			br_cache_put(k, g, now, t, &f);
		return r;
	}
	if (r == BR_FORWARD) {
		/* Known unicast goes straight out, tagged here: no metadata, no
		 * devmap egress program (that is only for floods). */
		r = forward_vlan(ctx, HOOK_XDP, &f);
		if (r < 0)
			goto drop;
		stats_tx(slot_stats(f.out_slot), (__u32)(ctx->data_end - ctx->data));
		if (k)
			br_cache_put(k, g, now, t, &f);
		mon_trace(ctx, HOOK_XDP, XN_EV_FORWARD, p.ifindex, f.out, 0);
		return bpf_redirect(f.out, 0);
	}
	/* An ARP request the bridge can answer goes back where it came from. */
	if (r == BR_FLOOD && arp_respond(&p, &f)) {
		if (st)
			st->arp_replied++;
		stats_tx(st, p.len);
		return XDP_TX;
	}
	/* XDP cannot clone into differently encapsulated copies: floods that
	 * reach remote VTEPs are the tc program's. */
	if (r == BR_FLOOD && vx_has_remotes(f.bridge, f.vid))
		return xdp_pass_to_tc(ctx, XN_META_PUNT);

	/* Flood: tell the egress program the frame's bridge and VLAN, replacing
	 * whatever metadata the frame arrived with (live-frame pages and some
	 * NIC drivers leave some, up to the whole headroom). */
	if (bpf_xdp_adjust_meta(ctx, (int)(ctx->data - ctx->data_meta) - (int)sizeof(struct xn_br_meta))) {
		count_drop(ctx, HOOK_XDP, p.ifindex, st, -XN_DROP_UNKNOWN);
		return XDP_DROP;
	}
	struct xn_br_meta *m = (void *)(long)ctx->data_meta;
	if ((void *)(m + 1) > (void *)(long)ctx->data)
		return XDP_DROP;
	m->bridge = f.bridge;
	m->vid = f.vid;
	m->tagged = f.tagged;

	if (st)
		st->flooded++;
	mon_trace(ctx, HOOK_XDP, XN_EV_FLOOD, p.ifindex, 0, 0);
	return bpf_redirect_map(&xn_tx_ports, 0, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS);

drop:
	count_drop(ctx, HOOK_XDP, p.ifindex, st, r);
	return XDP_DROP;
}

SEC("xdp")
int xn_br_xdp(struct xdp_md *ctx)
{
	struct pkt p;
	pkt_from_xdp(&p, ctx);
	struct xn_br_gen g = br_gen();
	struct br_key k = {}; /* whole on every path: clang carries its words in registers, and an unset one fails the verifier */
	int keyed = br_key_of(&p, &k) == 0;
	struct br_cached *c = NULL;
	if (keyed) {
		c = br_cache_get(&k, &g, xn_ticks());
		cache_count(bridge, c != NULL); /* a remote MAC's decision is used too: straight to encap */
	}
	if (!c || c->remote)
		return br_xdp_slow(ctx, keyed ? &k : NULL, &g, c);
	int r = forward_cached(ctx, HOOK_XDP, &p, &k, c);
	if (r < 0) {
		count_drop(ctx, HOOK_XDP, p.ifindex, slot_stats(c->in_slot), r);
		return XDP_DROP;
	}
	mon_trace(ctx, HOOK_XDP, XN_EV_FORWARD, p.ifindex, c->out, 0);
	return bpf_redirect(c->out, 0);
}

/* xn_vx_uplink's slow path (a call only when the cache misses, as for
 * xn_br_xdp; k and g likewise): the frame parsed again, then decap by the
 * maps. */
static __noinline int vx_uplink_slow(struct xdp_md *ctx, const struct br_key *k, const struct xn_br_gen *g)
{
	struct pkt p;
	pkt_from_xdp(&p, ctx);
	__u32 t = xn_ticks();
	struct vx_rx rx = {};
	int r = vx_rx_headers(&p, &rx);
	__u64 now = br_now();
	struct br_frame f = { .in_slot = if_slot(p.ifindex) };
	struct xn_if_stats *st = slot_stats(f.in_slot);
	stats_rx(st, p.len);
	if (r == 0)
		r = vx_xdp_decap(ctx, &p, &rx, now, st, &f);
	if (r == VX_RX_NOT_OURS)
		return XDP_PASS;
	if (r == VX_RX_UNICAST) {
		r = forward_vlan(ctx, HOOK_XDP, &f);
		if (r == 0) {
			stats_tx(slot_stats(f.out_slot), (__u32)(ctx->data_end - ctx->data));
			if (k)
				br_cache_put(k, g, now, t, &f);
			return bpf_redirect(f.out, 0);
		}
	}
	if (r < 0) {
		count_drop(ctx, HOOK_XDP, p.ifindex, st, r);
		return XDP_DROP;
	}
	return r;
}

/* XDP on a VTEP's uplink (not a bridge port): VXLAN for our VTEPs is
 * decapsulated and switched to local ports; everything else goes to the
 * stack untouched. Known unicast is cached like the bridge's, keyed by the
 * outer fields and inner MACs: a hit skips the VTEP, sender, FDB and port
 * lookups. */
SEC("xdp")
int xn_vx_uplink(struct xdp_md *ctx)
{
	struct pkt p;
	pkt_from_xdp(&p, ctx);
	struct xn_br_gen g = br_gen();
	struct vx_rx rx = {};
	struct br_key k = {}; /* whole on every path: clang carries its words in registers, and an unset one fails the verifier */
	int keyed = vx_rx_headers(&p, &rx) == 0 && vx_rx_key(&p, &rx, &k) == 0;
	struct br_cached *c = NULL;
	if (keyed) {
		c = br_cache_get(&k, &g, xn_ticks());
		cache_count(bridge, c != NULL);
	}
	if (!c)
		return vx_uplink_slow(ctx, keyed ? &k : NULL, &g);
	int r = vx_xdp_strip(ctx, &p, &rx);
	if (r == 0)
		r = forward_cached(ctx, HOOK_XDP, &p, &k, c);
	if (r < 0) {
		count_drop(ctx, HOOK_XDP, p.ifindex, slot_stats(c->in_slot), r);
		return XDP_DROP;
	}
	mon_trace(ctx, HOOK_XDP, XN_EV_DECAP, p.ifindex, c->out, rx.vni);
	return bpf_redirect(c->out, 0);
}

/* Runs once per destination port of an XDP redirect: drops copies of a flood
 * that do not belong to that port's bridge and VLAN, and tags or untags. */
SEC("xdp/devmap")
int xn_br_egress(struct xdp_md *ctx)
{
	struct xn_br_meta *m = (void *)(long)ctx->data_meta;
	if ((void *)(m + 1) > (void *)(long)ctx->data)
		return XDP_DROP;
	__u32 out = ctx->egress_ifindex;
	struct xn_port *port = br_port(out);
	if (!port || port->bridge != m->bridge)
		return XDP_DROP; /* another bridge's port: not a drop, just not ours */
	int tag = br_egress_tagging(port, out, m->vid);
	if (tag < 0)
		return XDP_DROP; /* not in this VLAN: filtering a flood, not a drop */
	if (xdp_vlan_set(ctx, m->tagged, tag, m->vid)) {
		count_drop(ctx, HOOK_XDP, ctx->ingress_ifindex, 0, -XN_DROP_VLAN_OP);
		return XDP_DROP;
	}
	stats_tx(slot_stats(port->slot), (__u32)(ctx->data_end - ctx->data));
	return XDP_PASS;
}

struct flood_ctx {
	struct __sk_buff *skb;
	struct xn_flood *fl;
	__u32 ingress;
	__u16 vid;
	__u16 want_tag;
	__u16 others;  /* a member wants the other tagging */
	__u16 refused; /* copies the kernel would not take: counted by flood_local, whose frame has room to */
};

/* One member of the flood domain: clone the frame to it if its egress tagging
 * is want_tag. An xn_loop callback (lib/loop.h). */
static long flood_one(__u64 i, void *data)
{
	struct flood_ctx *c = data;
	if (i >= c->fl->count || i >= XN_FLOOD_MAX)
		return 1;
	__u32 out = c->fl->ifindex[i];
	if (out == c->ingress)
		return 0;
	struct xn_port *port = br_port(out);
	if (!port)
		return 0;
	if (br_egress_tagging(port, out, c->vid) != c->want_tag) {
		c->others = 1;
		return 0;
	}
	if (bpf_clone_redirect(c->skb, out, 0) == 0)
		stats_tx(slot_stats(port->slot), c->skb->len);
	else /* the port gone, down, without carrier (any nonzero: a qdisc's NET_XMIT_* too) */
		c->refused++;
	return 0;
}

/* Clones the frame to the other local members of its flood domain: untagged
 * members first, then tagged ones (only if there are any), so the tag changes
 * at most twice. Whether the frame carries a tag afterwards, or a negative
 * drop reason: the domain does not exist, or the tag will not come off (the
 * kernel's pop also pulls the next tag of a stack, and fails on a cut one). */
__loop_fn int flood_local(struct __sk_buff *skb, const struct br_frame *f, __u32 ingress, struct xn_if_stats *st)
{
	if (!f) /* as a global function (loop.h), its pointers are checked */
		return -XN_DROP_UNKNOWN;
	struct xn_flood_key fk = { .bridge = f->bridge, .vid = f->vid };
	struct xn_flood *fl = bpf_map_lookup_elem(&xn_flood, &fk);
	if (!fl)
		return -XN_DROP_UNKNOWN;
	if (skb_vlan_set(skb, f->tagged, 0, f->vid))
		return -XN_DROP_VLAN_OP;
	if (st)
		st->flooded++;
	struct flood_ctx c = { .skb = skb, .fl = fl, .ingress = ingress, .vid = f->vid };
	int tagged = 0;
	xn_loop(XN_FLOOD_MAX, XN_FLOOD_MAX, flood_one, &c);
	if (c.others) {
		if (skb_vlan_set(skb, 0, 1, f->vid) == 0) {
			tagged = 1;
			c.want_tag = 1;
			c.others = 0;
			xn_loop(XN_FLOOD_MAX, XN_FLOOD_MAX, flood_one, &c);
		} else { /* the tagged members' copies: counted once, not in dropped (a frame count) */
			count_drop(skb, HOOK_TC, ingress, 0, -XN_DROP_VLAN_OP);
		}
	}
	if (c.refused) /* each refused copy, not in dropped */
		mon_drop(skb, HOOK_TC, ingress, count_drops_only(ingress, 0, -XN_DROP_COPY_REFUSED, c.refused));
	return tagged;
}

/* The XN_META_* note XDP left in front of a frame it passed, or 0. */
__inline_fn __u32 xdp_note(struct __sk_buff *skb)
{
	__u32 *m = (void *)(long)skb->data_meta;
	if ((void *)(m + 1) > (void *)(long)skb->data)
		return 0;
	return *m;
}

/* tc: forward with bpf_redirect, flood with one clone per member port (and
 * per remote VTEP). Also the slow path of XDP ports on overlay bridges. */
SEC("tc")
int xn_br_tc(struct __sk_buff *skb)
{
	struct pkt p;
	pkt_from_skb(&p, skb);
	__u32 note = xdp_note(skb);
	if (note == XN_META_LOCAL)
		return TC_ACT_OK; /* XDP counted it and sent it to the host */
	__u32 t = xn_ticks();
	struct xn_br_gen g = br_gen();
	struct br_key k = {}; /* whole on every path: clang carries its words in registers, and an unset one fails the verifier */
	int keyed = !note && br_key_of(&p, &k) == 0; /* punted frames are never known unicast */
	if (keyed) {
		struct br_cached *c = br_cache_get(&k, &g, t);
		int hit = c && !c->remote; /* XDP's remote decisions: tc encapsulates on its slow path */
		cache_count(bridge, hit);
		if (hit) {
			int r = forward_cached(skb, HOOK_TC, &p, &k, c);
			if (r < 0) {
				count_drop(skb, HOOK_TC, p.ifindex, slot_stats(c->in_slot), r);
				return TC_ACT_SHOT;
			}
			mon_trace(skb, HOOK_TC, XN_EV_FORWARD, p.ifindex, c->out, 0);
			return br_tc_send(c->out, c->out_peer);
		}
	}
	struct xn_port *port = br_port(p.ifindex);
	if (!port)
		return TC_ACT_OK;
	int punted = note == XN_META_PUNT; /* XDP counted and learned it already */
	struct xn_if_stats *st = slot_stats(port->slot);
	if (!punted)
		stats_rx(st, p.len);
	struct br_frame f = {};
	int r;
	if (port->flags & XN_PORT_LOCKED) { /* as in br_xdp_slow */
		r = br_lock_check(skb, HOOK_TC);
		if (r < 0)
			goto drop;
		f.in_locked = 1;
	}
	__u64 now = br_now();
	r = br_ingress(&p, port, &f, now, st, !punted);
	if (r < 0)
		goto drop;
	if (r == BR_LOCAL)
		return TC_ACT_OK;

	if (r == BR_FORWARD && f.remote) {
		r = vx_skb_encap(skb, &f);
		if (r < 0)
			goto drop;
		return r;
	}
	if (r == BR_FORWARD) {
		r = forward_vlan(skb, HOOK_TC, &f);
		if (r < 0)
			goto drop;
		stats_tx(slot_stats(f.out_slot), skb->len);
		if (keyed)
			br_cache_put(&k, &g, now, t, &f);
		mon_trace(skb, HOOK_TC, XN_EV_FORWARD, p.ifindex, f.out, 0);
		return br_tc_send(f.out, f.out_peer);
	}

	if (arp_respond(&p, &f)) { /* answered here: never flooded */
		if (st)
			st->arp_replied++;
		stats_tx(st, skb->len);
		mon_trace(skb, HOOK_TC, XN_EV_FORWARD, p.ifindex, p.ifindex, 0);
		return br_tc_send(p.ifindex, !!(port->flags & XN_PORT_PEER));
	}
	mon_trace(skb, HOOK_TC, XN_EV_FLOOD, p.ifindex, 0, 0);
	int tagged = flood_local(skb, &f, p.ifindex, st);
	if (tagged < 0) {
		r = tagged;
		goto drop;
	}
	vx_skb_flood(skb, &f, tagged); /* last: it encapsulates the frame in place */
	return TC_ACT_SHOT; /* every copy has gone out */

drop:
	count_drop(skb, HOOK_TC, p.ifindex, st, r);
	return TC_ACT_SHOT;
}

/* tc ingress of a VTEP's uplink: the same decap as xn_vx_uplink for skbs
 * (see vx_skb_decap for when), then local ports only: one redirect, or one
 * clone per port of the flood domain (never back into the overlay). */
SEC("tc")
int xn_vx_uplink_tc(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct xn_if_stats *st = count_rx(ifindex, skb->len);
	struct br_frame f = {};
	int r = vx_skb_decap(skb, br_now(), st, &f);
	if (r == VX_RX_NOT_OURS)
		return TC_ACT_OK;
	if (r < 0)
		goto drop;
	if (f.out) {
		r = forward_vlan(skb, HOOK_TC, &f);
		if (r < 0)
			goto drop;
		stats_tx(slot_stats(f.out_slot), skb->len);
		/* bpf_redirect_peer skips eth_type_trans: skb->protocol is still the
		 * outer header's, right only when the inner frame has the same
		 * ethertype (IPv4 in IPv4; ARP inside must take the veth's egress). */
		__be16 proto;
		int same = bpf_skb_load_bytes(skb, 12, &proto, sizeof(proto)) == 0 && proto == skb->protocol;
		return br_tc_send(f.out, f.out_peer && same);
	}
	r = flood_local(skb, &f, ifindex, st); /* decapsulated frames are untagged */
	if (r < 0)
		goto drop;
	return TC_ACT_SHOT; /* every copy has gone out */

drop:
	count_drop(skb, HOOK_TC, ifindex, st, r);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
