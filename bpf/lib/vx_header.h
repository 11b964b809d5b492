/* Building the outer Ethernet, IPv4, UDP and VXLAN headers. */
#pragma once
#include "vx_route.h"

/* The fillers take the whole struct vx_outer so clang knows every field is
 * only 2-byte aligned (packet data after Ethernet; stack accesses must be
 * aligned to their size). */
__inline_fn void vx_fill_eth(struct vx_outer *o, const struct bpf_fib_lookup *fib)
{
	__builtin_memcpy(o->eth.h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(o->eth.h_source, fib->smac, ETH_ALEN);
	o->eth.h_proto = bpf_htons(ETH_P_IP);
}

/* IPv4 without options, TTL 64, DF (the underlay never fragments), id 0
 * (allowed for atomic datagrams, RFC 6864), with its header checksum. */
__inline_fn void vx_fill_ip(struct vx_outer *o, __be32 saddr, __be32 daddr, __u32 inner_len)
{
	__u16 *w = (void *)o + ETH_HLEN;
	w[0] = bpf_htons(0x4500); /* version 4, 5 words, TOS 0 */
	o->ip.tot_len = bpf_htons(inner_len + XN_VX_HLEN - ETH_HLEN);
	o->ip.id = 0;
	o->ip.frag_off = bpf_htons(IP_DF);
	o->ip.ttl = 64;
	o->ip.protocol = IPPROTO_UDP;
	o->ip.check = 0;
	o->ip.saddr = saddr;
	o->ip.daddr = daddr;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	o->ip.check = (__u16)~sum;
}

/* UDP (checksum 0, as RFC 7348 allows for IPv4) and VXLAN with the I flag. */
__inline_fn void vx_fill_udp(struct vx_outer *o, __be16 sport, __be16 dport, __u32 inner_len, __u32 vni)
{
	o->udp.source = sport;
	o->udp.dest = dport;
	o->udp.len = bpf_htons(inner_len + sizeof(struct udphdr) + sizeof(struct vx_hdr));
	o->udp.check = 0;
	o->vx.flags = VX_FLAG_I;
	o->vx.vni = bpf_htonl(vni << 8);
}
