// Counters read from the instance's pinned maps, summed over CPUs.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BpfMap } from '../sys/libbpf.js';
import { sumPerCpu } from '../objects/codec.js';
import { DROP_REASONS, IfStats } from '../objects/stats.js';
import { COUNTER } from '../objects/counter.js';
import type { InstancePaths } from '../objects/paths.js';
import { listAttachments } from './attach.js';

export interface IfaceStats {
  iface: string | null;
  ifindex: number;
  rxPackets: number;
  rxBytes: number;
}

export interface Stats {
  at: number; // ms since epoch, for rates
  interfaces: IfaceStats[];
  drops: Record<string, number>;
}

function withMap<T>(inst: InstancePaths, name: string, fn: (m: BpfMap) => T, empty: T): T {
  const pin = join(inst.maps, name);
  if (!existsSync(pin)) return empty;
  const m = BpfMap.fromPin(pin);
  try {
    return fn(m);
  } finally {
    m.close();
  }
}

export function readStats(inst: InstancePaths): Stats {
  const attached = listAttachments(inst);
  const counters = withMap(inst, COUNTER.maps.ifStats, (m) => {
    const byIf = new Map<number, { rx_packets: bigint; rx_bytes: bigint }>();
    for (const [k, v] of m.entries()) byIf.set(k.readUInt32LE(0), sumPerCpu(IfStats, v));
    return byIf;
  }, new Map());
  const drops = withMap(inst, COUNTER.maps.drops, (m) => {
    const out: Record<string, number> = {};
    for (const [k, v] of m.entries()) {
      let n = 0n;
      for (let off = 0; off + 8 <= v.length; off += 8) n += v.readBigUInt64LE(off);
      const reason = DROP_REASONS[k.readUInt32LE(0)];
      if (n && reason) out[reason] = Number(n);
    }
    return out;
  }, {});
  return {
    at: Date.now(),
    interfaces: attached.map((a) => {
      const c = counters.get(a.ifindex);
      return { iface: a.iface, ifindex: a.ifindex, rxPackets: Number(c?.rx_packets ?? 0n), rxBytes: Number(c?.rx_bytes ?? 0n) };
    }),
    drops,
  };
}
