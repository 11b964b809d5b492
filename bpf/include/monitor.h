/* The packet monitor's events and switch, shared with user space
 * (src/objects/monitor.ts mirrors them; the layout test checks the mirror). */
#pragma once
#include <linux/types.h>

#define XN_EV_CAP 128 /* bytes of the frame an event carries */

enum xn_ev_type {
	XN_EV_DROP = 1,    /* info: enum xn_drop_reason */
	XN_EV_FORWARD = 2, /* known unicast sent to out_ifindex */
	XN_EV_FLOOD = 3,   /* flooded to the frame's flood domain */
	XN_EV_ENCAP = 4,   /* VXLAN-encapsulated; info: VNI */
	XN_EV_DECAP = 5,   /* VXLAN-decapsulated; info: VNI */
	XN_EV_NAT = 6,     /* translated (data: the frame after translation) */
};

/* xn_event.hook: where the event was seen (the first two are enum hook's). */
enum xn_ev_hook {
	XN_EV_HOOK_XDP = 0,
	XN_EV_HOOK_TC = 1,
	XN_EV_HOOK_KERNEL = 2, /* the kernel refused a frame xdpnet handed on (observe.bpf.c) */
};

/* xn_mon.flags: what the attached monitors want. 0 (no monitor) costs the
 * datapath one load and a branch per event site. */
#define XN_MON_DROPS 1
#define XN_MON_TRACE 2

/* The monitor switch: a global in a section of its own (".data.xn_mon", a
 * one-entry array map libbpf pins as xn_mon in the instance, shared by every
 * object), so the datapath reads it with a single load. */
struct xn_mon_cfg {
	__u32 flags;
	__u32 sample; /* trace: one event in sample + 1 (a power of two minus one) */
};

struct xn_event {
	__u64 ts_ns;       /* CLOCK_MONOTONIC */
	__u32 ifindex;     /* received on */
	__u32 out_ifindex; /* trace: sent to (0: many, or the stack) */
	__u32 len;         /* the whole frame's length */
	__u32 info;        /* drop: reason; encap/decap: VNI */
	__u16 type;        /* enum xn_ev_type */
	__u8 hook;         /* 0 XDP, 1 tc, 2 the kernel (after xdpnet handed the frame on) */
	__u8 cap_len;      /* bytes in data */
	__u8 data[XN_EV_CAP];
	__u16 vlan_tci;     /* tc: the tag the kernel took out of the data (vlan_present) */
	__u16 vlan_present;
};
