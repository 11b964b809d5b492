// docs/memory.md's table is what the code computes, and the caches' sizing
// keeps the BPF side's set indexing valid (a power of two of at least a set).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { footprint, footprintTable } from '../../src/dataplane/memory.js';
import { BR_CACHE, cachePart, NAT_HOT } from '../../src/objects/memory.js';
import { ROOT } from '../helpers/sys.js';

describe('memory', () => {
  it('docs/memory.md and the README hold the table footprintTable() computes', () => {
    for (const doc of ['docs/memory.md', 'README.md']) expect(readFileSync(join(ROOT, doc), 'utf8'), doc).toContain(`\n${footprintTable()}\n`);
  });

  it('sizes each CPU\'s part of a cache as a power of two between its bounds, growing with flows and shrinking with CPUs', () => {
    for (const c of [BR_CACHE, NAT_HOT]) {
      for (const cpus of [1, 2, 3, 16, 64, 256]) {
        for (const flows of [1, 1000, 4096, 100_000, 16_777_216]) {
          const p = cachePart(c, flows, cpus);
          expect(p & (p - 1), `${c.map} ${cpus} CPUs ${flows} flows`).toBe(0);
          expect(p).toBeGreaterThanOrEqual(Math.max(c.minPart, c.ways));
          expect(p).toBeLessThanOrEqual(c.maxPart);
          if (p < c.maxPart && p > c.minPart) expect(p).toBeGreaterThanOrEqual((c.perFlow * flows) / cpus);
        }
      }
    }
    expect(cachePart(NAT_HOT, 1000, 2)).toBe(2048);
    expect(cachePart(NAT_HOT, 131072, 64)).toBe(8192);
    expect(cachePart(BR_CACHE, 4096, 2)).toBe(BR_CACHE.maxPart); // the default on a small host: what every host had before
  });

  it('no longer charges 3 MiB a CPU whatever the load: 64 CPUs at 1k flows take what 2 did', () => {
    const small = footprint(64, 1000);
    expect(small.natHot + small.brCache).toBeLessThan(2.5 * 2 ** 20);
    const big = footprint(64, 1_000_000);
    expect(big.natHot + big.brCache).toBe(64 * 3 * 2 ** 20 + 2 * 4096); // the caps, plus each map's header page
  });
});
