/* Connection tracking for NAT: one table holding both directions of every
 * translated flow, a loose TCP state machine, per-state idle timeouts, and
 * table counters. Flows are created by lib/nat.h; the control process lists
 * and garbage-collects them with the same timeouts.
 *
 * A plain hash, not an LRU: when it is full a new flow is refused and counted
 * (insert_failed), and no live flow is ever evicted for it, as nf_conntrack
 * drops new connections when full. An LRU let a flood of new flows that each
 * sent twice evict established flows sending once a second (measured:
 * docs/reliability.md). Expired flows leave when a packet finds them expired
 * and by the daemon's garbage collection (`xdpnet daemon`, `conntrack gc`). */
#pragma once
#include "common.h"
#include "loop.h"
#include "../include/nat.h"

#define NSEC_PER_SEC 1000000000ULL
#define XN_CT_REFRESH_NS NSEC_PER_SEC /* last_seen is rewritten at most once a second */
#define XN_CT_FIB_TTL 954             /* a cached FIB answer lives about a second (units of 2^20 ns) */
#define XN_EEXIST 17

#define TCP_FL_FIN 0x01
#define TCP_FL_SYN 0x02
#define TCP_FL_RST 0x04
#define TCP_FL_ACK 0x10

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_CT_MAX);
	__type(key, struct xn_ct_key);
	__type(value, struct xn_ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xn_ct_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_ct_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xn_nat_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_nat_config SEC(".maps");

__inline_fn struct xn_ct_stats *ct_stats(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&xn_ct_stats, &zero);
}

/* Per-CPU values: plain adds are safe. */
#define CT_COUNT(field, n)                               \
	do {                                             \
		struct xn_ct_stats *s_ = ct_stats();     \
		if (s_)                                  \
			s_->field += (n);                \
	} while (0)

/* The other direction's key: the reverse of this entry's translation. */
__inline_fn void ct_peer_key(const struct xn_ct_key *k, const struct xn_ct_entry *e, struct xn_ct_key *pk)
{
	*pk = (struct xn_ct_key){ .src = e->to_dst, .dst = e->to_src, .sport = e->to_dport, .dport = e->to_sport,
				  .proto = k->proto };
}

/* The other direction's entry: it undoes this one. */
__inline_fn void ct_peer_entry(const struct xn_ct_key *k, const struct xn_ct_entry *e, struct xn_ct_entry *pe)
{
	*pe = (struct xn_ct_entry){ .last_seen_ns = e->last_seen_ns, .to_src = k->dst, .to_dst = k->src,
				    .to_sport = k->dport, .to_dport = k->sport, .state = e->state,
				    .flags = e->flags ^ XN_CT_REPLY };
}

__inline_fn __u64 ct_timeout_ns(__u8 state)
{
	__u32 zero = 0, t = 0, def;
	struct xn_nat_config *c = bpf_map_lookup_elem(&xn_nat_config, &zero);
	switch (state) {
	case XN_CT_SYN_SENT: def = XN_CT_DEF_TCP_SYN_SENT; t = c ? c->tcp_syn_sent : 0; break;
	case XN_CT_SYN_RECV: def = XN_CT_DEF_TCP_SYN_RECV; t = c ? c->tcp_syn_recv : 0; break;
	case XN_CT_ESTABLISHED: def = XN_CT_DEF_TCP_ESTABLISHED; t = c ? c->tcp_established : 0; break;
	case XN_CT_FIN_WAIT: def = XN_CT_DEF_TCP_FIN_WAIT; t = c ? c->tcp_fin_wait : 0; break;
	case XN_CT_TIME_WAIT: def = XN_CT_DEF_TCP_TIME_WAIT; t = c ? c->tcp_time_wait : 0; break;
	case XN_CT_UDP: def = XN_CT_DEF_UDP; t = c ? c->udp : 0; break;
	case XN_CT_UDP_REPLIED: def = XN_CT_DEF_UDP_REPLIED; t = c ? c->udp_replied : 0; break;
	case XN_CT_ICMP: def = XN_CT_DEF_ICMP; t = c ? c->icmp : 0; break;
	default: def = XN_CT_DEF_TCP_CLOSE; t = c ? c->tcp_close : 0; break;
	}
	return (__u64)(t ? t : def) * NSEC_PER_SEC;
}

/* The state after a packet of the flow. fl holds the shared flags (FIN bits).
 * Loose on purpose, like nf_conntrack's defaults without window tracking:
 * sequence numbers are not checked and a TCP flow first seen mid-stream is
 * taken as established. */
