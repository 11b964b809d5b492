/* The L2 bridge: port and VLAN admission, MAC learning, FDB lookup. Written
 * once for XDP and tc; the entry programs only turn the decision into their
 * hook's redirect/flood. */
#pragma once
#include "common.h"
#include "ctx.h"
#include "parse.h"
#include "stats.h"
#include "port_lock.h"
#include "../include/bridge.h"

#define XN_FDB_REFRESH_NS 1000000000ULL /* learned entries are rewritten at most once a second */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_MAX_BRIDGES);
	__type(key, __u32);
	__type(value, struct xn_bridge);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_bridges SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct xn_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_MAX_VLAN_MEMBERS);
	__type(key, struct xn_vlan_key);
	__type(value, struct xn_vlan);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_vlans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_FDB_MAX);
	__type(key, struct xn_fdb_key);
	__type(value, struct xn_fdb_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_fdb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_MAX_BRIDGES * 64);
	__type(key, struct xn_flood_key);
	__type(value, struct xn_flood);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_flood SEC(".maps");

/* Every port XDP may send to, with xn_br_egress as its devmap program. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, XN_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xn_br_gen);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_br_gen SEC(".maps");

/* What a frame's cache slot is looked up by: where it came from, its tag as
 * received, its MACs; for a frame decapsulated on a VTEP's uplink also the
 * outer fields that chose the VTEP and name the sender (0 on bridge ports,
 * so the two kinds never meet). The frame's bytes, unparsed beyond that.
 * Built as four 64-bit words in registers and stored whole: a word read back
 * over narrower stores to it stalls store-to-load forwarding. */
struct br_key {
	union {
		struct {
			__u64 macs;     /* the frame's first 8 bytes: destination MAC, source MAC bytes 0-1 */
			__u32 src_lo;   /* source MAC bytes 2-5 */
			__u32 ifindex;
			__u16 tci;      /* VLAN ID of the tag as received, | 0x8000 if tagged (0: untagged) */
			__be16 vx_port; /* outer UDP destination port */
			__be32 vx_saddr;
			__be32 vx_daddr;
			__be32 vx_vni;  /* as in the VXLAN header: VNI << 8 */
		};
		__u64 w[4]; /* the same, as hashed and compared (little-endian: a field's low bits first) */
	};
};
_Static_assert(sizeof(struct br_key) == 32, "a key is four words");

/* A known-unicast decision: everything the slow path's four hash lookups
 * (port, learning, FDB, egress port) found, in one cache line. */
struct br_cached {
	struct br_key key;
	__u32 ctl_gen, data_gen; /* xn_br_gen's low halves when it was made */
	__u32 valid_until;       /* ticks: the FDB entry's expiry, or the next learning refresh if sooner */
	__u32 out;               /* egress ifindex (a remote MAC's: the uplink) */
	__u16 in_slot, out_slot; /* counters */
	__u16 vid;               /* the frame's VLAN */
	__u8 out_tag;            /* leaves tagged */
	__u8 out_peer : 1;       /* XN_PORT_PEER egress */
	__u8 in_locked : 1;      /* from a locked port: check the frame (port_lock_check) before using this */
	__u32 bridge;
	__be32 remote;           /* the VTEP a remote MAC is behind (XDP only: encapsulation from here) */
};
_Static_assert(sizeof(struct br_cached) == 64, "a cached decision is one cache line");

/* Per CPU, two-way set-associative: at most 1 MiB a CPU. With 1024 MACs in
 * 4096 entries, 6.7% of frames missed (keys beyond two to a set evict each
 * other every round); in 16384, 0.2%. */
#define XN_BR_CACHE_SIZE 16384

/* Entries a CPU (a power of two, 2 to XN_BR_CACHE_SIZE): the loader sizes the
 * cache from the expected flows and sets this to match (brCachePart in
 * src/objects/memory.ts). Frozen, the verifier sees it as a constant. */
const volatile __u32 xn_br_cache_part = XN_BR_CACHE_SIZE;

/* Each CPU owns xn_br_cache_part consecutive entries of one plain array, as
 * xn_nat_hot does (see there why not a per-CPU array, and its sizing). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XN_BR_CACHE_SIZE); /* one CPU's largest part; the loader sizes it */
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct br_cached);
	__uint(pinning, LIBBPF_PIN_BY_NAME); /* one per instance, whichever program filled it */
} xn_br_cache SEC(".maps");

enum br_action {
	BR_LOCAL = 1,    /* to the bridge itself: the host stack */
	BR_FORWARD,      /* known unicast: to one port */
	BR_FLOOD,        /* broadcast, multicast, unknown unicast */
};

