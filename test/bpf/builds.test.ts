// Programs loaded once per instance (objects/builds.ts) and the map layout
// record (objects/layout.ts), on a private instance folder on bpffs.
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BRIDGE, bridgePrograms, FdbEntry, FdbKey, pinBridgeMaps, VlanKey, FloodKey } from '../../src/objects/bridge.js';
import { BuildChanged, BUILD_SALT_ENV, forgetBuilds, pinnedBuilds } from '../../src/objects/builds.js';
import { LAYOUT_MAP, objectLayouts, readLayouts } from '../../src/objects/layout.js';
import { objectPath, type InstancePaths } from '../../src/objects/paths.js';
import { BpfMap, BpfObject, progId } from '../../src/sys/libbpf.js';

describe('programs loaded once per instance, by build', () => {
  let inst: InstancePaths;
  beforeAll(() => {
    const dir = mkdtempSync('/sys/fs/bpf/xdpnet-builds-');
    inst = { name: 'test', dir, maps: join(dir, 'maps'), links: join(dir, 'links'), progs: join(dir, 'progs') };
    mkdirSync(inst.maps);
  });
  afterAll(() => rmSync(inst.dir, { recursive: true, force: true }));
  afterEach(() => delete process.env[BUILD_SALT_ENV]);

  const ids = () => {
    const set = bridgePrograms(inst);
    try {
      return set.names.map((n) => progId(set.program(n).fd, n));
    } finally {
      set.close();
    }
  };

  it('the first load records the layout of every pinned map, as the object\'s BTF has it', () => {
    pinBridgeMaps(inst);
    const rec = readLayouts(inst);
    const o = BpfObject.open(objectPath(BRIDGE.object), { pinRoot: inst.maps });
    try {
      const layouts = objectLayouts(o);
      expect(layouts.length).toBeGreaterThan(10);
      for (const l of layouts) expect(rec.get(l.map), l.map).toEqual(l);
    } finally {
      o.close();
    }
    expect(rec.get(BRIDGE.maps.fdb)).toMatchObject({ keySize: FdbKey.size, valueSize: FdbEntry.size });
    // same size and shape, other field names (ifindex vs bridge): another layout
    const vlans = rec.get(BRIDGE.maps.vlans)!;
    const flood = rec.get(BRIDGE.maps.flood)!;
    expect([vlans.keySize, flood.keySize]).toEqual([VlanKey.size, FloodKey.size]);
    expect(VlanKey.size).toBe(FloodKey.size);
    expect(vlans.keyHash).not.toBe(flood.keyHash);
    expect(readdirSync(inst.maps)).toContain(LAYOUT_MAP);
  });

  it('loads the object once and pins every program; later opens reuse the pins', () => {
    const first = ids();
    expect(pinnedBuilds(inst, BRIDGE.object)).toHaveLength(1);
    const [build] = pinnedBuilds(inst, BRIDGE.object);
    expect(readdirSync(join(inst.progs, `bridge-${build}`)).sort()).toEqual(['xn_br_egress', 'xn_br_tc', 'xn_br_xdp', 'xn_vx_uplink', 'xn_vx_uplink_tc']);
    expect(ids()).toEqual(first); // the same kernel programs: nothing was loaded again
  });

  it('another build of the object is refused with BuildChanged unless upgrading; upgrading pins it beside', () => {
    const old = ids();
    process.env[BUILD_SALT_ENV] = 'other';
    expect(() => bridgePrograms(inst)).toThrow(BuildChanged);
    expect(() => bridgePrograms(inst)).toThrow(/differs from the one this instance runs.*/);
    const set = bridgePrograms(inst, { upgrade: true });
    try {
      expect(progId(set.program(BRIDGE.programs.xdp).fd, 'xdp')).not.toBe(old[0]);
      expect(pinnedBuilds(inst, BRIDGE.object)).toHaveLength(2);
      forgetBuilds(inst, BRIDGE.object, set.build);
      expect(pinnedBuilds(inst, BRIDGE.object)).toEqual([set.build]);
    } finally {
      set.close();
    }
  });

  it('a pinned map replaced since (a resized cache) makes the pinned programs another build', () => {
    process.env[BUILD_SALT_ENV] = 'other';
    ids();
    rmSync(join(inst.maps, BRIDGE.maps.arp)); // the next load creates a new one
    pinBridgeMaps(inst);
    expect(() => bridgePrograms(inst)).toThrow(BuildChanged);
  });

  it('a load killed before its rename leaves a folder the next load removes', () => {
    const dead = join(inst.progs, 'bridge-0000000000000000-tmp999999');
    mkdirSync(dead);
    process.env[BUILD_SALT_ENV] = 'other';
    bridgePrograms(inst, { upgrade: true }).close();
    expect(readdirSync(inst.progs).filter((d) => d.includes('-tmp'))).toEqual([]);
  });

  it('refuses a build whose map layout differs from the record, before loading anything', () => {
    const before = readdirSync(inst.progs).sort();
    BpfMap.usePin(join(inst.maps, LAYOUT_MAP), (m) => {
      const k = Buffer.alloc(32);
      k.write(BRIDGE.maps.ports);
      const v = m.lookup(k)!;
      v.writeUInt32LE(v.readUInt32LE(4) + 4, 4); // recorded value size differs
      m.update(k, v);
    });
    process.env[BUILD_SALT_ENV] = 'third';
    expect(() => bridgePrograms(inst, { upgrade: true })).toThrow(/xn_ports: value size 16 → 12 bytes/);
    expect(readdirSync(inst.progs).sort()).toEqual(before);
  });
});
