/* NAT and connection tracking maps, shared with user space (src/objects/nat.ts
 * mirrors these; test/bpf/layout.test.ts checks the mirror against BTF). */
#pragma once
#include <linux/types.h>

#define XN_CT_MAX 262144 /* conntrack entries, two per flow; the control process may resize before load */
#define XN_SNAT_RULES_MAX 1024
#define XN_PORTMAPS_MAX 4096
#define XN_NAT_ADDRS_MAX 256
#define XN_NAT_PORT_MIN 1024  /* hairpin source ports (no rule gives a range) */
#define XN_NAT_PORT_MAX 65535

/* xn_ct: one entry per direction of a translated flow, keyed by the tuple the
 * packet arrives with. The entry holds the tuple the packet leaves with; the
 * other direction's key is the reverse of that (to_dst, to_src, to_dport,
 * to_sport), so each entry names its peer without a stored link that could
 * disagree with the translation. */
struct xn_ct_key {
	__be32 src;
	__be32 dst;
	__be16 sport; /* ICMP echo: the identifier, in both ports, so reversing keeps the shape */
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

enum xn_ct_state {
	XN_CT_NONE = 0,
	XN_CT_SYN_SENT = 1,    /* TCP: SYN seen */
	XN_CT_SYN_RECV = 2,    /* SYN-ACK seen in reply */
	XN_CT_ESTABLISHED = 3, /* the SYN-ACK acknowledged (or the flow picked up mid-stream) */
	XN_CT_FIN_WAIT = 4,    /* one side sent FIN */
	XN_CT_TIME_WAIT = 5,   /* both sides sent FIN */
	XN_CT_CLOSE = 6,       /* RST seen */
	XN_CT_UDP = 7,         /* UDP, original direction only */
	XN_CT_UDP_REPLIED = 8, /* UDP, a reply seen */
	XN_CT_ICMP = 9,        /* ICMP echo */
};

enum xn_ct_flags {
	XN_CT_REPLY = 1,     /* this entry is the reply direction (fixed per entry) */
	XN_CT_FIN_ORIG = 2,  /* the original side sent FIN (kept equal in both entries) */
	XN_CT_FIN_REPLY = 4, /* the reply side sent FIN */
};

struct xn_ct_entry {
	__u64 last_seen_ns; /* bpf_ktime_get_coarse_ns() of the flow's last packet (either direction), written in both
			     * entries at most once a second */
	__be32 to_src;      /* the packet's tuple after translation */
	__be32 to_dst;
	__be16 to_sport;
	__be16 to_dport;
	__u8 state;         /* enum xn_ct_state, equal in both entries */
	__u8 flags;         /* enum xn_ct_flags */
	__u16 pad;
	/* The datapath's cache of the FIB's answer for this direction's translated
	 * packets (a bpf_fib_lookup per packet is the costliest step): egress,
	 * MACs and MTU, looked up again when older than XN_CT_FIB_TTL_NS. */
	__u32 fib_ifindex;  /* 0: nothing cached */
	__u32 fib_time;     /* bpf_ktime_get_coarse_ns() >> 20 (about ms) of the lookup */
	__u8 fib_dmac[6];
	__u8 fib_smac[6];
	__u16 fib_mtu;
	__u16 pad2;
};

/* xn_ct_stats[0], per CPU. */
struct xn_ct_stats {
	__u64 created;        /* flows created (two entries each) */
	__u64 insert_failed;  /* a flow could not be created: table error, or its reply tuple was taken */
	__u64 port_exhausted; /* no free source port in the rule's range */
	__u64 port_retries;   /* candidate ports found taken before one was free */
	__u64 expired;        /* flows found expired by a packet, and removed */
	__u64 restored;       /* entries recreated after the LRU evicted one of a pair */
};

/* xn_nat_config[0]: idle timeouts in seconds by state; 0 takes the default
 * (nf_conntrack's). The datapath reads them only for entries idle over a
 * second; the control process uses the same values to garbage-collect. */
struct xn_nat_config {
	__u32 tcp_syn_sent;
	__u32 tcp_syn_recv;
	__u32 tcp_established;
	__u32 tcp_fin_wait;
	__u32 tcp_time_wait;
	__u32 tcp_close;
	__u32 udp;
	__u32 udp_replied;
	__u32 icmp;
};

#define XN_CT_DEF_TCP_SYN_SENT 120
#define XN_CT_DEF_TCP_SYN_RECV 60
#define XN_CT_DEF_TCP_ESTABLISHED 432000
#define XN_CT_DEF_TCP_FIN_WAIT 120
#define XN_CT_DEF_TCP_TIME_WAIT 120
#define XN_CT_DEF_TCP_CLOSE 10
#define XN_CT_DEF_UDP 30
#define XN_CT_DEF_UDP_REPLIED 120
#define XN_CT_DEF_ICMP 30

/* xn_snat (LPM trie): (egress interface, source prefix) -> source translation.
 * The interface is matched exactly: prefixlen counts its 32 bits. */
struct xn_snat_key {
	__u32 prefixlen; /* 32 + source prefix length */
	__u32 ifindex;   /* egress interface, as the FIB says */
	__be32 src;
};

enum xn_snat_flags {
	XN_SNAT_MASQUERADE = 1, /* the address is the interface's (the control process keeps it current) */
};

struct xn_snat_rule {
	__be32 addr_min; /* translated source addresses (inclusive); a source always gets the same one */
	__be32 addr_max;
	__u16 port_min;  /* translated source ports, host order (inclusive); the original port is kept if in range and
			  * free. TCP and UDP: ICMP echo identifiers use 0-65535 */
	__u16 port_max;
	__u32 flags;     /* enum xn_snat_flags */
};

/* xn_portmap: (ingress interface or 0 for any, protocol, host port) -> where
 * to. Applies only to packets to one of the host's addresses (xn_nat_addrs). */
struct xn_portmap_key {
	__u32 ifindex;
	__be16 port;
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

struct xn_portmap {
	__be32 to_addr;
	__be16 to_port;
	__u16 pad;
};

/* xn_nat_addrs: the host's own addresses -> the interface holding them
 * (informational). Filled by the control process. */