struct br_frame {
	__u32 bridge;
	__u16 vid;
	__u16 tagged;  /* carries a tag now (in the data for XDP, in the skb for tc) */
	__u32 out;     /* BR_FORWARD: egress ifindex */
	__be32 remote; /* BR_FORWARD: the VTEP behind which the MAC is (0: a local port) */
	__u64 expires; /* BR_FORWARD: when the FDB entry ages out (coarse ns; ~0 for static) */
	__u32 in_slot, out_slot;
	__u16 out_tag; /* BR_FORWARD: leaves tagged (set by the entry program's egress step) */
	__u16 out_peer; /* BR_FORWARD: the egress port is a veth with its peer elsewhere (XN_PORT_PEER) */
	__u16 in_locked; /* the ingress port is locked (XN_PORT_LOCKED): its cached decisions check each frame */
};

/* Invalidates every CPU's cached decisions. */
__inline_fn void br_moved(void)
{
	__u32 zero = 0;
	struct xn_br_gen *g = bpf_map_lookup_elem(&xn_br_gen, &zero);
	if (g)
		__sync_fetch_and_add(&g->data, 1);
}

/* Learns mac as behind local port ifindex (remote 0) or behind VTEP remote
 * (ifindex: the uplink, for display). */
/* The bridge itself is looked up only here, for new or moved MACs: a known
 * MAC costs one FDB lookup (each hash lookup is ~50 ns on a small VM). */
__inline_fn void br_learn(__u32 bridge, __u16 vid, const __u8 *mac, __u32 ifindex, __be32 remote, __u64 now,
			  struct xn_if_stats *st)
{
	struct xn_fdb_key k = { .bridge = bridge, .vid = vid };
	__builtin_memcpy(k.mac, mac, 6);
	struct xn_fdb_entry *e = bpf_map_lookup_elem(&xn_fdb, &k);
	if (e) {
		if (e->flags & XN_FDB_STATIC)
			return;
		if (e->ifindex == ifindex && e->remote == remote) {
			if ((__s64)(now - e->updated_ns) > (__s64)XN_FDB_REFRESH_NS)
				e->updated_ns = now; /* keeps it from ageing; at most once a second */
			return;
		}
	}
	struct xn_bridge *br = bpf_map_lookup_elem(&xn_bridges, &bridge);
	if (!br)
		return;
	/* Never the bridge's own MAC (as Linux's bridge refuses its local
	 * addresses): a port sending from it would take the host's frames. */
	if (mac_eq(mac, br->mac))
		return;
	if (!e && br->max_learned && br->learned >= br->max_learned)
		goto refused;
	/* New or moved: replace the whole entry, so readers see old or new, never a mix. */
	struct xn_fdb_entry n = { .ifindex = ifindex, .remote = remote, .updated_ns = now, .ageing_sec = br->ageing_sec };
	if (bpf_map_update_elem(&xn_fdb, &k, &n, e ? BPF_EXIST : BPF_NOEXIST))
		goto refused; /* the FDB is full (or the entry went meanwhile) */
	if (!e)
		__sync_fetch_and_add(&br->learned, 1);
	else
		br_moved(); /* cached decisions may send to the old port */
	if (st)
		st->learned++;
	return;
refused:
	if (st)
		st->learn_refused++;
}

/* The FDB entry for (bridge, vid, mac) if it is static or not aged out. Signed:
 * user space stamps entries with the precise clock, which may be a tick ahead
 * of the coarse one BPF reads. */
__inline_fn struct xn_fdb_entry *br_fdb_find(__u32 bridge, __u16 vid, const __u8 *mac, __u64 now)
{
	struct xn_fdb_key k = { .bridge = bridge, .vid = vid };
	__builtin_memcpy(k.mac, mac, 6);
	struct xn_fdb_entry *e = bpf_map_lookup_elem(&xn_fdb, &k);
	if (e && ((e->flags & XN_FDB_STATIC) || (__s64)(now - e->updated_ns) <= (__s64)e->ageing_sec * 1000000000LL))
		return e;
	return NULL;
}

/* The bridge port behind ifindex, or NULL. */
__inline_fn struct xn_port *br_port(__u32 ifindex)
{
	return bpf_map_lookup_elem(&xn_ports, &ifindex);
}

/* The clock of learning and ageing, in the FDB's time base (ns), on slow
 * paths only: a second's precision is all they need, and the coarse clock
 * reads no timer. Cache hits go by xn_ticks(), which costs no call. */
__inline_fn __u64 br_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

/* Decides what happens to a frame received on port (p->ifindex): enum
 * br_action, or a negative drop reason. learn is 0 when an earlier hook
 * already learned from this frame (XDP handing it to tc). */
__inline_fn int br_ingress(struct pkt *p, const struct xn_port *port, struct br_frame *f, __u64 now,
			   struct xn_if_stats *st, int learn)
{
	f->bridge = port->bridge;
	f->in_slot = port->slot;

