/* Over 500 lines because it is still one piece: parsing, conntrack, translation
 * and forwarding of NAT, to be split like vxlan.h (parse, ct use, rewrite,
 * forward) in a follow-up; kept whole here to change no behaviour. */
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
#include <linux/in.h>
#include "common.h"
#include "ctx.h"
#include "parse.h"
#include "stats.h"
#include "csum.h"
#include "ct.h"

/* The ICMP header, declared here: <linux/icmp.h> pulls in <linux/if.h> and
 * through it glibc's <sys/socket.h>, which for the bpf target wants the
 * 32-bit glibc stubs (libc6-dev-i386) that a plain Debian machine lacks. */
struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	union {
		struct { __be16 id; __be16 sequence; } echo;
		__be32 gateway;
	} un;
};
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

/* Headers the parser may need in the linear part: Ethernet, IP with options,
 * ICMP, the quoted IP with options, and the quoted TCP up to its checksum. */
#define NAT_PULL_LEN (ETH_HLEN + 60 + 8 + 60 + 18)

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

/* What the parser found. A return value rather than a flag in struct nat_ctx:
 * the verifier tracks a register exactly, a byte on the stack maybe not. */
enum { NAT_L4 = 0, NAT_ICMP_ERR = 1, NAT_FRAG_LATER = 2, NAT_SKIP = 3 };
enum fwd {
	FWD_NONE,  /* the kernel would not forward it (local, no route, forwarding off) */
	FWD_OK,    /* egress and MACs known: forward it here */
	FWD_NEIGH, /* egress known, next hop unresolved (tc can still send it) */
	FWD_BIG,   /* egress known, too big for it */
};

struct nat_ctx {
	struct pkt p;
	void *ctx;          /* struct xdp_md or struct __sk_buff */
	struct iphdr *ip;
	void *l4;           /* the L4 header (ICMP error: the ICMP header) */
	__u32 l4_off;       /* its offset, for tc's checksum helper */
	struct iphdr *iip;  /* ICMP error: the quoted IP header */
	__u8 *il4;          /* and the quoted L4 header, 8 bytes checked */
	__u32 il4_len;      /* quoted L4 bytes the outer length declares */
	struct xn_ct_key key; /* the packet's tuple; ICMP error: the tuple of the flow's packets it answers */
	__u8 tcp;           /* TCP flags */
	__u8 frag;          /* the first fragment of a datagram */
};

/* An ICMP error quotes a packet of the flow as it left us (translated), going
 * the other way: the entry that translates the error is the reverse's. */
__inline_fn int nat_parse_quote(struct nat_ctx *c, struct cursor *cur, __u32 room)
{
	struct iphdr *iip = room >= sizeof(*iip) ? cursor_pull(cur, sizeof(*iip)) : NULL;
	if (!iip)
		return -XN_DROP_TRUNC_ICMP;
	__u32 hl = iip->ihl * 4;
	if (iip->version != 4 || hl < sizeof(*iip))
		return -XN_DROP_BAD_ICMP_ERR;
	if (room < hl + 8 || !cursor_pull(cur, hl - sizeof(*iip)))
		return -XN_DROP_TRUNC_ICMP;
	__u8 *l4 = cursor_pull(cur, 8);
	if (!l4)
		return -XN_DROP_TRUNC_ICMP;
	/* A non-first fragment has no ports; an error not sent to the quoted
	 * packet's source is not about a packet we sent. */
	if ((iip->frag_off & bpf_htons(IP_OFFSET)) || iip->saddr != c->ip->daddr)
		return NAT_SKIP;
	__be16 *pp = (__be16 *)l4;
	c->key = (struct xn_ct_key){ .src = iip->daddr, .dst = iip->saddr, .sport = pp[1], .dport = pp[0],
				     .proto = iip->protocol };
	if (iip->protocol == IPPROTO_ICMP) {
		if (l4[0] != ICMP_ECHO && l4[0] != ICMP_ECHOREPLY)
			return NAT_SKIP; /* an error about an error: never answered */
		c->key.sport = c->key.dport = pp[2];
	} else if (iip->protocol != IPPROTO_TCP && iip->protocol != IPPROTO_UDP) {
		return NAT_SKIP;
	}
	c->iip = iip;
	c->il4 = l4;
	c->il4_len = room - hl;
	return NAT_ICMP_ERR;
}

