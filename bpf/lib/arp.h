/* The bridge's ARP responder: a broadcast ARP request for an address in
 * xn_arp is turned into the reply in place and sent back out of the port it
 * came in on, instead of being flooded (locally and across the overlay). The
 * gateway's address is one of them, so every host answers for the same
 * gateway and no gateway ARP crosses the overlay. Shared by XDP and tc. */
#pragma once
#include "common.h"
#include "ctx.h"
#include "parse.h"
#include "bridge.h"
#include "arp_hdr.h"


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_ARP_MAX);
	__type(key, struct xn_arp_key);
	__type(value, struct xn_arp_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_arp SEC(".maps");

/* If the frame (already admitted by br_ingress as f) is an ARP request for
 * an address xn_arp knows, rewrites it into the reply and returns 1: the
 * caller sends it back out of the ingress port, tagged as it came. 0: not
 * ours to answer (the caller floods it as before). Requests from the
 * address's owner (duplicate address detection, a MAC asking for itself) and
 * gratuitous ARP are left alone. */
__inline_fn int arp_respond(const struct pkt *p, const struct br_frame *f)
{
	struct cursor c = { .pos = p->data, .end = p->data_end };
	struct ethhdr *eth = cursor_pull(&c, sizeof(*eth));
	if (!eth)
		return 0;
	__be16 proto = eth->h_proto;
	if (!p->vlan_present && proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_hdr *vh = cursor_pull(&c, sizeof(*vh));
		if (!vh)
			return 0;
		proto = vh->proto;
	}
	if (proto != bpf_htons(ETH_P_ARP))
		return 0;
	struct arp_eth4 *a = cursor_pull(&c, sizeof(*a));
	if (!a || !arp_is_eth4(a) || a->op != bpf_htons(XN_ARPOP_REQUEST))
		return 0;
	__be32 spa, tpa;
	__builtin_memcpy(&spa, a->spa, 4);
	__builtin_memcpy(&tpa, a->tpa, 4);
	if (spa == tpa)
		return 0; /* gratuitous: an announcement, everyone should see it */
	struct xn_arp_key k = { .bridge = f->bridge, .vid = f->vid, .ip = tpa };
	struct xn_arp_entry *e = bpf_map_lookup_elem(&xn_arp, &k);
	if (!e || mac_eq(e->mac, eth->h_source))
		return 0;
	__u8 mac[6];
	__builtin_memcpy(mac, e->mac, 6);
	__builtin_memcpy(eth->h_dest, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, mac, 6);
	a->op = bpf_htons(XN_ARPOP_REPLY);
	__builtin_memcpy(a->tha, a->sha, 6);
	__builtin_memcpy(a->tpa, &spa, 4);
	__builtin_memcpy(a->sha, mac, 6);
	__builtin_memcpy(a->spa, &tpa, 4);
	return 1;
}
