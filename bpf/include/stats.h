/* Shared with user space: src/objects/codecs.ts mirrors these, and a test
 * checks the mirror against the BTF of the built objects. */
#pragma once
#include <linux/types.h>

#define XN_MAX_IFACES 1024

/* xn_if_slots: ifindex -> slot, the interface's index into the per-CPU
 * xn_if_stats array (array lookups are inlined; a hash lookup costs a call).
 * The control process assigns slots 1..XN_MAX_IFACES-1 when it attaches a
 * program; 0 means none. */

/* Per interface, per CPU. */
struct xn_if_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets; /* frames sent out of this interface by xdpnet */
	__u64 tx_bytes;
	__u64 flooded;    /* frames received here that were flooded */
	__u64 learned;    /* MACs learned (new or moved) on this port */
	__u64 dropped;    /* frames received here and dropped (by reason: xn_drops) */
	__u64 arp_replied; /* ARP requests received here that the bridge answered itself (xn_arp) */
	__u64 learn_refused; /* source MACs not learned: the bridge at --max-learned, or the FDB full (a MAC that
			      * keeps sending is tried again at most once a second per destination) */
};

/* Drop reasons; names live in src/objects/stats.ts (DROP_REASONS). */
enum xn_drop_reason {
	XN_DROP_UNKNOWN = 1,
	XN_DROP_TRUNC_ETH = 2,
	XN_DROP_TRUNC_VLAN = 3,
	XN_DROP_TRUNC_IP = 4,
	XN_DROP_BAD_IP = 5,
	XN_DROP_SRC_MAC = 6,       /* multicast or zero source MAC */
	XN_DROP_VLAN_UNTAGGED = 7, /* untagged frame on a port without a PVID */
	XN_DROP_VLAN_INGRESS = 8,  /* VLAN not allowed on the ingress port */
	XN_DROP_VLAN_EGRESS = 9,   /* VLAN not allowed on the egress port */
	XN_DROP_SAME_PORT = 10,    /* destination is behind the ingress port */
	XN_DROP_NO_BRIDGE = 11,    /* port of a bridge that no longer exists */
	XN_DROP_VLAN_OP = 12,      /* pushing or popping a tag failed */
	XN_DROP_TRUNC_TCP = 13,    /* IP payload shorter than a TCP header */
	XN_DROP_TRUNC_UDP = 14,
	XN_DROP_TRUNC_ICMP = 15,   /* ICMP header, or the header an ICMP error quotes, cut short */
	XN_DROP_BAD_ICMP_ERR = 16, /* an ICMP error quoting something that is not an IPv4 header */
	XN_DROP_NAT_FRAG = 17,     /* a fragment of a flow that needs translation (fragments are not translated) */
	XN_DROP_NAT_PORTS = 18,    /* no free source port in the SNAT rule's range */
	XN_DROP_CT_INSERT = 19,    /* a conntrack entry could not be created */
	XN_DROP_NAT_NO_FWD = 20,   /* translated, but neither xdpnet nor the kernel may forward it (no neighbour
				    * in XDP, too big without DF) */
	/* 24..31: the VXLAN overlay */
	XN_DROP_VX_TRUNC = 24,     /* UDP to a VXLAN port of ours too short for the VXLAN header and an inner Ethernet header
				    * (at tc: an inner frame under 34 bytes, which bpf_skb_adjust_room cannot leave) */
	XN_DROP_VX_FLAGS = 25,     /* VXLAN header without the I flag, or with reserved bits set (the kernel drops these too) */
	XN_DROP_VX_VNI = 26,       /* VNI with no VTEP here (decap), or a frame for a remote MAC on a VLAN without one (encap) */
	XN_DROP_VX_VTEP = 27,      /* sender is not a peer of the VNI and the VTEP does not learn */
	XN_DROP_VX_TOO_BIG = 28,   /* encapsulated, it would exceed the route's MTU: never fragmented */
	XN_DROP_VX_NO_ROUTE = 29,  /* no usable route to the remote VTEP */
	XN_DROP_VX_NO_NEIGH = 30,  /* next hop to the remote VTEP unresolved where the kernel cannot resolve it for us */
	XN_DROP_VX_ENCAP = 31,     /* growing the frame for the outer headers, or writing a flood copy's, failed */
	XN_DROP_REDIRECT = 32,     /* handed on by an XDP redirect, then refused by the kernel (target without XDP/GRO, gone) */
	/* 33..36: a locked port (XN_PORT_LOCKED) sending from what is not its own */
	XN_DROP_LOCK_MAC = 33,     /* source MAC is not the port's */
	XN_DROP_LOCK_ARP = 34,     /* ARP whose sender MAC or IPv4 address is not the port's (or not Ethernet/IPv4 ARP) */
	XN_DROP_LOCK_IP = 35,      /* IPv4 whose source address is not one of the port's */
	XN_DROP_LOCK_PROTO = 36,   /* neither IPv4 nor ARP (IPv6 included: a lock lists IPv4 addresses only) */
	XN_DROP_COPY_REFUSED = 37, /* a copy of a flood, to a member port or a remote VTEP, that bpf_clone_redirect could not
				    * hand on (the port gone, down or without carrier): counted per copy under the ingress
				    * interface, but not in its `dropped`, which counts frames (the frame was flooded) */
	XN_DROP_MAX = 38,
};

/* xn_drops key: drops are counted per receiving interface and reason. */
struct xn_drop_key {
	__u32 ifindex;
	enum xn_drop_reason reason;
};

/* Lookups of the datapath's caches, per CPU (xn_cache_stats, one entry). A
 * hit: the cached answer was used; a miss: the slow path ran instead (nothing
 * cached, stale, or not usable for this frame).
 * bridge: the bridge's decision cache (xn_br_cache), XDP and tc;
 * vx_nh: the XDP encap's next hop of each remote VTEP (xn_vx_nh);
 * nat: NAT's per-CPU copy of steady flows at XDP (xn_nat_hot). */
struct xn_cache_stats {
	__u64 bridge_hit;
	__u64 bridge_miss;
	__u64 vx_nh_hit;
	__u64 vx_nh_miss;
	__u64 nat_hit;
	__u64 nat_miss;
};
