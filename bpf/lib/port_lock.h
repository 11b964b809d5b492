/* Port lock (anti-spoofing): a port with XN_PORT_LOCKED may send only from
 * its own MAC and IPv4 addresses (xn_port_locks), so a container cannot take
 * another's MAC or address, nor answer ARP for it. The bridge's entry
 * programs check a locked port's frames before br_ingress (a refused frame
 * teaches the FDB nothing) and again on a cache hit (lib/bridge.h:
 * br_lock_admit, br_cached_admit). Shared by XDP and tc. */
#pragma once
#include <linux/ip.h>
#include "common.h"
#include "parse.h"
#include "arp_hdr.h"
#include "../include/bridge.h"
#include "../include/stats.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct xn_port_lock);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_port_locks SEC(".maps");

/* Whether ip is one of the lock's addresses (0.0.0.0 never is: it marks unused slots). */
__inline_fn int port_lock_has_ip(const struct xn_port_lock *l, __be32 ip)
{
	if (!ip)
		return 0;
#pragma unroll
	for (int i = 0; i < XN_PORT_LOCK_IPS; i++)
		if (l->ip[i] == ip)
			return 1;
	return 0;
}

/* 0 if a locked port may send this frame, else a negative drop reason. A
 * function of its own (arguments in registers, a few bytes of stack): it is
 * called only for locked ports, and xn_br_tc's inlined call chain is within
 * bytes of the verifier's 512-byte stack limit.
 *   Ethernet source: the lock's MAC (else port-lock-mac);
 *   ARP: Ethernet/IPv4, sender MAC the lock's, sender address one of the
 *     lock's, or 0.0.0.0 in a request (an RFC 5227 probe claims nothing)
 *     (else port-lock-arp);
 *   IPv4: source one of the lock's (else port-lock-ip; so DHCP's 0.0.0.0
 *     too: locks are for statically assigned addresses);
 *   anything else, IPv6 included: port-lock-proto. */
static __noinline int port_lock_check(void *data, void *data_end, __u32 ifindex, __u32 vlan_present)
{
	const struct xn_port_lock *l = bpf_map_lookup_elem(&xn_port_locks, &ifindex);
	struct cursor c = { .pos = data, .end = data_end };
	struct ethhdr *eth = cursor_pull(&c, sizeof(*eth));
	if (!eth)
		return -XN_DROP_TRUNC_ETH;
	if (!l || !mac_eq(eth->h_source, l->mac))
		return -XN_DROP_LOCK_MAC;
	__be16 proto = eth->h_proto;
	if (!vlan_present && proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_hdr *vh = cursor_pull(&c, sizeof(*vh));
		if (!vh)
			return -XN_DROP_LOCK_PROTO;
		proto = vh->proto;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cursor_pull(&c, sizeof(*ip));
		return ip && port_lock_has_ip(l, ip->saddr) ? 0 : -XN_DROP_LOCK_IP;
	}
	if (proto != bpf_htons(ETH_P_ARP))
		return -XN_DROP_LOCK_PROTO;
	struct arp_eth4 *a = cursor_pull(&c, sizeof(*a));
	/* l->mac read again, not kept from the Ethernet check: kept, its bytes
	 * took 40 bytes of stack, which put xn_br_xdp's call chain past 512 on
	 * kernels before 6.8 (they count each frame in steps of 32). */
	asm volatile("" ::: "memory");
	if (!a || !arp_is_eth4(a) || !mac_eq(a->sha, l->mac))
		return -XN_DROP_LOCK_ARP;
	__be32 spa;
	__builtin_memcpy(&spa, a->spa, 4);
	if (port_lock_has_ip(l, spa) || (!spa && a->op == bpf_htons(XN_ARPOP_REQUEST)))
		return 0;
	return -XN_DROP_LOCK_ARP;
}

