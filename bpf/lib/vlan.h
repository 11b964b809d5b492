/* 802.1Q tag push/pop/rewrite. XDP edits the frame; tc uses the skb's VLAN
 * metadata (the kernel strips tags into it before tc ingress). */
#pragma once
#include "common.h"
#include "parse.h"

/* XDP: make the frame carry (want_tag) or not carry a tag for vid. tagged says
 * whether it carries one now. Returns 0 or -1. */
__inline_fn int xdp_vlan_set(struct xdp_md *ctx, int tagged, int want_tag, __u16 vid)
{
	void *data, *end;
	__u8 macs[12];

	if (tagged && want_tag) {
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		struct vlan_hdr *vh = data + ETH_HLEN - 2 + 2; /* after the MACs and TPID */
		if ((void *)(vh + 1) > end)
			return -1;
		vh->tci = bpf_htons((bpf_ntohs(vh->tci) & ~VLAN_VID_MASK) | vid);
		return 0;
	}
	if (tagged) { /* pop: slide the MACs over the tag */
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		if (data + ETH_HLEN + sizeof(struct vlan_hdr) > end)
			return -1;
		__builtin_memcpy(macs, data, 12);
		__builtin_memcpy(data + 4, macs, 12);
		return bpf_xdp_adjust_head(ctx, 4) ? -1 : 0;
	}
	if (want_tag) { /* push */
		if (bpf_xdp_adjust_head(ctx, -4))
			return -1;
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		if (data + ETH_HLEN + sizeof(struct vlan_hdr) > end)
			return -1;
		__builtin_memcpy(macs, data + 4, 12);
		__builtin_memcpy(data, macs, 12);
		__be16 *tpid = data + 12;
		*tpid = bpf_htons(ETH_P_8021Q);
		struct vlan_hdr *vh = data + 14;
		vh->tci = bpf_htons(vid);
		/* vh->proto is the original EtherType, already in place */
	}
	return 0;
}

/* tc: the same through skb VLAN metadata. */
__inline_fn int skb_vlan_set(struct __sk_buff *skb, int tagged, int want_tag, __u16 vid)
{
	if (tagged && (!want_tag || (skb->vlan_tci & VLAN_VID_MASK) != vid)) {
		if (bpf_skb_vlan_pop(skb))
			return -1;
		tagged = 0;
	}
	if (want_tag && !tagged && bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), vid))
		return -1;
	return 0;
}