__inline_fn __u8 ct_next(__u8 proto, __u8 s, __u8 *fl, int reply, __u8 tcp)
{
	if (proto == IPPROTO_UDP)
		return reply ? XN_CT_UDP_REPLIED : (s ? s : XN_CT_UDP);
	if (proto != IPPROTO_TCP)
		return XN_CT_ICMP;
	if (tcp & TCP_FL_RST)
		return XN_CT_CLOSE;
	if (tcp & TCP_FL_SYN) {
		if (!(tcp & TCP_FL_ACK)) {
			if (reply || (s && s < XN_CT_TIME_WAIT))
				return s; /* retransmission, or a simultaneous open: nothing new */
			*fl = 0;          /* new, or a closed connection reopened with the same tuple */
			return XN_CT_SYN_SENT;
		}
		return reply && s == XN_CT_SYN_SENT ? XN_CT_SYN_RECV : s;
	}
	if ((tcp & TCP_FL_FIN) && s != XN_CT_CLOSE) {
		*fl |= reply ? XN_CT_FIN_REPLY : XN_CT_FIN_ORIG;
		return (*fl & XN_CT_FIN_ORIG) && (*fl & XN_CT_FIN_REPLY) ? XN_CT_TIME_WAIT : XN_CT_FIN_WAIT;
	}
	if (!s || (s == XN_CT_SYN_RECV && !reply && (tcp & TCP_FL_ACK)))
		return XN_CT_ESTABLISHED;
	return s;
}

/* Whether an entry idle for over a second has outlived its state's timeout. */
__inline_fn int ct_expired(const struct xn_ct_entry *e, __u64 now)
{
	__u64 idle = now - e->last_seen_ns;
	return idle > XN_CT_REFRESH_NS && idle > ct_timeout_ns(e->state);
}

/* A packet hit entry e of key k. Advances the state and refreshes last_seen
 * in both entries of the pair; for an established flow that is a write at
 * most once a second, nothing otherwise. Recreates a peer that went missing
 * (deleted alone by a control process; tables pinned by older builds were LRUs).
 * Returns 1 when the flow had expired: both entries are gone and the caller
 * handles the packet as a new flow. */
__inline_fn int ct_hit(const struct xn_ct_key *k, struct xn_ct_entry *e, __u8 tcp, __u64 now)
{
	__u8 reply = e->flags & XN_CT_REPLY, fl = e->flags & ~XN_CT_REPLY;
	__u8 s = ct_next(k->proto, e->state, &fl, reply, tcp);
	int stale = now - e->last_seen_ns > XN_CT_REFRESH_NS;
	if (likely(!stale && s == e->state && (fl | reply) == e->flags))
		return 0;

	struct xn_ct_key pk;
	ct_peer_key(k, e, &pk);
	if (stale && ct_expired(e, now)) {
		bpf_map_delete_elem(&xn_ct, &pk);
		bpf_map_delete_elem(&xn_ct, k);
		CT_COUNT(expired, 1);
		return 1;
	}
	e->state = s;
	e->flags = fl | reply;
	if (stale)
		e->last_seen_ns = now;
	struct xn_ct_entry *pe = bpf_map_lookup_elem(&xn_ct, &pk);
	if (pe) {
		pe->state = s;
		pe->flags = fl | (pe->flags & XN_CT_REPLY);
		if (stale)
			pe->last_seen_ns = now;
	} else {
		struct xn_ct_entry n;
		ct_peer_entry(k, e, &n);
		if (!bpf_map_update_elem(&xn_ct, &pk, &n, BPF_NOEXIST))
			CT_COUNT(restored, 1);
	}
	return 0;
}

/* A flow being created: the original direction's key and entry, and the reply
 * direction's, whose dport is the translated source port being probed. */
struct ct_new {
	struct xn_ct_key key;
	struct xn_ct_entry ent;
	struct xn_ct_key rkey;
	struct xn_ct_entry rent;
	__u32 min, range; /* source ports to try: min + (offset % range) */
	__u32 first, rnd; /* offset of probe 0 (the original port when in range), and of the others */
	__u32 probes;
	long err;
};

/* How many source ports one new flow may try: probe 0 (the original port or
 * the first random one) and then every port of the largest range (65536).
 * Without bpf_loop (XN_COMPAT) the verifier walks each probe, so the search
 * stops after 256 like netfilter's, which tries 128 + 64 + 32 + 16 = 240
 * before it refuses: exhaustion may then be reported while a few ports of a
 * nearly full range are still free, and counts as port_exhausted all the same. */
#ifdef XN_COMPAT
#define XN_CT_PROBES 256
#else
#define XN_CT_PROBES 65537
#endif

/* Puts probe i's source port into n's reply key. */
__inline_fn void ct_probe_port(struct ct_new *n, __u32 i)
{
	__be16 port = bpf_htons((__u16)(n->min + (i ? n->rnd + i : n->first) % n->range));
	n->rkey.dport = port;
	if (n->key.proto == IPPROTO_ICMP)
		n->rkey.sport = port; /* the echo identifier stands for both ports */
}