	struct cursor c = { .pos = p->data, .end = p->data_end };
	struct ethhdr *eth = cursor_pull(&c, sizeof(*eth));
	if (!eth)
		return -XN_DROP_TRUNC_ETH;

	__u16 vid = 0;
	if (p->vlan_present) {
		f->tagged = 1;
		vid = p->vlan_tci & VLAN_VID_MASK;
	} else if (eth->h_proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_hdr *vh = cursor_pull(&c, sizeof(*vh));
		if (!vh)
			return -XN_DROP_TRUNC_VLAN;
		f->tagged = 1;
		vid = bpf_ntohs(vh->tci) & VLAN_VID_MASK;
	}
	if (!vid) { /* untagged or priority-tagged: the port's PVID */
		vid = port->pvid;
		if (!vid)
			return -XN_DROP_VLAN_UNTAGGED;
	}
	f->vid = vid;
	struct xn_vlan_key vk = { .ifindex = p->ifindex, .vid = vid };
	if ((f->tagged || !(port->flags & XN_PORT_ACCESS)) && !bpf_map_lookup_elem(&xn_vlans, &vk))
		return -XN_DROP_VLAN_INGRESS;

	if (mac_is_multicast(eth->h_source) || mac_is_zero(eth->h_source))
		return -XN_DROP_SRC_MAC;
	if (learn && (port->flags & XN_PORT_LEARNING))
		br_learn(f->bridge, vid, eth->h_source, p->ifindex, 0, now, st);

	if (mac_is_multicast(eth->h_dest))
		return BR_FLOOD;
	struct xn_fdb_entry *e = br_fdb_find(f->bridge, vid, eth->h_dest, now);
	if (e) {
		if (e->ifindex == p->ifindex && !e->remote)
			return -XN_DROP_SAME_PORT;
		f->out = e->ifindex;
		f->remote = e->remote;
		f->expires = (e->flags & XN_FDB_STATIC) ? ~0ULL : e->updated_ns + (__u64)e->ageing_sec * 1000000000ULL;
		return BR_FORWARD;
	}
	struct xn_bridge *br = bpf_map_lookup_elem(&xn_bridges, &f->bridge);
	if (!br)
		return -XN_DROP_NO_BRIDGE;
	if (mac_eq(eth->h_dest, br->mac))
		return BR_LOCAL;
	return BR_FLOOD;
}

/* Whether and how a frame of this VLAN leaves port (ifindex): -1 not a
 * member, 0 untagged, 1 tagged. An access port needs no VLAN lookup. */
__inline_fn int br_egress_tagging(const struct xn_port *port, __u32 ifindex, __u16 vid)
{
	if (port->flags & XN_PORT_ACCESS)
		return vid == port->pvid ? 0 : -1;
	struct xn_vlan_key k = { .ifindex = ifindex, .vid = vid };
	struct xn_vlan *v = bpf_map_lookup_elem(&xn_vlans, &k);
	return v ? !v->untagged : -1;
}

/* ---- the forwarding cache ------------------------------------------------ */

/* Fills k's MACs and tag from the Ethernet header at eth; -1 if the frame is
 * too short to be cached (the slow path drops it with a reason). */
__inline_fn int br_key_of_eth(const struct pkt *p, const struct ethhdr *eth, struct br_key *k)
{
	k->w[0] = k->w[2] = k->w[3] = 0; /* whole before any return: no half-set key for the compiler to carry */
	k->w[1] = (__u64)p->ifindex << 32;
	if ((void *)(eth + 1) > p->data_end)
		return -1;
	__u64 tci = 0;
	if (p->vlan_present) {
		tci = 0x8000 | (p->vlan_tci & VLAN_VID_MASK);
	} else if (eth->h_proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_hdr *vh = (void *)(eth + 1);
		if ((void *)(vh + 1) > p->data_end)
			return -1;
		tci = 0x8000 | (bpf_ntohs(vh->tci) & VLAN_VID_MASK);
	}
	/* Two wide loads, not twelve byte loads: the verifier allows unaligned
	 * packet reads where the CPU does (x86, arm64). */
	k->w[0] = *(const __u64 *)eth;
	k->w[1] |= *(const __u32 *)((const __u8 *)eth + 8);
	k->w[2] = tci;
	return 0;
}

__inline_fn int br_key_of(const struct pkt *p, struct br_key *k)
{
	return br_key_of_eth(p, p->data, k);
}

__inline_fn __u32 br_key_slot(const struct br_key *k)
{
	/* this CPU's part; the set's first way (the second is +1) */
	__u32 part = xn_br_cache_part;
	return bpf_get_smp_processor_id() * part + (xn_hash(k->w[0], k->w[1], k->w[2], k->w[3]) & (part - 2));
}

