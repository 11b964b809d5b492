// Counters read from the instance's pinned maps, summed over CPUs.
import { join } from 'node:path';
import { BpfMap } from '../sys/libbpf.js';
import { CACHES, CacheStats, DROP_REASONS, DropKey, IfStats, STATS_MAPS } from '../objects/stats.js';
import { COUNTER } from '../objects/counter.js';
import type { InstancePaths } from '../objects/paths.js';
import { primaryAttachments } from './attach.js';
import { listLinks, type Hook } from './links.js';
import { readCounters } from './slots.js';

export interface IfaceStats {
  iface: string | null;
  ifindex: number;
  rxPackets: number;
  rxBytes: number;
  /** Sent out of this interface by xdpnet (bridge forwarding and flooding). */
  txPackets: number;
  txBytes: number;
  /** Received here and flooded. */
  flooded: number;
  /** MACs learned (new or moved) on this port. */
  learned: number;
  /** Source MACs not learned on this port: the bridge at --max-learned, or the FDB full. */
  learnRefused: number;
  /** ARP requests received here that the bridge answered itself (xn_arp). */
  arpReplied: number;
  /** Received here and dropped, in all and by reason. */
  dropped: number;
  drops: Record<string, number>;
  /**
   * NAT's hook where NAT alone runs on the interface (e.g. an uplink with only
   * `nat masquerade`), else null. NAT counts drops there (dropped, drops), not
   * rx/tx/flooded/learned/ARP, which stay 0.
   */
  natOnly: Hook | null;
}

export interface CacheCount {
  hits: number;
  misses: number;
}

export interface Stats {
  at: number; // ms since epoch, for rates
  interfaces: IfaceStats[];
  drops: Record<string, number>;
  /** Lookups of the datapath's caches (bridge, vxlan-nexthop, nat), summed over CPUs. */
  caches: Record<keyof typeof CACHES, CacheCount>;
}

type Counters = ReturnType<typeof IfStats.decode>;

/** Drop counts from an xn_drops map, summed over CPUs, by interface and reason name. */
export function readDropsByIface(m: BpfMap): Map<number, Record<string, number>> {
  const out = new Map<number, Record<string, number>>();
  for (const [k, v] of m.entries()) {
    let n = 0n;
    for (let off = 0; off + 8 <= v.length; off += 8) n += v.readBigUInt64LE(off);
    const { ifindex, reason } = DropKey.decode(k);
    const name = DROP_REASONS[reason] ?? `reason-${reason}`;
    if (!n) continue;
    const r = out.get(ifindex) ?? {};
    r[name] = (r[name] ?? 0) + Number(n);
    out.set(ifindex, r);
  }
  return out;
}

/** Drop counts by reason name over all interfaces (reasons never hit are left out). */
export function readDrops(m: BpfMap): Record<string, number> {
  const total: Record<string, number> = {};
  for (const r of readDropsByIface(m).values()) for (const [k, n] of Object.entries(r)) total[k] = (total[k] ?? 0) + n;
  return total;
}

/** Hits and misses of each cache in a per-CPU xn_cache_stats value (undefined: none yet), summed over CPUs. */
function cacheCounts(v: Buffer | undefined): Stats['caches'] {
  const sum = new Map<string, bigint>();
  const stride = Math.ceil(CacheStats.size / 8) * 8; // each CPU's value is 8-aligned
  for (let off = 0; v && off + CacheStats.size <= v.length; off += stride) {
    for (const [k, n] of Object.entries(CacheStats.decode(v, off))) sum.set(k, (sum.get(k) ?? 0n) + n);
  }
  const out = {} as Stats['caches'];
  for (const [name, f] of Object.entries(CACHES) as Array<[keyof typeof CACHES, string]>) {
    out[name] = { hits: Number(sum.get(`${f}_hit`) ?? 0n), misses: Number(sum.get(`${f}_miss`) ?? 0n) };
  }
  return out;
}

/** The cache counts in an xn_cache_stats map. */
export const readCacheStats = (m: BpfMap): Stats['caches'] => cacheCounts(m.lookup(Buffer.alloc(4)));

/** The instance's cache counts (zeros before any object created the map). */
export function readCaches(inst: InstancePaths): Stats['caches'] {
  return BpfMap.usePin(join(inst.maps, STATS_MAPS.caches), readCacheStats) ?? cacheCounts(undefined);
}

/** primary: the instance's primaryAttachments(), when the caller has read them already. */
export function readStats(inst: InstancePaths, primary = primaryAttachments(inst)): Stats {
  // one row per interface: its primary attachment, else its NAT link (XDP's if NAT has both there)
  const rows = new Map<number, { iface: string | null; ifindex: number; pin: string; nat: Hook | null }>();
  for (const a of primary.values()) rows.set(a.ifindex, { ...a, nat: null });
  for (const l of listLinks(inst, 'nat').sort((a, b) => (a.hook === 'xdp' ? 0 : 1) - (b.hook === 'xdp' ? 0 : 1))) {
    if (!rows.has(l.ifindex)) rows.set(l.ifindex, { ...l, nat: l.hook });
  }
  const attached = [...rows.values()].sort((a, b) => a.pin.localeCompare(b.pin));
  const counters = BpfMap.usePins(inst.maps, { slots: COUNTER.maps.ifSlots, stats: COUNTER.maps.ifStats }, (m) =>
    readCounters(m.slots, m.stats)) ?? new Map<number, Counters>();
  const byIf = BpfMap.usePin(join(inst.maps, COUNTER.maps.drops), readDropsByIface) ?? new Map<number, Record<string, number>>();
  const drops: Record<string, number> = {};
  for (const r of byIf.values()) for (const [k, n] of Object.entries(r)) drops[k] = (drops[k] ?? 0) + n;
  return {
    at: Date.now(),
    interfaces: attached.map((a) => {
      const c = counters.get(a.ifindex);
      const n = (f: keyof Counters) => Number(c?.[f] ?? 0n);
      return {
        iface: a.iface, ifindex: a.ifindex, rxPackets: n('rx_packets'), rxBytes: n('rx_bytes'), txPackets: n('tx_packets'),
        txBytes: n('tx_bytes'), flooded: n('flooded'), learned: n('learned'), learnRefused: n('learn_refused'), dropped: n('dropped'),
        arpReplied: n('arp_replied'),
        drops: byIf.get(a.ifindex) ?? {},
        natOnly: a.nat,
      };
    }),
    drops,
    caches: readCaches(inst),
  };
}
