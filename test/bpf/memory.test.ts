// The formulas behind docs/memory.md against the kernel's own charge for the
// maps as the loaders size them (memlock in their fdinfo), byte for byte.
import { afterAll, describe, expect, it } from 'vitest';
import { BRIDGE, FdbEntry, FdbKey } from '../../src/objects/bridge.js';
import { BR_CACHE, cachePart, mapBytes, mapMemlock, NAT_HOT, sizeCache, type MapShape } from '../../src/objects/memory.js';
import { CtEntry, CtKey, ctEntriesFor, NAT } from '../../src/objects/nat.js';
import type { InstancePaths } from '../../src/objects/paths.js';
import { numPossibleCpus, type BpfObject } from '../../src/sys/libbpf.js';
import { builtObject, kernelCharge, PinRoot } from '../helpers/bpf.js';

describe('map memory', () => {
  const cpus = numPossibleCpus();
  const roots: PinRoot[] = [];
  /** Each case its own pins: a pinned map of another size would not be adopted. */
  const fresh = (tag: string) => {
    roots.push(new PinRoot(`memory-${tag}`));
    return roots[roots.length - 1];
  };
  afterAll(() => roots.forEach((r) => r.cleanup()));

  const charged = (o: BpfObject, map: string, shape: Omit<MapShape, 'maxEntries'>) => {
    const m = o.map(map);
    return { kernel: mapMemlock(m), formula: kernelCharge({ ...shape, maxEntries: m.info.maxEntries }, cpus) };
  };

  for (const flows of [1000, 50_000]) {
    it(`matches for conntrack and NAT's hot copies sized for ${flows} flows`, () => {
      const pins = fresh(`nat-${flows}`);
      const nat = pins.open(builtObject(NAT.object), (o) => {
        o.setMaxEntries(NAT.maps.ct, ctEntriesFor(flows));
        sizeCache(o, { maps: pins.dir } as InstancePaths, NAT_HOT, flows, cpus);
      });
      expect(nat.map(NAT.maps.ct).info.maxEntries).toBe(ctEntriesFor(flows));
      expect(nat.map(NAT_HOT.map).info.maxEntries).toBe(cachePart(NAT_HOT, flows, cpus) * cpus);
      const ct = charged(nat, NAT.maps.ct, { kind: 'hash', keySize: CtKey.size, valueSize: CtEntry.size });
      expect(ct.formula).toBe(ct.kernel);
      const hot = charged(nat, NAT_HOT.map, { kind: 'array', keySize: 4, valueSize: NAT_HOT.entryBytes, mmapable: true });
      expect(hot.formula).toBe(hot.kernel);
    });

    it(`matches for the FDB and the bridges' decision cache sized for ${flows} flows`, () => {
      const pins = fresh(`br-${flows}`);
      const br = pins.open(builtObject(BRIDGE.object), (o) => {
        o.setMaxEntries(BRIDGE.maps.fdb, flows); // any size: the formula must follow it
        sizeCache(o, { maps: pins.dir } as InstancePaths, BR_CACHE, flows, cpus);
      });
      const fdb = charged(br, BRIDGE.maps.fdb, { kind: 'hash', keySize: FdbKey.size, valueSize: FdbEntry.size });
      expect(fdb.formula).toBe(fdb.kernel);
      const cache = charged(br, BR_CACHE.map, { kind: 'array', keySize: 4, valueSize: BR_CACHE.entryBytes, mmapable: true });
      expect(cache.formula).toBe(cache.kernel);
    });
  }

  it('matches for the monitor\'s ring buffer (the figure status --memory shows before 6.4, whose fdinfo says 0 for it)', () => {
    const br = fresh('ring').open(builtObject(BRIDGE.object));
    const m = br.map('xn_events');
    expect(m.info.maxEntries).toBe(1 << 20);
    expect(mapMemlock(m)).toBe(mapBytes({ kind: 'ringbuf', keySize: 0, valueSize: 0, maxEntries: m.info.maxEntries }, cpus));
  });
});