/* Returns NAT_L4 or NAT_ICMP_ERR (c filled in), NAT_FRAG_LATER (addresses
 * only), NAT_SKIP, or a negative drop reason. Lengths are
 * checked against what the IP header declares, not only the frame (Ethernet
 * padding is not a header). */
__inline_fn int nat_parse(struct nat_ctx *c)
{
	struct cursor cur = { .pos = c->p.data, .end = c->p.data_end };
	struct ethhdr *eth = cursor_pull(&cur, sizeof(*eth));
	if (!eth)
		return -XN_DROP_TRUNC_ETH;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || c->p.vlan_present)
		return NAT_SKIP; /* NAT works on untagged IPv4; VLAN subinterfaces have their own hooks */
	struct iphdr *ip = cursor_pull(&cur, sizeof(*ip));
	if (!ip)
		return -XN_DROP_TRUNC_IP;
	__u32 hl = ip->ihl * 4, tot = bpf_ntohs(ip->tot_len);
	if (ip->version != 4 || hl < sizeof(*ip) || tot < hl)
		return -XN_DROP_BAD_IP;
	/* Options are carried unchanged (like a router that does not process them). */
	if (tot > c->p.len - ETH_HLEN || !cursor_pull(&cur, hl - sizeof(*ip)))
		return -XN_DROP_TRUNC_IP;
	c->ip = ip;
	c->key = (struct xn_ct_key){ .src = ip->saddr, .dst = ip->daddr, .proto = ip->protocol };
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_ICMP)
		return NAT_SKIP;
	__u16 fo = bpf_ntohs(ip->frag_off);
	if (fo & IP_OFFSET)
		return NAT_FRAG_LATER; /* no L4 header */
	c->frag = !!(fo & IP_MF);
	c->l4 = cur.pos;
	c->l4_off = ETH_HLEN + hl;
	__u32 room = tot - hl; /* L4 bytes the IP header declares */
	if (ip->protocol == IPPROTO_TCP) {
		__u8 *th = room >= 20 ? cursor_pull(&cur, 20) : NULL;
		if (!th)
			return -XN_DROP_TRUNC_TCP;
		c->key.sport = ((__be16 *)th)[0];
		c->key.dport = ((__be16 *)th)[1];
		c->tcp = th[13];
		return NAT_L4;
	}
	if (ip->protocol == IPPROTO_UDP) {
		__be16 *uh = room >= 8 ? cursor_pull(&cur, 8) : NULL;
		if (!uh)
			return -XN_DROP_TRUNC_UDP;
		c->key.sport = uh[0];
		c->key.dport = uh[1];
		return NAT_L4;
	}
	struct icmphdr *ih = room >= sizeof(*ih) ? cursor_pull(&cur, sizeof(*ih)) : NULL;
	if (!ih)
		return -XN_DROP_TRUNC_ICMP;
	if (ih->type == ICMP_ECHO || ih->type == ICMP_ECHOREPLY) {
		c->key.sport = c->key.dport = ih->un.echo.id;
		return NAT_L4;
	}
	if (ih->type == ICMP_DEST_UNREACH || ih->type == ICMP_TIME_EXCEEDED || ih->type == ICMP_PARAMETERPROB)
		return nat_parse_quote(c, &cur, room - sizeof(*ih));
	return NAT_SKIP;
}

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

