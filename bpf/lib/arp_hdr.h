/* ARP's wire format (RFC 826) for Ethernet and IPv4, the only kind the
 * bridge answers (arp.h) or lets a locked port send (port_lock.h). */
#pragma once
#include "common.h"

#ifndef ETH_P_ARP
#define ETH_P_ARP 0x0806
#endif
#define XN_ARPOP_REQUEST 1
#define XN_ARPOP_REPLY 2

struct arp_eth4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
} __attribute__((packed));

/* Ethernet hardware and IPv4 protocol addresses: the only ARP we parse. */
__inline_fn int arp_is_eth4(const struct arp_eth4 *a)
{
	return a->htype == bpf_htons(1) && a->ptype == bpf_htons(ETH_P_IP) && a->hlen == 6 && a->plen == 4;
}