/* xn_loop callback (loop.h), probe i: claims a source port by inserting the reply
 * entry with BPF_NOEXIST, which is atomic, so two CPUs never get one port.
 * A lookup first: a failing insert costs an element allocation, a lookup
 * does not. A full table ends the search (-E2BIG): counted as insert_failed. */
static long ct_probe(__u64 i, void *data)
{
	struct ct_new *n = data;
	ct_probe_port(n, i);
	n->probes = i + 1;
	n->err = bpf_map_lookup_elem(&xn_ct, &n->rkey) ? -XN_EEXIST
						       : bpf_map_update_elem(&xn_ct, &n->rkey, &n->rent, BPF_NOEXIST);
	return n->err != -XN_EEXIST; /* 1 stops the loop: claimed, or an error other than "taken" */
}

/* The source-port search: probes made << 32 | the last probe's error (0: that
 * port is claimed). Probes 1..range cover every port of the range once
 * (consecutive from a random offset), so exhaustion is reported only when the
 * range is truly used up. The price, paid only near that point: up to `range`
 * lookups for one new flow (netfilter bounds its search instead, and refuses
 * early). The compat objects stop after XN_CT_PROBES, in a global function
 * (loop.h) that the verifier checks once instead of once per caller state;
 * what it wrote into n is not used: older verifiers may not see a global
 * function's writes through its pointer argument, so the caller rebuilds its
 * state from the returned value. */
#ifdef XN_COMPAT
/* ct_search's copy of the flow under XN_COMPAT: kernels before 6.3 take a map
 * key or value only from the stack or a map value, not from a global
 * function's argument, and this global function's own stack must stay small
 * (the NAT programs' frames leave it 32 bytes on kernels before 6.8). Per CPU,
 * not pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ct_new);
} xn_ct_scratch SEC(".maps");
static const __u32 xn_ct_scratch_key = 0;
#endif

__loop_fn long ct_search(struct ct_new *n)
{
	if (!n)
		return 0;
#ifdef XN_COMPAT
	struct ct_new *s = bpf_map_lookup_elem(&xn_ct_scratch, &xn_ct_scratch_key);
	if (!s)
		return (__u32)-XN_EEXIST; /* no probe made: counted as exhaustion */
	__builtin_memcpy(s, n, sizeof(*s));
	n = s;
#endif
	xn_loop(n->range == 1 ? 1 : n->range + 1, XN_CT_PROBES, ct_probe, n);
	return (long)((__u64)n->probes << 32 | (__u32)n->err);
}

/* Creates both entries of the flow in n: n->ent has the translation except
 * the source port, chosen in [port_min, port_max] (the original one if in
 * range and free, else from a random offset, every port of the range if need be).
 * A flow whose source is not translated (snat 0) passes its own port: if its
 * reply tuple is taken, that is an insert failure, not exhaustion. Returns 0
 * or a negative drop reason. */
__inline_fn int ct_create(struct ct_new *n, __u16 port_min, __u16 port_max, int snat)
{
	__u16 orig = bpf_ntohs(n->key.sport);
	if (port_max < port_min)
		goto exhausted;
	n->min = port_min;
	n->range = (__u32)port_max - port_min + 1;
	n->first = orig >= port_min && orig <= port_max ? orig - port_min : bpf_get_prandom_u32();
	n->rnd = bpf_get_prandom_u32();
	n->err = -XN_EEXIST;
	ct_peer_key(&n->key, &n->ent, &n->rkey);
	ct_peer_entry(&n->key, &n->ent, &n->rent);
#ifdef XN_COMPAT
	__u64 res = ct_search(n); /* n's state rebuilt from the result: see ct_search */
	n->probes = res >> 32;
	n->err = (int)res;
	if (n->probes)
		ct_probe_port(n, n->probes - 1);
#else
	ct_search(n);
#endif
	__u32 taken = n->probes - (n->err != -XN_EEXIST);
	if (taken)
		CT_COUNT(port_retries, taken);
	if (n->err == -XN_EEXIST && snat)
		goto exhausted;
	if (n->err)
		goto failed;
	n->ent.to_sport = n->rkey.dport;
	n->ent.to_dport = n->rkey.sport;
	/* NOEXIST: if another CPU created the same flow meanwhile, keep its entry
	 * (this packet is dropped; the flow goes on with the winner's port). */
	if (bpf_map_update_elem(&xn_ct, &n->key, &n->ent, BPF_NOEXIST)) {
		bpf_map_delete_elem(&xn_ct, &n->rkey);
		goto failed;
	}
	CT_COUNT(created, 1);
	return 0;
exhausted:
	CT_COUNT(port_exhausted, 1);
	return -XN_DROP_NAT_PORTS;
failed:
	CT_COUNT(insert_failed, 1);
	return -XN_DROP_CT_INSERT;
}