__inline_fn int br_key_eq(const struct br_key *a, const struct br_key *b)
{
	return ((a->w[0] ^ b->w[0]) | (a->w[1] ^ b->w[1]) | (a->w[2] ^ b->w[2]) | (a->w[3] ^ b->w[3])) == 0;
}

/* The generations now, read before the slow path looks anything up: a change
 * made while it runs leaves what it caches already stale. */
__inline_fn struct xn_br_gen br_gen(void)
{
	__u32 zero = 0;
	struct xn_br_gen *g = bpf_map_lookup_elem(&xn_br_gen, &zero);
	struct xn_br_gen out = {};
	if (g) {
		out.ctl = g->ctl;
		out.data = g->data;
	}
	return out;
}

__inline_fn int br_cache_holds(const struct br_cached *c, const struct xn_br_gen *g, __u32 t)
{
	return c->ctl_gen == (__u32)g->ctl && c->data_gen == (__u32)g->data && xn_before(t, c->valid_until);
}

/* The cached decision for key k, if it still holds at t (xn_ticks()). */
__inline_fn struct br_cached *br_cache_get(const struct br_key *k, const struct xn_br_gen *g, __u32 t)
{
	__u32 i = br_key_slot(k);
	struct br_cached *c = bpf_map_lookup_elem(&xn_br_cache, &i);
	if (c && !br_key_eq(&c->key, k)) {
		i++;
		c = bpf_map_lookup_elem(&xn_br_cache, &i);
	}
	if (!c || !br_key_eq(&c->key, k) || !br_cache_holds(c, g, t))
		return NULL;
	return c;
}

/* Caches a known-unicast decision made at now (br_now()) and t (xn_ticks()).
 * It holds until the FDB entry would age, and at most a second: then the slow
 * path refreshes the source MAC's entry (learning) and decides again. */
__inline_fn void br_cache_put(const struct br_key *k, const struct xn_br_gen *g, __u64 now, __u32 t,
			      const struct br_frame *f)
{
	__u64 until = now + XN_FDB_REFRESH_NS;
	if (f->expires < until)
		until = f->expires;
	if (until <= now)
		return;
	/* The first way unless it holds a live decision for another key. */
	__u32 i = br_key_slot(k);
	struct br_cached *c = bpf_map_lookup_elem(&xn_br_cache, &i);
	if (c && !br_key_eq(&c->key, k) && br_cache_holds(c, g, t)) {
		i++;
		c = bpf_map_lookup_elem(&xn_br_cache, &i);
	}
	if (!c)
		return;
	c->key = *k;
	c->ctl_gen = g->ctl;
	c->data_gen = g->data;
	c->valid_until = t + xn_ticks_in(until - now);
	c->out = f->out;
	c->bridge = f->bridge;
	c->remote = f->remote;
	c->in_slot = f->in_slot;
	c->out_slot = f->out_slot;
	c->vid = f->vid;
	c->out_tag = f->out_tag;
	c->out_peer = f->out_peer;
	c->in_locked = f->in_locked;
}

/* The port lock's check of the frame in ctx. Everything from ctx: values the
 * caller holds would have to outlive the call in callee-saved registers or on
 * the stack, and xn_br_tc's has no room; a struct pkt's bounds may also be
 * stale (the uplink strips the outer headers first). */
__inline_fn int br_lock_check(void *ctx, const enum hook h)
{
	if (h == HOOK_XDP) {
		struct xdp_md *x = ctx;
		return port_lock_check((void *)(long)x->data, (void *)(long)x->data_end, x->ingress_ifindex, 0);
	}
	struct __sk_buff *skb = ctx;
	return port_lock_check((void *)(long)skb->data, (void *)(long)skb->data_end, skb->ifindex, skb->vlan_present);
}

/* 0 if a cached decision may be used for the frame in ctx, else a negative
 * drop reason: a locked port's frames are checked on every hit (the key holds
 * the MACs, not the addresses); one flag test for the others. (The slow paths
 * test XN_PORT_LOCKED and call br_lock_check before br_ingress, so a refused
 * frame teaches the FDB nothing.) */
__inline_fn int br_cached_admit(void *ctx, const enum hook h, const struct br_cached *c)
{
	if (likely(!c->in_locked))
		return 0;
	return br_lock_check(ctx, h);
}

/* tc's known-unicast send. Into a veth whose peer is in another namespace
 * (a container's), bpf_redirect_peer hands the frame to the peer's ingress
 * directly: no egress pass on the host side and no second trip through the
 * backlog, as the kernel's own veth forwarding takes. */
__inline_fn long br_tc_send(__u32 ifindex, int peer)
{
	return peer ? bpf_redirect_peer(ifindex, 0) : bpf_redirect(ifindex, 0);
}
