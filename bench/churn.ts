// FDB churn: while the generator forwards through the xdpnet bridge at full
// rate to a static entry, the CLI's bulk path (`xdpnet fdb load`) moves 100k
// other MACs between the two ports over and over. Reports FDB updates per
// second (wall time of the CLI invocations, start-up included) and whether any
// frame was lost or misforwarded meanwhile (generated vs delivered, floods,
// drops).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GenResult } from './gen.js';
import type { Topology } from './topology.js';

// Most of the FDB (131072 entries): Node start-up (~0.2 s here) is paid once per load.
const ENTRIES = 100_000;

export interface ChurnResult {
  updates: number;
  seconds: number;
  /** End to end: CLI invocations, Node start-up included. */
  updatesPerSec: number;
  /** The bulk path itself: reading the file, validating, one batch update (as `fdb load` reports it). */
  loadUpdatesPerSec: number;
  generated: number;
  delivered: number;
  flooded: number;
  drops: Record<string, number>;
}

/** `gen` starts the generator for `seconds` (resolving with its result); `delivered` reads the sink. */
export async function measureChurn(
  t: Topology,
  gen: (seconds: number) => Promise<GenResult>,
  delivered: () => number,
  seconds: number,
): Promise<ChurnResult> {
  const dir = mkdtempSync(join(tmpdir(), 'xdpnet-churn-'));
  try {
    const files = ['f0', 'f1'].map((port) => {
      const rows = Array.from({ length: ENTRIES }, (_, i) => ({
        mac: `02:c0:${[i >> 16, (i >> 8) & 255, i & 255].map((b) => b.toString(16).padStart(2, '0')).join(':')}:01`,
        bridge: 'br0',
        port,
      }));
      const f = join(dir, `${port}.json`);
      writeFileSync(f, JSON.stringify(rows));
      return f;
    });
    const before = delivered();
    const running = gen(seconds + 1);
    await new Promise((r) => setTimeout(r, 500)); // forwarding at full rate before the first change
    let updates = 0;
    let loadMs = 0;
    const start = process.hrtime.bigint();
    const stop = start + BigInt(seconds * 1e9);
    for (let i = 0; process.hrtime.bigint() < stop; i++) {
      const out = t.xdpnet('fwd', 'fdb', 'load', files[i % 2]);
      loadMs += Number(/ in (\d+) ms/.exec(out)?.[1] ?? NaN);
      updates += ENTRIES;
    }
    const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    const g = await running;
    await new Promise((r) => setTimeout(r, 200)); // let the last frames drain
    const stats = JSON.parse(t.xdpnet('fwd', 'stats', '--json')) as {
      interfaces: Array<{ iface: string; flooded: number }>;
      drops: Record<string, number>;
    };
    return {
      updates, seconds: elapsed, updatesPerSec: updates / elapsed, loadUpdatesPerSec: updates / (loadMs / 1000),
      generated: g.packets, delivered: delivered() - before,
      flooded: stats.interfaces.find((i) => i.iface === 'f0')?.flooded ?? 0,
      drops: stats.drops,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
