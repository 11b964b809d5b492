/* NAT: source rules (masquerade/SNAT by egress interface and source prefix),
 * port mappings (DNAT) with hairpin, replies translated back through
 * conntrack, ICMP errors about translated flows, and delivery by FIB lookup.
 * Written once for XDP and tc: the hook is a constant in every inlined helper.
 *
 * Where it runs: on ingress, both directions. A packet finds its flow's entry
 * (either direction) or, without one, the rules; packets no rule touches --
 * the host's own traffic among them -- pass untouched and leave no entry. */
#pragma once
#include <linux/ip.h>
#include <linux/in.h> /* ct.h uses IPPROTO_* without including it */
#include "common.h"
#include "ctx.h"
#include "stats.h"
#include "ct.h"
#include "nat_parse.h"
#include "nat_fib.h"
#include "nat_hot.h"
#include "nat_flow.h"
#include "nat_rewrite.h"

/* Translates the packet to src/dst (e: its flow's entry) and sends it on.
 * With a full FIB answer it is forwarded here like the kernel would (TTL
 * decremented, MACs from the FIB, or tc's bpf_redirect_neigh). Otherwise the
 * kernel takes it -- but never with a translated source (a host address
 * arriving from outside is a martian to it), and never untranslated where the
 * kernel would forward it: those are passed untouched only when the kernel
 * will answer with an ICMP error instead (TTL, DF, no route), else dropped. */
__inline_fn int nat_deliver(struct nat_ctx *c, const enum hook h, const int icmp_err, struct bpf_fib_lookup *f,
			    int fwd, const struct xn_ct_entry *e, __be32 src, __be32 dst)
{
	struct iphdr *ip = c->ip;
	int how = FWD_NONE;
	if (ip->ttl > 1 && (fwd == FWD_OK || (h == HOOK_TC && fwd == FWD_NEIGH)))
		how = fwd;
	else if (h == HOOK_XDP && fwd == FWD_NEIGH && ip->ttl > 1 && src != ip->saddr)
		return XDP_PASS; /* untouched, to the tc program beside it (--in-hook xdp attaches both): its
				  * bpf_redirect_neigh resolves the next hop, which XDP cannot */
	else if (src != ip->saddr) {
		if (ip->ttl <= 1 || fwd == FWD_NONE || (fwd == FWD_BIG && (ip->frag_off & bpf_htons(IP_DF))))
			return VERDICT_PASS(h);
		return -XN_DROP_NAT_NO_FWD;
	}
	if (how != FWD_NONE) {
		__be16 *w = (__be16 *)&ip->ttl; /* the word of TTL and protocol */
		__be16 old = *w;
		ip->ttl--;
		ip->check = csum_update(ip->check, csum_diff16(old, *w));
	}
	if (how == FWD_OK) {
		struct ethhdr *eth = c->p.data;
		if ((void *)(eth + 1) > c->p.data_end)
			return -XN_DROP_TRUNC_ETH;
		__builtin_memcpy(eth->h_dest, f->dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, f->smac, ETH_ALEN);
	}
	int r = icmp_err ? nat_rewrite_error(c, e, src, dst) : nat_rewrite(c, h, e);
	if (r)
		return r;
	mon_trace(c->ctx, h, XN_EV_NAT, c->p.ifindex, how == FWD_NONE ? 0 : f->ifindex, 0);
	if (how == FWD_OK)
		return bpf_redirect(f->ifindex, 0);
	if (h == HOOK_TC && how == FWD_NEIGH) {
		struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = f->ipv4_dst }; /* the FIB's next hop */
		return bpf_redirect_neigh(f->ifindex, &nh, sizeof(nh), 0);
	}
	return VERDICT_PASS(h);
}

/* The whole NAT step for one packet: the hook's verdict, or a negative drop
 * reason (the packet unchanged). */