/* XDP's per-CPU cache of flows in a steady state: one direction's translation
 * and next hop in one cache line. With many flows the conntrack LRU's bucket
 * and element miss the CPU caches on every packet (about a third of the time
 * at 10k flows); this array is inlined, four-way set-associative and 2 MB per
 * CPU. The slow path fills an entry from a fresh FIB answer in the flow's
 * entry, and it holds as long as that answer (about a second: then the slow
 * path refreshes last_seen and the next hop) and while xn_nat_gen is
 * unchanged (the control process deleted flows). A packet that would change
 * the flow's state (SYN, FIN, RST, a first reply) takes the slow path. An
 * entry the LRU evicts lives on here for that second at most. */
struct nat_hot {
	struct xn_ct_key key;
	__be32 to_src, to_dst;
	__be16 to_sport, to_dport;
	__u8 state, flags;
	__u16 mtu;
	__u32 ifindex;
	__u8 dmac[ETH_ALEN], smac[ETH_ALEN];
	__u32 until; /* xn_ticks(): when its FIB answer is due again */
	__u32 gen;   /* xn_nat_gen's low half when it was made */
	__u32 pad[2]; /* a cache line */
};

#define XN_NAT_HOT_SIZE 32768 /* entries a CPU, at most */

/* Entries a CPU (a power of two, XN_NAT_HOT_WAYS to XN_NAT_HOT_SIZE): the
 * loader sizes the copies from the conntrack capacity and sets this to match
 * (natHotPart in src/objects/memory.ts). Frozen, the verifier sees a constant. */
const volatile __u32 xn_nat_hot_part = XN_NAT_HOT_SIZE;

/* Each CPU owns xn_nat_hot_part consecutive entries of one plain array, not a
 * per-CPU array: a per-CPU lookup first loads the entry's pointer (a second
 * cache and TLB miss at 10k flows); BPF_F_MMAPABLE puts the values on a page
 * boundary, so every entry is one cache line and a set shares a page. It is
 * compiled with one CPU's largest part and the loader sizes it (perCpuCache in
 * src/objects/memory.ts); a CPU beyond the array (a test that loads the object
 * as compiled: every CPU but the first) caches nothing. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XN_NAT_HOT_SIZE);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct nat_hot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_nat_hot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64); /* written by the control process after deleting flows */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_nat_gen SEC(".maps");

__inline_fn __u32 nat_gen(void)
{
	__u32 zero = 0;
	__u64 *g = bpf_map_lookup_elem(&xn_nat_gen, &zero);
	return g ? (__u32)*g : 0;
}

#define XN_NAT_HOT_WAYS 4

/* The first way of k's set, in this CPU's part. */
__inline_fn __u32 nat_hot_set(const struct xn_ct_key *k)
{
	const __u32 *w = (const __u32 *)k; /* k may be 4-aligned on the stack */
	__u32 h = xn_hash(w[0] | (__u64)w[1] << 32, w[2] | (__u64)w[3] << 32, 0, 0);
	__u32 part = xn_nat_hot_part;
	return bpf_get_smp_processor_id() * part + (h & (part - XN_NAT_HOT_WAYS));
}

