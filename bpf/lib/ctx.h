/* Context shim: the helper library is written once against struct pkt and
 * compiled for XDP and tc. Entry programs build a pkt from their context; the
 * hook is a compile-time constant in every inlined helper, so the branch on it
 * costs nothing at run time. */
#pragma once
#include "common.h"

enum hook { HOOK_XDP = 0, HOOK_TC = 1 };

struct pkt {
	void *data;
	void *data_end;
	__u32 ifindex; /* ingress interface */
	__u32 len;     /* whole packet length (tc: skb->len, may exceed linear data) */
	__u16 vlan_present; /* tc: the kernel moved an 802.1Q tag out of the data into the skb */
	__u16 vlan_tci;
};

__inline_fn void pkt_from_xdp(struct pkt *p, struct xdp_md *ctx)
{
	p->data = (void *)(long)ctx->data;
	p->data_end = (void *)(long)ctx->data_end;
	p->ifindex = ctx->ingress_ifindex;
	p->len = (__u32)(p->data_end - p->data);
	p->vlan_present = 0; /* XDP sees tags in the frame data */
	p->vlan_tci = 0;
}

__inline_fn void pkt_from_skb(struct pkt *p, struct __sk_buff *skb)
{
	p->data = (void *)(long)skb->data;
	p->data_end = (void *)(long)skb->data_end;
	p->ifindex = skb->ifindex;
	p->len = skb->len;
	p->vlan_present = skb->vlan_present;
	p->vlan_tci = skb->vlan_tci;
}

/* Verdicts by hook. */
#define VERDICT_PASS(h) ((h) == HOOK_XDP ? XDP_PASS : TC_ACT_OK)
#define VERDICT_DROP(h) ((h) == HOOK_XDP ? XDP_DROP : TC_ACT_SHOT)
