/* Rewriting a NAT packet to its flow's tuple: TCP, UDP, ICMP echo, and ICMP
 * errors with the packet they quote; checksums kept valid. */
#pragma once
#include "nat_parse.h"
#include "csum.h"

/* Rewrites a TCP/UDP/ICMP echo packet to e's tuple. Direct writes first: tc's
 * checksum helper invalidates packet pointers. tc leaves TCP/UDP checksums to
 * the helper, which knows CHECKSUM_PARTIAL (GSO from a local stack) and
 * CHECKSUM_COMPLETE; everything else is self-compensating within its header. */
__inline_fn int nat_rewrite(struct nat_ctx *c, const enum hook h, const struct xn_ct_entry *e)
{
	const struct xn_ct_key *k = &c->key;
	struct iphdr *ip = c->ip;
	void *end = c->p.data_end;
	__u32 addr = csum_add(csum_diff32(k->src, e->to_src), csum_diff32(k->dst, e->to_dst));
	ip->saddr = e->to_src;
	ip->daddr = e->to_dst;
	ip->check = csum_update(ip->check, addr);

	if (k->proto == IPPROTO_ICMP) { /* echo: no pseudo header */
		struct icmphdr *ih = c->l4;
		if ((void *)(ih + 1) > end)
			return -XN_DROP_TRUNC_ICMP;
		ih->checksum = csum_update(ih->checksum, csum_diff16(ih->un.echo.id, e->to_sport));
		ih->un.echo.id = e->to_sport;
		return 0;
	}
	__be16 *l4 = c->l4;
	int udp = k->proto == IPPROTO_UDP;
	if ((void *)(l4 + (udp ? 4 : 10)) > end)
		return udp ? -XN_DROP_TRUNC_UDP : -XN_DROP_TRUNC_TCP;
	__u32 ports = csum_add(csum_diff16(l4[0], e->to_sport), csum_diff16(l4[1], e->to_dport));
	l4[0] = e->to_sport;
	l4[1] = e->to_dport;
	__sum16 *check = udp ? &l4[3] : &l4[8];
	if (h == HOOK_XDP) {
		*check = udp ? csum_update_udp(*check, csum_add(addr, ports)) : csum_update(*check, csum_add(addr, ports));
		return 0;
	}
	__u32 off = c->l4_off + (udp ? 6 : 16);
	__u64 mm0 = udp ? BPF_F_MARK_MANGLED_0 : 0;
	if ((k->src != e->to_src || k->dst != e->to_dst) &&
	    bpf_l4_csum_replace(c->ctx, off, 0, addr, BPF_F_PSEUDO_HDR | mm0))
		return -XN_DROP_UNKNOWN;
	if ((k->sport != e->to_sport || k->dport != e->to_dport) && bpf_l4_csum_replace(c->ctx, off, 0, ports, mm0))
		return -XN_DROP_UNKNOWN;
	return 0;
}

/* An ICMP error about flow e (the entry for its direction): the outer header
 * gets src/dst; the quoted header, our translated packet, is translated back
 * with its IP and L4 checksums, and the ICMP checksum takes every changed
 * word. All direct writes: ICMP is never CHECKSUM_PARTIAL, and each header's
 * checksum compensates its own changes, so a CHECKSUM_COMPLETE sum holds. */
__inline_fn int nat_rewrite_error(struct nat_ctx *c, const struct xn_ct_entry *e, __be32 src, __be32 dst)
{
	struct iphdr *ip = c->ip, *iip = c->iip;
	struct icmphdr *ih = c->l4;
	__u8 *l4 = c->il4;
	void *end = c->p.data_end;
	if ((void *)(ih + 1) > end || (void *)(iip + 1) > end || (void *)(l4 + 8) > end)
		return -XN_DROP_TRUNC_ICMP;
	ip->check = csum_update(ip->check, csum_add(csum_diff32(ip->saddr, src), csum_diff32(ip->daddr, dst)));
	ip->saddr = src;
	ip->daddr = dst;

	__u32 iaddr = csum_add(csum_diff32(iip->saddr, e->to_dst), csum_diff32(iip->daddr, e->to_src));
	__sum16 icheck = csum_update(iip->check, iaddr);
	__u32 d = csum_add(iaddr, csum_diff16(iip->check, icheck));
	iip->saddr = e->to_dst;
	iip->daddr = e->to_src;
	iip->check = icheck;

	__be16 *pp = (__be16 *)l4;
	if (iip->protocol == IPPROTO_ICMP) { /* a quoted echo: identifier and its checksum */
		__u32 pd = csum_diff16(pp[2], e->to_dport);
		__sum16 ck = csum_update(pp[1], pd);
		d = csum_add(d, csum_add(pd, csum_diff16(pp[1], ck)));
		pp[1] = ck;
		pp[2] = e->to_dport;
	} else {
		__u32 pd = csum_add(csum_diff16(pp[0], e->to_dport), csum_diff16(pp[1], e->to_sport));
		d = csum_add(d, pd);
		pp[0] = e->to_dport;
		pp[1] = e->to_sport;
		/* The quoted L4 checksum, where the quote has it: UDP's always, TCP's
		 * when 18 bytes or more are quoted. */
		__sum16 *ck = NULL;
		if (iip->protocol == IPPROTO_UDP)
			ck = &pp[3];
		else if (c->il4_len >= 18 && (void *)(l4 + 18) <= end)
			ck = &pp[8];
		if (ck) {
			__u32 cd = csum_add(iaddr, pd);
			__sum16 nck = iip->protocol == IPPROTO_UDP ? csum_update_udp(*ck, cd) : csum_update(*ck, cd);
			d = csum_add(d, csum_diff16(*ck, nck));
			*ck = nck;
		}
	}
	ih->checksum = csum_update(ih->checksum, d);
	return 0;
}
