/* Benchmark programs, attached by bench/ only: a live-frames packet generator,
 * a counting sink, bare redirects (the ceilings for any XDP or tc forwarder)
 * and XDP_PASS for veth peers that must hand redirected frames to the stack. */
#include "lib/common.h"
#include "include/bench.h"

/* Set before load (src/objects/bench.ts). */
const volatile __u32 xn_gen_ifindex = 0;      /* egress interface of xn_gen */
const volatile __u32 xn_gen_flows = 1;        /* UDP flows cycled through (source ports, then destination ports) */
const volatile __u8 xn_gen_vary_mac = 0;      /* also vary the source MAC per flow */
const volatile __u32 xn_redirect_ifindex = 0; /* target of xn_redirect and xn_tc_redirect */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xn_gen_frame);
} xn_gen_tmpl SEC(".maps");

/* Key 0 only. Per-CPU: plain adds. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xn_bench_count);
} xn_bench_stats SEC(".maps");

SEC("xdp")
int xn_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct xn_gen_frame *t = bpf_map_lookup_elem(&xn_gen_tmpl, &zero);
	struct xn_bench_count *s = bpf_map_lookup_elem(&xn_bench_stats, &zero);
	if (!t || !s)
		return XDP_ABORTED;

	/* Live-frames pages are recycled without being rewritten, and forwarders
	 * downstream may have rewritten them in place: restore the headers. */
	__u32 len = t->hdr_len;
	__u64 *dst = data;
	const __u64 *src = (const __u64 *)t->hdr;
	for (int i = 0; i < XN_GEN_HDR_MAX / 8; i++) {
		if (i * 8 >= len)
			break;
		if ((void *)(dst + i + 1) > end)
			return XDP_ABORTED;
		dst[i] = src[i];
	}

	if (xn_gen_flows > 1) {
		__u32 flow = (__u32)s->packets % xn_gen_flows; /* 32-bit: cheaper div */
		__be16 *sport = data + XN_GEN_SPORT_OFF;
		if ((void *)(sport + 1) > end)
			return XDP_ABORTED;
		/* The template's UDP checksum is 0 (none), so it needs no update.
		 * Past 16384 flows the destination port varies too (flow / 16384):
		 * a million flows then fit 16384 source ports, which a masquerade
		 * range keeps as they are (bench/ctscale.ts). */
		*sport = bpf_htons(bpf_ntohs(*sport) + (flow & 0x3fff));
		if (flow > 0x3fff) {
			__be16 *dport = sport + 1;
			if ((void *)(dport + 1) > end)
				return XDP_ABORTED;
			*dport = bpf_htons(bpf_ntohs(*dport) + (flow >> 14));
		}
		if (xn_gen_vary_mac) {
			__be32 *mac_lo = data + 8; /* last 4 bytes of the source MAC */
			*mac_lo ^= bpf_htonl(flow);
		}
	}
	s->packets++;
	s->bytes += end - data;
	return bpf_redirect(xn_gen_ifindex, 0);
}

SEC("xdp")
int xn_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	/* ARP passes uncounted, so a remote generator can resolve this host's MAC
	 * while the sink runs (bench/run --role sink on a NIC). */
	if ((void *)(eth + 1) <= end && eth->h_proto == bpf_htons(ETH_P_ARP))
		return XDP_PASS;
	__u32 zero = 0;
	struct xn_bench_count *s = bpf_map_lookup_elem(&xn_bench_stats, &zero);
	if (s) {
		s->packets++;
		s->bytes += end - data;
	}
	return XDP_DROP;
}

SEC("xdp")
int xn_redirect(struct xdp_md *ctx)
{
	return bpf_redirect(xn_redirect_ifindex, 0);
}

/* The same at tc: out of xn_redirect_ifindex's egress, as xdpnet's tc
 * programs send a forwarded skb (bpf_redirect, flags 0). */
SEC("tc")
int xn_tc_redirect(struct __sk_buff *skb)
{
	return bpf_redirect(xn_redirect_ifindex, 0);
}

/* A frame redirected into a veth is dropped unless the peer runs XDP. */
SEC("xdp")
int xn_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
