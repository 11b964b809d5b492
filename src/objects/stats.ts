// Mirror of bpf/include/stats.h, shared by every object that counts.
import { struct } from './codec.js';

/** The maps every counting object shares (pinned by name in the instance). */
export const STATS_MAPS = { ifStats: 'xn_if_stats', ifSlots: 'xn_if_slots', drops: 'xn_drops', caches: 'xn_cache_stats' } as const;

export const IfStats = struct('xn_if_stats', {
  rx_packets: 'u64',
  rx_bytes: 'u64',
  tx_packets: 'u64',
  tx_bytes: 'u64',
  flooded: 'u64',
  learned: 'u64',
  dropped: 'u64',
  arp_replied: 'u64',
  learn_refused: 'u64',
});

/** Hits and misses of the datapath's caches (xn_cache_stats: one per-CPU entry). */
export const CacheStats = struct('xn_cache_stats', {
  bridge_hit: 'u64',
  bridge_miss: 'u64',
  vx_nh_hit: 'u64',
  vx_nh_miss: 'u64',
  nat_hit: 'u64',
  nat_miss: 'u64',
});

/** The caches by the name stats and metrics give them → their field prefix in xn_cache_stats. */
export const CACHES = { bridge: 'bridge', 'vxlan-nexthop': 'vx_nh', nat: 'nat' } as const;

export const DropKey = struct('xn_drop_key', { ifindex: 'u32', reason: 'u32' });

/** enum xn_drop_reason → the name `xdpnet stats` prints. */
export const DROP_REASONS: Record<number, string> = {
  1: 'unknown',
  2: 'truncated-ethernet',
  3: 'truncated-vlan',
  4: 'truncated-ipv4',
  5: 'malformed-ipv4',
  6: 'invalid-source-mac',
  7: 'vlan-untagged-refused',
  8: 'vlan-ingress-denied',
  9: 'vlan-egress-denied',
  10: 'same-port',
  11: 'no-bridge',
  12: 'vlan-tag-op-failed',
  13: 'truncated-tcp',
  14: 'truncated-udp',
  15: 'truncated-icmp',
  16: 'malformed-icmp-error',
  17: 'nat-fragment',
  18: 'nat-ports-exhausted',
  19: 'conntrack-insert-failed',
  20: 'nat-cannot-forward',
  24: 'vxlan-truncated',
  25: 'vxlan-bad-flags',
  26: 'vxlan-unknown-vni',
  27: 'vxlan-unknown-vtep',
  28: 'vxlan-too-big',
  29: 'vxlan-no-route',
  30: 'vxlan-no-neighbour',
  31: 'vxlan-encap-failed',
  32: 'redirect-refused',
  33: 'port-lock-mac',
  34: 'port-lock-arp',
  35: 'port-lock-ip',
  36: 'port-lock-proto',
  37: 'flood-copy-refused',
};
export const DROP_MAX = 38;
