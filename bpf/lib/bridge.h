/* The L2 bridge: port and VLAN admission, MAC learning, FDB lookup. Written
 * once for XDP and tc; the entry programs only turn the decision into their
 * hook's redirect/flood. */
#pragma once
#include "common.h"
#include "ctx.h"
#include "parse.h"
#include "stats.h"
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
};

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
	if (!br || (!e && br->max_learned && br->learned >= br->max_learned))
		return;
	/* New or moved: replace the whole entry, so readers see old or new, never a mix. */
	struct xn_fdb_entry n = { .ifindex = ifindex, .remote = remote, .updated_ns = now, .ageing_sec = br->ageing_sec };
	if (bpf_map_update_elem(&xn_fdb, &k, &n, e ? BPF_EXIST : BPF_NOEXIST))
		return;
	if (!e)
		__sync_fetch_and_add(&br->learned, 1);
	if (st)
		st->learned++;
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

/* The clock of learning and ageing: a second's precision is all they need, and
 * the coarse clock costs no timer read. */
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
