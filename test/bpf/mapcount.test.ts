// Counting the conntrack table in the kernel (src/objects/mapcount.ts), each
// way this kernel runs, against what a full walk of the table finds: entries
// inserted, the table filled and an insert past it refused, some
// deleted, all deleted. The table is the real xn_ct of bpf/nat.bpf.o (its maps
// only: no program needs to pass this kernel's verifier), sized as
// `--conntrack-max 1024` sizes it; the scrape's gauge is checked too.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ctCounters } from '../../src/dataplane/conntrack.js';
import { COUNT_METHODS, MapCounter, mapCounter } from '../../src/objects/mapcount.js';
import { CtEntry, ctEntriesFor, CtKey, NAT } from '../../src/objects/nat.js';
import type { InstancePaths } from '../../src/objects/paths.js';
import { createRegistry } from '../../src/observe/metrics.js';
import { BpfObject, type BpfMap } from '../../src/sys/libbpf.js';
import { monotonicCoarseNs } from '../../src/sys/libc.js';
import { builtObject, PinRoot } from '../helpers/bpf.js';

const FLOWS = 1024;
const CAPACITY = ctEntriesFor(FLOWS); // as `--conntrack-max 1024` sizes the table

let pins: PinRoot;
let nat: BpfObject | undefined;
let ct: BpfMap;

/** Distinct conntrack keys first..first+n-1, packed, and their entries (seen now, so nothing expires). */
function batch(first: number, n: number): { keys: Buffer; values: Buffer } {
  const keys = Buffer.alloc(n * CtKey.size);
  const values = Buffer.alloc(n * CtEntry.size);
  const e = CtEntry.encode({ ...CtEntry.decode(Buffer.alloc(CtEntry.size)), last_seen_ns: monotonicCoarseNs(), state: 3 });
  for (let i = 0; i < n; i++) {
    const x = first + i;
    CtKey.encode({ src: 0x0a000000 + (x >>> 8), dst: 0xc6336407, sport: 1024 + (x & 0xff), dport: 443, proto: 6, pad: Buffer.alloc(3) }, keys, i * CtKey.size);
    e.copy(values, i * CtEntry.size);
  }
  return { keys, values };
}

function insert(first: number, n: number): void {
  for (let at = 0; at < n; at += 1024) {
    const { keys, values } = batch(first + at, Math.min(1024, n - at));
    ct.updateBatch(keys, values, keys.length / CtKey.size);
  }
}

/** Every key in the table, packed: the full walk (batched lookups from user space). */
function allKeys(): Buffer {
  const parts: Buffer[] = [];
  ct.scan((keys, _v, n) => parts.push(Buffer.from(keys.subarray(0, n * CtKey.size))));
  return Buffer.concat(parts);
}
const walked = () => allKeys().length / CtKey.size;

function clear(): void {
  const keys = allKeys();
  ct.deleteKeys(keys, keys.length / CtKey.size);
}

beforeAll(() => {
  pins = new PinRoot('mapcount');
  nat = BpfObject.open(builtObject(NAT.object), { pinRoot: pins.dir, programs: [] });
  nat.setMaxEntries(NAT.maps.ct, CAPACITY);
  ct = nat.load().map(NAT.maps.ct);
});
afterAll(() => {
  nat?.close();
  pins?.cleanup();
});

describe('conntrack entries counted in the kernel', () => {
  it("uses the kernel's own element count where it has one (6.6+: bpf_map_sum_elem_count), probed by loading", () => {
    const kernelHasIt = / bpf_map_sum_elem_count$/m.test(readFileSync('/proc/kallsyms', 'utf8'));
    const best = MapCounter.open();
    try {
      if (kernelHasIt) expect(best.method).toBe('kfunc');
      else expect(best.method).not.toBe('kfunc');
    } finally {
      best.close();
    }
  });

  for (const method of COUNT_METHODS) {
    let counter: MapCounter | undefined;
    let refused = '';
    try {
      counter = MapCounter.open(method);
    } catch (e) {
      // This machine's kernel refuses element iterators (and fentry/fexit) with EPERM: a sandbox
      // policy, not the kernel's version. Debian's 6.1 runs 'walk' (no kfunc there).
      refused = (e as Error).message.split('\n')[0];
    }
    afterAll(() => counter?.close());

    it.skipIf(!counter)(`${method}: exactly what a full walk finds, through inserts, a full table and deletes${refused ? ` (refused here: ${refused})` : ''}`, () => {
      const c = counter!;
      clear();
      expect(c.entries(ct)).toBe(0);

      insert(0, 1000);
      expect(walked()).toBe(1000);
      expect(c.entries(ct)).toBe(1000);

      insert(1000, CAPACITY - 1000); // full
      expect(() => insert(CAPACITY, 10)).toThrow(); // a plain hash refuses past capacity (it evicts nothing)
      const full = walked();
      expect(full).toBe(CAPACITY);
      expect(c.entries(ct)).toBe(full);

      const some = allKeys().subarray(0, 300 * CtKey.size); // 300 keys present now
      expect(ct.deleteKeys(some, 300)).toBe(300);
      expect(walked()).toBe(full - 300);
      expect(c.entries(ct)).toBe(full - 300);

      clear();
      expect(c.entries(ct)).toBe(0);
    });
  }

  it("is what `stats` and the scrape's xdpnet_conntrack_entries report", async () => {
    clear();
    insert(5000, 777);
    const inst = { name: 'host', dir: pins.dir, maps: pins.dir, links: `${pins.dir}/no-links` } as InstancePaths;
    expect(mapCounter().entries(ct)).toBe(777);
    expect(ctCounters(inst)).toMatchObject({ entries: 777, max: CAPACITY });
    const text = await createRegistry({ instances: () => [inst] }).metrics();
    expect(text).toMatch(/^xdpnet_conntrack_entries\{netns="host"\} 777$/m);
    expect(text).toMatch(new RegExp(`^xdpnet_conntrack_capacity_entries\\{netns="host"\\} ${CAPACITY}$`, 'm'));
    expect(text).toMatch(/^xdpnet_scrape_errors 0$/m);
    clear();
  });
});
