/* Frames the kernel refused after xdpnet handed them on: an XDP redirect
 * whose target's ndo_xdp_xmit failed (a veth whose peer has neither XDP nor
 * GRO, a device gone), or that could not be redirected at all. The kernel
 * drops those without a word; these tracepoint programs count them under
 * XN_DROP_REDIRECT in the receiving interface's counters and show them to a
 * monitor. One copy runs per instance (loaded with its maps, pinned under its
 * links/), and counts only frames received in its network namespace on an
 * interface xdpnet has a slot for. */
#include "lib/stats.h"
#include <bpf/bpf_tracing.h>

/* Just the fields read (CO-RE relocates them against the kernel's BTF). */
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));
struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));
typedef struct {
	struct net *net;
} possible_net_t;
struct net_device {
	int ifindex;
	possible_net_t nd_net;
} __attribute__((preserve_access_index));
struct bpf_prog;

/* The instance's network namespace (its inode number), set before load. */
const volatile __u32 xn_netns_ino = 0;

__inline_fn void refused(const struct net_device *dev, __u32 n)
{
	if (!dev || dev->nd_net.net->ns.inum != xn_netns_ino)
		return;
	__u32 ifindex = dev->ifindex;
	__u32 slot = if_slot(ifindex);
	if (!slot)
		return;
	struct xn_if_stats *st = slot_stats(slot);
	for (__u32 i = 0; i < n && i < 64; i++) { /* a bulk flush holds at most 16 */
		count_drop_only(ifindex, st, -XN_DROP_REDIRECT);
		if (unlikely(xn_mon.flags & XN_MON_DROPS)) {
			struct xn_event *e = mon_reserve(XN_EV_DROP, XN_EV_HOOK_KERNEL, ifindex, 0, 0, XN_DROP_REDIRECT);
			if (e)
				bpf_ringbuf_submit(e, 0);
		}
	}
}

/* After a devmap flush (also bpf_redirect to an ifindex): drops frames the
 * target's ndo_xdp_xmit did not take. */
SEC("tp_btf/xdp_devmap_xmit")
int BPF_PROG(xn_obs_devmap, const struct net_device *from_dev, const struct net_device *to_dev, int sent, int drops,
	     int err)
{
	if (drops > 0)
		refused(from_dev, drops);
	return 0;
}

/* xdp_do_redirect failed: the driver drops the frame. */
SEC("tp_btf/xdp_redirect_err")
int BPF_PROG(xn_obs_redir_err, const struct net_device *dev, const struct bpf_prog *xdp, const void *tgt, int err,
	     int map_type, __u32 map_id, __u32 index)
{
	refused(dev, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