__inline_fn int nat_run(struct nat_ctx *c, const enum hook h)
{
	int r = nat_parse(c);
	if (h == HOOK_TC && r < 0 && c->p.data_end - c->p.data < c->p.len) {
		/* Headers beyond tc's linear data: pull them in once, and parse again. */
		struct __sk_buff *skb = c->ctx;
		if (bpf_skb_pull_data(skb, c->p.len < NAT_PULL_LEN ? c->p.len : NAT_PULL_LEN) == 0) {
			pkt_from_skb(&c->p, skb);
			r = nat_parse(c);
		}
	}
	if (r < 0)
		return r;
	if (r == NAT_SKIP)
		return VERDICT_PASS(h);

	struct bpf_fib_lookup f;
	int fwd;
	if (r == NAT_FRAG_LATER) {
		/* No ports, so no flow to find: drop it if a source rule would
		 * translate its datagram (never send it out untranslated); port
		 * mappings cannot claim it, and the host may reassemble its own. */
		fwd = nat_fib(c, h, &f, c->key.src, c->key.dst, 0, 0);
		return fwd != FWD_NONE && nat_snat_rule(f.ifindex, c->key.src) ? -XN_DROP_NAT_FRAG : VERDICT_PASS(h);
	}
	__u32 t = xn_ticks();
	__u32 gen = h == HOOK_XDP ? nat_gen() : 0; /* before the table: a deletion meanwhile leaves a new copy stale */
	/* SYN, FIN and RST always reach the table: they may move the flow's
	 * state, which the other direction's copy would not see. */
	if (h == HOOK_XDP && r == NAT_L4 && !c->frag && !(c->tcp & (TCP_FL_SYN | TCP_FL_FIN | TCP_FL_RST))) {
		struct nat_hot *hot = nat_hot_get(&c->key, gen, t);
		if (hot && c->ip->ttl > 1 && bpf_ntohs(c->ip->tot_len) <= hot->mtu) {
			__u8 fl = hot->flags & ~XN_CT_REPLY;
			if (ct_next(c->key.proto, hot->state, &fl, hot->flags & XN_CT_REPLY, c->tcp) == hot->state &&
			    fl == (hot->flags & ~XN_CT_REPLY)) {
				struct xn_ct_entry he = { .to_src = hot->to_src, .to_dst = hot->to_dst,
							  .to_sport = hot->to_sport, .to_dport = hot->to_dport };
				f.ifindex = hot->ifindex;
				__builtin_memcpy(f.dmac, hot->dmac, ETH_ALEN);
				__builtin_memcpy(f.smac, hot->smac, ETH_ALEN);
				/* Counted after the delivery, not before: clang then keeps the
				 * hot path's values in registers (3 ns a frame less, measured
				 * with bench/progtime.ts; docs/performance.md). */
				int v = nat_deliver(c, h, 0, &f, FWD_OK, &he, he.to_src, he.to_dst);
				cache_count(nat, 1);
				return v;
			}
		}
		cache_count(nat, 0); /* not cached, stale, or this packet needs the table (TTL, size, a state change) */
	}
	/* CLOCK_MONOTONIC_COARSE: a tick is precision enough for the table's timeouts */
	__u64 now = bpf_ktime_get_coarse_ns();
	struct xn_ct_entry *e = bpf_map_lookup_elem(&xn_ct, &c->key);
	if (r == NAT_ICMP_ERR) {
		if (!e || ct_expired(e, now))
			return VERDICT_PASS(h); /* not about a flow of ours */
		if (c->frag)
			return -XN_DROP_NAT_FRAG;
		/* From the flow's far end itself, the source is translated too. */
		__be32 src = c->ip->saddr == c->key.src ? e->to_src : c->ip->saddr;
		fwd = nat_fib(c, h, &f, src, e->to_dst, 0, 0);
		return nat_deliver(c, h, 1, &f, fwd, e, src, e->to_dst);
	}
	struct ct_new n = {};
	if (e && c->frag)
		return -XN_DROP_NAT_FRAG;
	if (e && !ct_hit(&c->key, e, c->tcp, now)) {
		fwd = nat_fib_cached(c, h, &f, e, now);
		if (h == HOOK_XDP && fwd == FWD_OK && !c->frag)
			nat_hot_put(&c->key, e, gen, now, t);
	} else { /* no entry, or it had expired (now removed): a new flow */
		r = nat_new_flow(c, h, &n, &f, &fwd, now);
		if (r <= 0)
			return r ? r : VERDICT_PASS(h);
		e = &n.ent;
	}
	return nat_deliver(c, h, 0, &f, fwd, e, e->to_src, e->to_dst);
}
