/* VXLAN's maps (configuration the control process writes), the outer
 * headers' layout, and the VTEP lookups both hooks share. */
#pragma once

#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include "bridge.h"
#include "vlan.h"
#include "../include/vxlan.h"


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_MAX_VTEPS);
	__type(key, __u32); /* VNI */
	__type(value, struct xn_vtep);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_vteps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_MAX_VTEPS);
	__type(key, struct xn_flood_key); /* (bridge, VLAN) */
	__type(value, __u32);             /* VNI */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_vx_vlans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_MAX_VTEPS);
	__type(key, struct xn_vx_port_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_vx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_MAX_VTEPS);
	__type(key, __u32); /* VNI */
	__type(value, struct xn_vx_remotes);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_vx_remotes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XN_VX_PEERS_MAX);
	__type(key, struct xn_vx_peer_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xn_vx_peers SEC(".maps");

#define VX_FLAG_I bpf_htonl(0x08000000)

struct vx_hdr {
	__be32 flags;
	__be32 vni; /* VNI << 8; the low byte is reserved */
};

/* The 50 bytes in front of the inner frame. Packet data is only 2-byte
 * aligned after an Ethernet header, and clang must know it. */
struct vx_outer {
	struct ethhdr eth;
	struct iphdr ip;
	struct udphdr udp;
	struct vx_hdr vx;
} __attribute__((packed, aligned(2)));

_Static_assert(sizeof(struct vx_outer) == XN_VX_HLEN, "outer headers are 50 bytes");

/* The VTEP that carries (bridge, vid) out of this host, and its VNI. */
__inline_fn struct xn_vtep *vx_vtep_of(__u32 bridge, __u16 vid, __u32 *vni)
{
	struct xn_flood_key k = { .bridge = bridge, .vid = vid };
	__u32 *n = bpf_map_lookup_elem(&xn_vx_vlans, &k);
	if (!n)
		return NULL;
	*vni = *n;
	return bpf_map_lookup_elem(&xn_vteps, n);
}

/* Whether floods of (bridge, vid) must also reach remote VTEPs. */
__inline_fn int vx_has_remotes(__u32 bridge, __u16 vid)
{
	struct xn_flood_key k = { .bridge = bridge, .vid = vid };
	__u32 *vni = bpf_map_lookup_elem(&xn_vx_vlans, &k);
	if (!vni)
		return 0;
	struct xn_vx_remotes *rm = bpf_map_lookup_elem(&xn_vx_remotes, vni);
	return rm && rm->count;
}