__inline_fn int nat_hot_is(const struct nat_hot *e, const struct xn_ct_key *k)
{
	const __u32 *a = (const __u32 *)&e->key, *b = (const __u32 *)k; /* k may be 4-aligned on the stack */
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

__inline_fn int nat_hot_holds(const struct nat_hot *e, __u32 gen, __u32 t)
{
	return e->gen == gen && xn_before(t, e->until);
}

/* The packet's cached flow, if it holds. */
__inline_fn struct nat_hot *nat_hot_get(const struct xn_ct_key *k, __u32 gen, __u32 t)
{
	__u32 first = nat_hot_set(k);
#pragma unroll
	for (__u32 w = 0; w < XN_NAT_HOT_WAYS; w++) {
		__u32 i = first + w;
		struct nat_hot *e = bpf_map_lookup_elem(&xn_nat_hot, &i);
		if (e && nat_hot_is(e, k))
			return nat_hot_holds(e, gen, t) ? e : NULL;
	}
	return NULL;
}

/* Caches flow entry e with its FIB answer, fresh in e (fib_time), for as long
 * as that answer is (now: coarse ns, t: xn_ticks()): in the way that holds k
 * or nothing live, else in a random one (four ways: at 10k flows, keys beyond
 * four to a set are rare; two ways missed 8%). */
__inline_fn void nat_hot_put(const struct xn_ct_key *k, const struct xn_ct_entry *e, __u32 gen, __u64 now, __u32 t)
{
	__s32 left = (__s32)(e->fib_time + XN_CT_FIB_TTL - (__u32)(now >> 20)); /* in 2^20 ns */
	if (left <= 0)
		return;
	__u32 first = nat_hot_set(k);
	struct nat_hot *h = NULL;
#pragma unroll
	for (__u32 w = 0; w < XN_NAT_HOT_WAYS; w++) {
		__u32 i = first + w;
		struct nat_hot *c = bpf_map_lookup_elem(&xn_nat_hot, &i);
		if (c && (nat_hot_is(c, k) || !nat_hot_holds(c, gen, t))) {
			h = c;
			break;
		}
	}
	if (!h) {
		__u32 i = first + (bpf_get_prandom_u32() & (XN_NAT_HOT_WAYS - 1));
		h = bpf_map_lookup_elem(&xn_nat_hot, &i);
	}
	if (!h)
		return;
	h->key = *k;
	h->to_src = e->to_src;
	h->to_dst = e->to_dst;
	h->to_sport = e->to_sport;
	h->to_dport = e->to_dport;
	h->state = e->state;
	h->flags = e->flags;
	h->mtu = e->fib_mtu;
	h->ifindex = e->fib_ifindex;
	__builtin_memcpy(h->dmac, e->fib_dmac, ETH_ALEN);
	__builtin_memcpy(h->smac, e->fib_smac, ETH_ALEN);
	h->until = t + xn_ticks_in((__u64)left << 20);
	h->gen = gen;
}

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

/* Rewrites a TCP/UDP/ICMP echo packet to e's tuple. Direct writes first: tc's
 * checksum helper invalidates packet pointers. tc leaves TCP/UDP checksums to
 * the helper, which knows CHECKSUM_PARTIAL (GSO from a local stack) and
 * CHECKSUM_COMPLETE; everything else is self-compensating within its header. */
__inline_fn int nat_rewrite(struct nat_ctx *c, const enum hook h, const struct xn_ct_entry *e)
{
	const struct xn_ct_key *k = &c->key;
	struct iphdr *ip = c->ip;
	void *end = c->p.data_end;
	__u32 addr = csum_add(csum_diff32(k->src, e->to_src), csum_diff32(k->dst, e->to_dst));
	ip->saddr = e->to_src;
	ip->daddr = e->to_dst;
	ip->check = csum_update(ip->check, addr);

	if (k->proto == IPPROTO_ICMP) { /* echo: no pseudo header */
		struct icmphdr *ih = c->l4;
		if ((void *)(ih + 1) > end)
			return -XN_DROP_TRUNC_ICMP;
		ih->checksum = csum_update(ih->checksum, csum_diff16(ih->un.echo.id, e->to_sport));
		ih->un.echo.id = e->to_sport;
		return 0;
	}
	__be16 *l4 = c->l4;
	int udp = k->proto == IPPROTO_UDP;
	if ((void *)(l4 + (udp ? 4 : 10)) > end)
		return udp ? -XN_DROP_TRUNC_UDP : -XN_DROP_TRUNC_TCP;
	__u32 ports = csum_add(csum_diff16(l4[0], e->to_sport), csum_diff16(l4[1], e->to_dport));
	l4[0] = e->to_sport;
	l4[1] = e->to_dport;
	__sum16 *check = udp ? &l4[3] : &l4[8];
	if (h == HOOK_XDP) {
		*check = udp ? csum_update_udp(*check, csum_add(addr, ports)) : csum_update(*check, csum_add(addr, ports));
		return 0;
	}
	__u32 off = c->l4_off + (udp ? 6 : 16);
	__u64 mm0 = udp ? BPF_F_MARK_MANGLED_0 : 0;
	if ((k->src != e->to_src || k->dst != e->to_dst) &&
	    bpf_l4_csum_replace(c->ctx, off, 0, addr, BPF_F_PSEUDO_HDR | mm0))
		return -XN_DROP_UNKNOWN;
	if ((k->sport != e->to_sport || k->dport != e->to_dport) && bpf_l4_csum_replace(c->ctx, off, 0, ports, mm0))
		return -XN_DROP_UNKNOWN;
	return 0;
}

/* An ICMP error about flow e (the entry for its direction): the outer header
 * gets src/dst; the quoted header, our translated packet, is translated back
 * with its IP and L4 checksums, and the ICMP checksum takes every changed
 * word. All direct writes: ICMP is never CHECKSUM_PARTIAL, and each header's
 * checksum compensates its own changes, so a CHECKSUM_COMPLETE sum holds. */
__inline_fn int nat_rewrite_error(struct nat_ctx *c, const struct xn_ct_entry *e, __be32 src, __be32 dst)
{
	struct iphdr *ip = c->ip, *iip = c->iip;
	struct icmphdr *ih = c->l4;
	__u8 *l4 = c->il4;
	void *end = c->p.data_end;
	if ((void *)(ih + 1) > end || (void *)(iip + 1) > end || (void *)(l4 + 8) > end)
		return -XN_DROP_TRUNC_ICMP;
	ip->check = csum_update(ip->check, csum_add(csum_diff32(ip->saddr, src), csum_diff32(ip->daddr, dst)));
	ip->saddr = src;
	ip->daddr = dst;

	__u32 iaddr = csum_add(csum_diff32(iip->saddr, e->to_dst), csum_diff32(iip->daddr, e->to_src));
	__sum16 icheck = csum_update(iip->check, iaddr);
	__u32 d = csum_add(iaddr, csum_diff16(iip->check, icheck));
	iip->saddr = e->to_dst;
	iip->daddr = e->to_src;
	iip->check = icheck;

	__be16 *pp = (__be16 *)l4;
	if (iip->protocol == IPPROTO_ICMP) { /* a quoted echo: identifier and its checksum */
		__u32 pd = csum_diff16(pp[2], e->to_dport);
		__sum16 ck = csum_update(pp[1], pd);
		d = csum_add(d, csum_add(pd, csum_diff16(pp[1], ck)));
		pp[1] = ck;
		pp[2] = e->to_dport;
	} else {
		__u32 pd = csum_add(csum_diff16(pp[0], e->to_dport), csum_diff16(pp[1], e->to_sport));
		d = csum_add(d, pd);
		pp[0] = e->to_dport;
		pp[1] = e->to_sport;
		/* The quoted L4 checksum, where the quote has it: UDP's always, TCP's
		 * when 18 bytes or more are quoted. */
		__sum16 *ck = NULL;
		if (iip->protocol == IPPROTO_UDP)
			ck = &pp[3];
		else if (c->il4_len >= 18 && (void *)(l4 + 18) <= end)
			ck = &pp[8];
		if (ck) {
			__u32 cd = csum_add(iaddr, pd);
			__sum16 nck = iip->protocol == IPPROTO_UDP ? csum_update_udp(*ck, cd) : csum_update(*ck, cd);
			d = csum_add(d, csum_diff16(*ck, nck));
			*ck = nck;
		}
	}
	ih->checksum = csum_update(ih->checksum, d);
	return 0;
}

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
				cache_count(nat, 1);
				return nat_deliver(c, h, 0, &f, FWD_OK, &he, he.to_src, he.to_dst);
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
