/* A new NAT flow: the rules (port mappings, source rules by egress
 * interface, hairpin) decide its translation, and conntrack records it. */
#pragma once
#include "nat_fib.h"
#include "ct.h"

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, XN_SNAT_RULES_MAX);
	__type(key, struct xn_snat_key);
	__type(value, struct xn_snat_rule);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_snat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_PORTMAPS_MAX);
	__type(key, struct xn_portmap_key);
	__type(value, struct xn_portmap);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_portmap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_NAT_ADDRS_MAX);
	__type(key, __be32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_nat_addrs SEC(".maps");

__inline_fn struct xn_snat_rule *nat_snat_rule(__u32 egress, __be32 src)
{
	struct xn_snat_key k = { .prefixlen = 64, .ifindex = egress, .src = src };
	return bpf_map_lookup_elem(&xn_snat, &k);
}

/* A packet without a conntrack entry: the rules decide. Port mappings first
 * (only to the host's own addresses), then the egress interface the FIB gives
 * picks the source rule. Returns 1 with the flow created (n->ent is its
 * translation, f and *fwd the lookup for it), 0 when no rule applies (leave
 * the packet alone), or a negative drop reason. */
__inline_fn int nat_new_flow(struct nat_ctx *c, const enum hook h, struct ct_new *n, struct bpf_fib_lookup *f,
			     int *fwd, __u64 now)
{
	const struct xn_ct_key *k = &c->key;
	n->key = *k;
	n->ent = (struct xn_ct_entry){ .last_seen_ns = now, .to_src = k->src, .to_dst = k->dst, .to_sport = k->sport,
				       .to_dport = k->dport };
	int dnat = 0, snat = 0;
	if (k->proto != IPPROTO_ICMP) {
		struct xn_portmap_key pk = { .ifindex = c->p.ifindex, .port = k->dport, .proto = k->proto };
		struct xn_portmap *pm = bpf_map_lookup_elem(&xn_portmap, &pk);
		if (!pm) {
			pk.ifindex = 0;
			pm = bpf_map_lookup_elem(&xn_portmap, &pk);
		}
		if (pm && bpf_map_lookup_elem(&xn_nat_addrs, &k->dst)) {
			n->ent.to_dst = pm->to_addr;
			n->ent.to_dport = pm->to_port;
			dnat = 1;
		}
	}

	__u32 amin = 0, amax = 0;
	__u16 pmin = 0, pmax = 0;
	*fwd = nat_fib(c, h, f, k->src, n->ent.to_dst, k->sport, n->ent.to_dport);
	if (*fwd != FWD_NONE) {
		struct xn_snat_rule *r = nat_snat_rule(f->ifindex, k->src);
		if (r) {
			amin = bpf_ntohl(r->addr_min);
			amax = bpf_ntohl(r->addr_max);
			pmin = r->port_min;
			pmax = r->port_max;
			snat = 1;
		} else if (dnat && f->ifindex == c->p.ifindex) {
			/* Hairpin: it leaves the way it came, so the reply would go
			 * straight back to the sender, around us. From the host
			 * address it was sent to, the reply comes back here. */
			amin = amax = bpf_ntohl(k->dst);
			pmin = XN_NAT_PORT_MIN;
			pmax = XN_NAT_PORT_MAX;
			snat = 1;
		}
	}
	if (!snat && !dnat)
		return 0;
	if (c->frag)
		return -XN_DROP_NAT_FRAG; /* never half-translate a datagram */
	if (k->proto == IPPROTO_ICMP) {
		pmin = 0; /* echo identifiers are not ports: the whole space, as nf_nat does */
		pmax = 0xffff;
	}
	if (snat) {
		/* One outer address per inner source (a multiplicative hash over the range). */
		__u32 span = amax - amin + 1;
		n->ent.to_src = bpf_htonl(amin + (amax > amin && span ? bpf_ntohl(k->src) * 2654435761u % span : 0));
	}
	__u8 fl = 0;
	n->ent.state = ct_next(k->proto, XN_CT_NONE, &fl, 0, c->tcp);
	n->ent.flags = fl;
	__u16 sport = bpf_ntohs(k->sport);
	int r = ct_create(n, snat ? pmin : sport, snat ? pmax : sport, snat);
	return r ? r : 1;
}
