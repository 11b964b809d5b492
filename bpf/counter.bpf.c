/* The counting program: counts every received packet and byte per ingress
 * interface and passes it on. The skeleton the bridge, VXLAN and NAT programs
 * share: thin entry programs over one helper library. */
#include "lib/ctx.h"
#include "lib/stats.h"

__inline_fn int counter_run(struct pkt *p, const enum hook h)
{
	count_rx(p->ifindex, p->len);
	return VERDICT_PASS(h);
}

SEC("xdp")
int xn_count_xdp(struct xdp_md *ctx)
{
	struct pkt p;
	pkt_from_xdp(&p, ctx);
	return counter_run(&p, HOOK_XDP);
}

SEC("tc")
int xn_count_tc(struct __sk_buff *skb)
{
	struct pkt p;
	pkt_from_skb(&p, skb);
	return counter_run(&p, HOOK_TC);
}

char LICENSE[] SEC("license") = "GPL";
