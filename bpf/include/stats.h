/* Shared with user space: src/objects/codecs.ts mirrors these, and a test
 * checks the mirror against the BTF of the built objects. */
#pragma once
#include <linux/types.h>

#define XN_MAX_IFACES 1024

struct xn_if_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
};

/* Drop reasons; names live in src/objects/codecs.ts (DROP_REASONS). */
enum xn_drop_reason {
	XN_DROP_UNKNOWN = 1,
	XN_DROP_TRUNC_ETH = 2,
	XN_DROP_TRUNC_VLAN = 3,
	XN_DROP_TRUNC_IP = 4,
	XN_DROP_BAD_IP = 5,
	XN_DROP_MAX = 32,
};
