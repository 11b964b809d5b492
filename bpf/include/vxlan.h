/* The VXLAN overlay's maps (RFC 7348), shared with user space:
 * src/objects/bridge.ts mirrors these and test/bpf/layout.test.ts checks the
 * mirror against BTF. A VTEP joins one (bridge, VLAN) flood domain to one VNI;
 * the inner frames it carries are untagged. */
#pragma once
#include <linux/types.h>

#define XN_MAX_VTEPS 4096       /* VNIs per instance */
#define XN_VX_REMOTES_MAX 64    /* BUM replication list per VNI: the tc clone loop's bound */
#define XN_VX_PEERS_MAX 65536
#define XN_VX_HLEN 50           /* outer Ethernet + IPv4 + UDP + VXLAN */
#define XN_VX_SPORT_MIN 49152   /* outer UDP source ports: 49152..65535 (RFC 7348, 5.) */
#define XN_VX_SPORT_RANGE 16384

enum xn_vtep_flags {
	XN_VTEP_LEARNING = 1, /* learn inner source MACs against the sender VTEP, accept any sender */
};

/* xn_vteps: VNI (1..16777215) -> its VTEP. The source of truth for a VNI; the
 * two index maps below are derived from it by the control process. */
struct xn_vtep {
	__u32 bridge;
	__u16 vid;     /* the bridge VLAN it carries */
	__u16 flags;   /* enum xn_vtep_flags */
	__be32 local;  /* outer source address; decap accepts only packets to it */
	__u32 ifindex; /* uplink: outer packets are routed out of it (like `dev` of a vxlan device) */
	__be16 port;   /* UDP destination port (4789, 8472, ...) */
	__u16 pad;
};

/* xn_vx_vlans: (bridge, VLAN) -> VNI, for encapsulation. Key: struct
 * xn_flood_key; value: __u32 VNI. */

/* xn_vx_ports: the (local address, UDP port) pairs of all VTEPs -> how many
 * VTEPs use it. Only read to tell broken VXLAN for us (dropped and counted)
 * from other UDP traffic (passed to the stack). */
struct xn_vx_port_key {
	__be32 local;
	__be16 port;
	__u16 pad;
};

/* xn_vx_remotes: VNI -> remote VTEPs that get a copy of every broadcast,
 * multicast and unknown-unicast frame (head-end replication). */
struct xn_vx_remotes {
	__u32 count;
	__be32 addr[XN_VX_REMOTES_MAX];
};

/* xn_vx_peers: (VNI, remote VTEP) -> 1. With learning off, decap accepts only
 * senders listed here: every remote of xn_vx_remotes and every VTEP a static
 * FDB entry of the VNI points at. */
struct xn_vx_peer_key {
	__u32 vni;
	__be32 addr;
};
