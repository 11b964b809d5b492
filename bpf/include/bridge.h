/* The L2 bridge's maps, shared with user space (src/objects/bridge.ts mirrors
 * these; test/bpf/layout.test.ts checks the mirror against BTF). */
#pragma once
#include <linux/types.h>

#define XN_MAX_BRIDGES 64
#define XN_MAX_PORTS 1024
#define XN_MAX_VLAN_MEMBERS 65536
#define XN_FDB_MAX 131072
#define XN_FLOOD_MAX 64 /* ports per flood domain (bridge, VLAN): the tc clone loop's bound */

/* xn_bridges: bridge id -> config. Ids are small integers the control process allocates. */
struct xn_bridge {
	__u8 mac[6];       /* frames to it go to the host (FDB entry to the host port, else XDP_PASS/TC_ACT_OK) */
	__u16 flags;
	__u32 ageing_sec;  /* learned entries older than this are ignored, then removed by the control process */
	__u32 max_learned; /* learning stops at this many learned entries (0: no limit) */
	__u32 learned;     /* learned entries: BPF adds, the control process recounts when it ages */
	char name[16];
};

/* xn_ports: ifindex -> port config. */
enum xn_port_flags {
	XN_PORT_LEARNING = 1, /* learn source MACs on this port */
	XN_PORT_HOST = 2,     /* the port behind the bridge's own host interface */
	XN_PORT_ACCESS = 4,   /* member of its PVID only, untagged: untagged frames need no VLAN lookup */
	XN_PORT_PEER = 8,     /* a veth whose peer is in another namespace: tc delivers straight into the peer */
	XN_PORT_LOCKED = 16,  /* sends only from the MAC and IPv4 addresses in xn_port_locks (anti-spoofing) */
};

struct xn_port {
	__u32 bridge;
	__u16 pvid;  /* VLAN of untagged frames; 0: untagged frames are refused (pure trunk) */
	__u16 flags; /* enum xn_port_flags */
	__u32 slot;  /* the interface's xn_if_slots slot: its counters without another hash lookup */
};

/* xn_port_locks: ifindex -> what a locked port (XN_PORT_LOCKED) may send
 * from. Looked up only for locked ports; the control process writes the entry
 * before it sets the flag and clears the flag before it deletes the entry (a
 * locked port without an entry passes nothing). */
#define XN_PORT_LOCK_IPS 8

struct xn_port_lock {
	__u8 mac[6];                 /* the only source MAC, and ARP sender MAC, allowed */
	__u16 pad;
	__be32 ip[XN_PORT_LOCK_IPS]; /* IPv4 sources and ARP sender addresses allowed; unused slots 0 */
};

/* xn_vlans: (port, VLAN) -> membership; no entry means the VLAN is not allowed on the port. */
struct xn_vlan_key {
	__u32 ifindex;
	__u16 vid;
	__u16 pad;
};

struct xn_vlan {
	__u32 untagged; /* 1: egress without a tag (access port / native VLAN), 0: tagged */
};

/* xn_fdb: (bridge, VLAN, MAC) -> where the MAC is. */
struct xn_fdb_key {
	__u32 bridge;
	__u16 vid;
	__u8 mac[6];
};

enum xn_fdb_flags {
	XN_FDB_STATIC = 1, /* never ages, never overwritten by learning */
	XN_FDB_LOCAL = 2,  /* the bridge's own MAC */
};

struct xn_fdb_entry {
	__u32 ifindex;     /* local port; for a remote MAC the VTEP's uplink (informational) */
	__be32 remote;     /* VTEP address for MACs behind the overlay (0: local); decides encapsulation */
	__u64 updated_ns;  /* CLOCK_MONOTONIC of the last learn/refresh (BPF writes the coarse clock: a tick behind) */
	__u32 flags;       /* enum xn_fdb_flags */
	__u32 ageing_sec;  /* learned: the bridge's ageing, so forwarding needs no bridge lookup */
};

/* xn_br_gen[0]: generations of the forwarding state. Known-unicast decisions
 * are cached per CPU (lib/bridge.h); a cached one holds only while both
 * numbers are what they were when it was made. */
struct xn_br_gen {
	__u64 ctl;  /* the control process writes CLOCK_MONOTONIC ns after each change to the bridge maps */
	__u64 data; /* BPF adds 1 when learning moves a MAC to another port */
};

/* xn_flood: (bridge, VLAN) -> its member ports, for flooding from tc. */
struct xn_flood_key {
	__u32 bridge;
	__u16 vid;
	__u16 pad;
};

struct xn_flood {
	__u32 count;
	__u32 ifindex[XN_FLOOD_MAX];
};

/* XDP metadata in front of a frame that XDP passes to the stack, read by the
 * tc program of the same port (attached next to XDP on ports of bridges with
 * an overlay): XN_META_LOCAL: XDP counted it and it is for the host;
 * XN_META_PUNT: XDP counted and learned it, tc must forward it (it needs a
 * clone per remote VTEP, or the kernel's neighbour resolution). */
#define XN_META_LOCAL 0x786e4c4fU
#define XN_META_PUNT 0x786e5054U

/* XDP metadata from the ingress program to the devmap egress program. */
struct xn_br_meta {
	__u32 bridge;
	__u16 vid;
	__u16 tagged; /* the frame carries an 802.1Q tag now */
};

/* xn_arp: (bridge, VLAN, IPv4) -> the MAC that answers for it. The bridge
 * replies to ARP requests for these addresses itself, out of the port the
 * request came in on, so a request for a known endpoint (local, or on
 * another host of the overlay) is never flooded. Written by one control
 * module (src/dataplane/arp.ts); the cluster agent fills it from etcd. */
#define XN_ARP_MAX 131072

struct xn_arp_key {
	__u32 bridge;
	__u16 vid;
	__u16 pad;
	__be32 ip;
};

struct xn_arp_entry {
	__u8 mac[6];
	__u16 flags; /* reserved, 0 */
};
