/* NAT's parser: the packet's tuple (or, for an ICMP error, the tuple of the
 * flow it is about), and the drop reason of a malformed one. Reads only. */
#pragma once
#include <linux/in.h>
#include "common.h"
#include "ctx.h"
#include "parse.h"
#include "ipv4.h"
#include "../include/nat.h"

/* The ICMP header, declared here: <linux/icmp.h> pulls in <linux/if.h> and
 * through it glibc's <sys/socket.h>, which for the bpf target wants the
 * 32-bit glibc stubs (libc6-dev-i386) that a plain Debian machine lacks. */
struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	union {
		struct { __be16 id; __be16 sequence; } echo;
		__be32 gateway;
	} un;
};
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

/* Headers the parser may need in the linear part: Ethernet, IP with options,
 * ICMP, the quoted IP with options, and the quoted TCP up to its checksum. */
#define NAT_PULL_LEN (ETH_HLEN + 60 + 8 + 60 + 18)

/* What the parser found. A return value rather than a flag in struct nat_ctx:
 * the verifier tracks a register exactly, a byte on the stack maybe not. */
enum { NAT_L4 = 0, NAT_ICMP_ERR = 1, NAT_FRAG_LATER = 2, NAT_SKIP = 3 };

struct nat_ctx {
	struct pkt p;
	void *ctx;          /* struct xdp_md or struct __sk_buff */
	struct iphdr *ip;
	void *l4;           /* the L4 header (ICMP error: the ICMP header) */
	__u32 l4_off;       /* its offset, for tc's checksum helper */
	struct iphdr *iip;  /* ICMP error: the quoted IP header */
	__u8 *il4;          /* and the quoted L4 header, 8 bytes checked */
	__u32 il4_len;      /* quoted L4 bytes the outer length declares */
	struct xn_ct_key key; /* the packet's tuple; ICMP error: the tuple of the flow's packets it answers */
	__u8 tcp;           /* TCP flags */
	__u8 frag;          /* the first fragment of a datagram */
};

/* An ICMP error quotes a packet of the flow as it left us (translated), going
 * the other way: the entry that translates the error is the reverse's. */
__inline_fn int nat_parse_quote(struct nat_ctx *c, struct cursor *cur, __u32 room)
{
	struct iphdr *iip = room >= sizeof(*iip) ? cursor_pull(cur, sizeof(*iip)) : NULL;
	if (!iip)
		return -XN_DROP_TRUNC_ICMP;
	__u32 hl = iip->ihl * 4;
	if (iip->version != 4 || hl < sizeof(*iip))
		return -XN_DROP_BAD_ICMP_ERR;
	if (room < hl + 8 || !cursor_pull(cur, hl - sizeof(*iip)))
		return -XN_DROP_TRUNC_ICMP;
	__u8 *l4 = cursor_pull(cur, 8);
	if (!l4)
		return -XN_DROP_TRUNC_ICMP;
	/* A non-first fragment has no ports; an error not sent to the quoted
	 * packet's source is not about a packet we sent. */
	if ((iip->frag_off & bpf_htons(IP_OFFSET)) || iip->saddr != c->ip->daddr)
		return NAT_SKIP;
	__be16 *pp = (__be16 *)l4;
	c->key = (struct xn_ct_key){ .src = iip->daddr, .dst = iip->saddr, .sport = pp[1], .dport = pp[0],
				     .proto = iip->protocol };
	if (iip->protocol == IPPROTO_ICMP) {
		if (l4[0] != ICMP_ECHO && l4[0] != ICMP_ECHOREPLY)
			return NAT_SKIP; /* an error about an error: never answered */
		c->key.sport = c->key.dport = pp[2];
	} else if (iip->protocol != IPPROTO_TCP && iip->protocol != IPPROTO_UDP) {
		return NAT_SKIP;
	}
	c->iip = iip;
	c->il4 = l4;
	c->il4_len = room - hl;
	return NAT_ICMP_ERR;
}

/* Returns NAT_L4 or NAT_ICMP_ERR (c filled in), NAT_FRAG_LATER (addresses
 * only), NAT_SKIP, or a negative drop reason. The IP header is checked by
 * ipv4_pull, as VXLAN decap checks it; L4 lengths against what the IP header
 * declares, not only the frame (Ethernet padding is not a header). */
__inline_fn int nat_parse(struct nat_ctx *c)
{
	struct cursor cur = { .pos = c->p.data, .end = c->p.data_end };
	struct ethhdr *eth = cursor_pull(&cur, sizeof(*eth));
	if (!eth)
		return -XN_DROP_TRUNC_ETH;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || c->p.vlan_present)
		return NAT_SKIP; /* NAT works on untagged IPv4; VLAN subinterfaces have their own hooks */
	struct iphdr *ip = cur.pos;
	int r = ipv4_pull(&cur, c->p.len - ETH_HLEN);
	if (r)
		return r;
	__u32 hl = ip->ihl * 4, tot = bpf_ntohs(ip->tot_len);
	c->ip = ip;
	c->key = (struct xn_ct_key){ .src = ip->saddr, .dst = ip->daddr, .proto = ip->protocol };
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_ICMP)
		return NAT_SKIP;
	__u16 fo = bpf_ntohs(ip->frag_off);
	if (fo & IP_OFFSET)
		return NAT_FRAG_LATER; /* no L4 header */
	c->frag = !!(fo & IP_MF);
	c->l4 = cur.pos;
	c->l4_off = ETH_HLEN + hl;
	__u32 room = tot - hl; /* L4 bytes the IP header declares */
	if (ip->protocol == IPPROTO_TCP) {
		__u8 *th = room >= 20 ? cursor_pull(&cur, 20) : NULL;
		if (!th)
			return -XN_DROP_TRUNC_TCP;
		c->key.sport = ((__be16 *)th)[0];
		c->key.dport = ((__be16 *)th)[1];
		c->tcp = th[13];
		return NAT_L4;
	}
	if (ip->protocol == IPPROTO_UDP) {
		__be16 *uh = room >= 8 ? cursor_pull(&cur, 8) : NULL;
		if (!uh)
			return -XN_DROP_TRUNC_UDP;
		c->key.sport = uh[0];
		c->key.dport = uh[1];
		return NAT_L4;
	}
	struct icmphdr *ih = room >= sizeof(*ih) ? cursor_pull(&cur, sizeof(*ih)) : NULL;
	if (!ih)
		return -XN_DROP_TRUNC_ICMP;
	if (ih->type == ICMP_ECHO || ih->type == ICMP_ECHOREPLY) {
		c->key.sport = c->key.dport = ih->un.echo.id;
		return NAT_L4;
	}
	if (ih->type == ICMP_DEST_UNREACH || ih->type == ICMP_TIME_EXCEEDED || ih->type == ICMP_PARAMETERPROB)
		return nat_parse_quote(c, &cur, room - sizeof(*ih));
	return NAT_SKIP;
}
