/* NAT with connection tracking: XDP (the uplink, for replies and packet rate)
 * and tc (container ports: keeps GSO, and handles the CHECKSUM_PARTIAL skbs a
 * local stack sends; XDP expects complete checksums, as frames from a NIC
 * have). The logic is in lib/nat.h; a drop is counted here, once. */
#include "lib/nat.h"

SEC("xdp")
int xn_nat_xdp(struct xdp_md *ctx)
{
	struct nat_ctx c = { .ctx = ctx };
	pkt_from_xdp(&c.p, ctx);
	int r = nat_run(&c, HOOK_XDP);
	if (r >= 0)
		return r;
	count_drop(ctx, HOOK_XDP, c.p.ifindex, if_stats(c.p.ifindex), r);
	return XDP_DROP;
}

SEC("tc")
int xn_nat_tc(struct __sk_buff *skb)
{
	struct nat_ctx c = { .ctx = skb };
	pkt_from_skb(&c.p, skb);
	int r = nat_run(&c, HOOK_TC);
	if (r >= 0)
		return r;
	count_drop(skb, HOOK_TC, c.p.ifindex, if_stats(c.p.ifindex), r);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
