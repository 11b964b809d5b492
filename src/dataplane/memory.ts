// What the maps that grow with the host and the load cost, computed from the
// same definitions and sizing the loaders use: docs/memory.md's table is this
// module's output (test/unit/memory.test.ts checks it), and the bpf tier
// checks mapBytes against the kernel's own charge.
import { FdbEntry, FdbKey, BRIDGE } from '../objects/bridge.js';
import { BR_CACHE, cachePart, mapBytes, NAT_HOT, type PerCpuCache } from '../objects/memory.js';
import { CtEntry, CtKey, ctEntriesFor } from '../objects/nat.js';

export interface Footprint {
  /** conntrack's LRU hash, `--conntrack-max flows` */
  ct: number;
  /** NAT's hot copies, sized from the same flows */
  natHot: number;
  /** the bridges' decision cache, `bridge add --flows flows` */
  brCache: number;
  /** the FDB: a preallocated hash of fixed size */
  fdb: number;
}

const cacheBytes = (c: PerCpuCache, flows: number, cpus: number) =>
  mapBytes({ kind: 'array', keySize: 4, valueSize: c.entryBytes, maxEntries: cachePart(c, flows, cpus) * cpus, mmapable: true }, cpus);

/** Kernel memory of the maps that scale, on a host with `cpus` possible CPUs configured for `flows` flows. */
export function footprint(cpus: number, flows: number): Footprint {
  return {
    ct: mapBytes({ kind: 'hash', keySize: CtKey.size, valueSize: CtEntry.size, maxEntries: ctEntriesFor(flows, cpus) }, cpus),
    natHot: cacheBytes(NAT_HOT, flows, cpus),
    brCache: cacheBytes(BR_CACHE, flows, cpus),
    fdb: mapBytes({ kind: 'hash', keySize: FdbKey.size, valueSize: FdbEntry.size, maxEntries: BRIDGE.limits.fdb }, cpus),
  };
}

const mib = (n: number) => (n / 2 ** 20).toFixed(1);

/** docs/memory.md's table: 2, 16 and 64 CPUs by 1k, 100k and 1M flows, in MiB. */
export function footprintTable(cpus = [2, 16, 64], flows = [1_000, 100_000, 1_000_000]): string {
  const rows = cpus.flatMap((c) => flows.map((f) => {
    const m = footprint(c, f);
    return `| ${c} | ${f.toLocaleString('en-US')} | ${mib(m.ct)} | ${mib(m.natHot)} | ${mib(m.brCache)} | ${mib(m.fdb)} | ${mib(m.ct + m.natHot + m.brCache + m.fdb)} |`;
  }));
  return ['| CPUs | flows | conntrack | NAT hot copies | bridge cache | FDB | total (MiB) |', '|---:|---:|---:|---:|---:|---:|---:|', ...rows].join('\n');
}
