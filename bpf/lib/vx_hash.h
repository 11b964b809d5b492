/* Flow entropy for the outer UDP source port (RFC 7348 5.: spread flows
 * over ECMP paths the way the kernel's vxlan device does). */
#pragma once
#include "vx_maps.h"

/* ---- flow entropy ------------------------------------------------------ */

/* The kernel's jhash_3words (include/linux/jhash.h). */
__inline_fn __u32 rol32(__u32 w, unsigned int s)
{
	return (w << s) | (w >> (32 - s));
}

__inline_fn __u32 jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	initval += 0xdeadbeef + (3 << 2);
	a += initval;
	b += initval;
	c += initval;
	c ^= b; c -= rol32(b, 14);
	a ^= c; a -= rol32(c, 11);
	b ^= a; b -= rol32(a, 25);
	c ^= b; c -= rol32(b, 16);
	a ^= c; a -= rol32(c, 4);
	b ^= a; b -= rol32(a, 14);
	c ^= b; c -= rol32(b, 24);
	return c;
}

/* Outer UDP source port from a flow hash, spread over 49152..65535 the way
 * the kernel's udp_flow_src_port() spreads it over its range. */
__inline_fn __be16 vx_sport(__u32 hash)
{
	hash ^= hash << 16;
	return bpf_htons((__u16)((((__u64)hash * XN_VX_SPORT_RANGE) >> 32) + XN_VX_SPORT_MIN));
}

/* XDP has no skb hash: hash the inner flow (addresses, protocol and ports;
 * the MACs for non-IP frames), words as they lie in the packet. */
__inline_fn __u32 vx_flow_hash(void *data, void *end, int tagged)
{
	struct cursor c = { .pos = data, .end = end };
	__u32 *eth = cursor_pull(&c, ETH_HLEN);
	if (!eth)
		return 0;
	__be16 proto = ((struct ethhdr *)eth)->h_proto;
	if (tagged) {
		struct vlan_hdr *vh = cursor_pull(&c, sizeof(*vh));
		if (!vh)
			return 0;
		proto = vh->proto;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cursor_pull(&c, sizeof(*ip));
		if (ip) {
			__u32 ports = 0;
			__u32 hlen = ip->ihl * 4;
			if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) &&
			    !(ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) && hlen >= sizeof(*ip)) {
				__u32 *l4 = (void *)ip + hlen;
				if ((void *)(l4 + 1) <= end)
					ports = *l4;
			}
			return jhash_3words(ip->saddr, ip->daddr, ports, ip->protocol);
		}
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cursor_pull(&c, sizeof(*ip6));
		if (ip6) {
			__u32 ports = 0;
			if (ip6->nexthdr == IPPROTO_TCP || ip6->nexthdr == IPPROTO_UDP) {
				__u32 *l4 = cursor_pull(&c, 4);
				if (l4)
					ports = *l4;
			}
			__u32 *s = ip6->saddr.in6_u.u6_addr32, *d = ip6->daddr.in6_u.u6_addr32;
			return jhash_3words(s[0] ^ s[1] ^ s[2] ^ s[3], d[0] ^ d[1] ^ d[2] ^ d[3], ports, ip6->nexthdr);
		}
	}
	return jhash_3words(eth[0], eth[1], eth[2], proto);
}
