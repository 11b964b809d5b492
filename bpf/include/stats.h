/* Shared with user space: src/objects/codecs.ts mirrors these, and a test
 * checks the mirror against the BTF of the built objects. */
#pragma once
#include <linux/types.h>

#define XN_MAX_IFACES 1024

/* Per interface, per CPU. */
struct xn_if_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets; /* frames sent out of this interface by xdpnet */
	__u64 tx_bytes;
	__u64 flooded;    /* frames received here that were flooded */
	__u64 learned;    /* MACs learned (new or moved) on this port */
	__u64 dropped;    /* frames received here and dropped (by reason: xn_drops) */
};

/* Drop reasons; names live in src/objects/codecs.ts (DROP_REASONS). */
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
	XN_DROP_MAX = 32,
};
