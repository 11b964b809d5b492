/* The IPv4 header check, one for every program that reads IPv4 (NAT, VXLAN
 * decap): what the kernel's ip_rcv would drop is dropped, by the same
 * reasons everywhere. */
#pragma once
#include <linux/ip.h>
#include "common.h"
#include "parse.h"
#include "../include/stats.h"

/* The IPv4 header at the cursor, options included (RFC 791): version 4, a
 * header length of at least 20 bytes, a total length that covers the header
 * and fits in the l3_len bytes the packet has after its Ethernet header
 * (Ethernet padding beyond it is not IP). The header starts at the cursor's
 * position at the call (callers keep that pointer: one less stack slot than
 * an out parameter); on success the cursor is past its options. Returns 0 or
 * a negative drop reason. Options are checked for presence only: they are
 * carried unchanged, as a router that does not process them would. */
__inline_fn int ipv4_pull(struct cursor *c, __u32 l3_len)
{
	struct iphdr *ip = cursor_pull(c, sizeof(*ip));
	if (!ip)
		return -XN_DROP_TRUNC_IP;
	__u32 hl = ip->ihl * 4, tot = bpf_ntohs(ip->tot_len);
	if (ip->version != 4 || hl < sizeof(*ip) || tot < hl)
		return -XN_DROP_BAD_IP;
	if (tot > l3_len || !cursor_pull(c, hl - sizeof(*ip)))
		return -XN_DROP_TRUNC_IP;
	return 0;
}
