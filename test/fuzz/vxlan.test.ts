// Fuzzes a VTEP's uplink programs (xn_vx_uplink at XDP, xn_vx_uplink_tc)
// through BPF_PROG_RUN: VXLAN for three VNIs in two bridges (one VNI not
// learning, with one known peer), VXLAN inside VXLAN, VNIs and ports that are
// not ours, other UDP and non-UDP, all mutated. Each frame against
// vxlan-ref.ts (verdict, drop reason, the inner frame as it leaves, the
// flood note's bridge and VLAN); each batch against the maps (counters, drops
// by reason, the FDB: a MAC learned in another VNI's bridge or VLAN, or from a
// frame the reference drops, is an entry too many).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDropsByIface } from '../../src/dataplane/stats.js';
import { enterNetns } from '../../src/dataplane/host.js';
import {
  Bridge, BR_GEN_MAP, BRIDGE, DevmapVal, FDB_FLAGS, FdbEntry, FdbKey, floodList, FloodKey, invalidateCache, Port, PORT_FLAGS, Vlan, VlanKey,
  Vtep, VTEP_FLAGS, VXLAN, VxPeerKey, VxPortKey,
} from '../../src/objects/bridge.js';
import { ipv4ToNum, struct, u32 } from '../../src/objects/codec.js';
import type { BpfMap, BpfObject } from '../../src/sys/libbpf.js';
import { ifNameToIndex } from '../../src/sys/libc.js';
import { readCounters } from '../../src/dataplane/slots.js';
import { builtObject, giveSlots, PinRoot, TC, XDP } from '../helpers/bpf.js';
import { eth, ETH_P, mac } from '../helpers/packet.js';
import { cleanup, netns, sh, veth } from '../helpers/sys.js';
import { egressTag, fdbKey, retagged, type Outcome, type RefPort, type RefSwitch } from './bridge-ref.js';
import { FRAMES, frame, l3, mutate, Rng, runSeed, vxlanPacket, type Addrs } from './gen.js';
import { Mismatches, Runner, runBatches, started } from './harness.js';
import { canon, diff, fdbNow, tcBytes } from './switch-maps.js';
import { vxlanRef, type RefVtep } from './vxlan-ref.js';

const LOCAL = '192.0.2.1';
const R2 = '192.0.2.2';
const MACS = { a: '02:00:00:00:00:0a', b: '02:00:00:00:00:0b', x: '02:00:00:00:01:01', y: '02:00:00:00:01:02' };
const INNER: Addrs = {
  macs: [...Object.values(MACS), 'ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:01', '00:00:00:00:00:00'],
  ips: ['10.0.0.1', '10.0.0.2', '255.255.255.255'],
  ports: [53, 80, 4789],
};
const OUTER: Addrs = { macs: ['02:00:00:00:02:01', '02:00:00:00:02:02'], ips: [LOCAL, R2, '192.0.2.3', '198.51.100.1'], ports: [4789, 8472, 53] };
/** p1, p2: bridge 1, access VLAN 1; p3: bridge 1 trunk, VLAN 1 untagged, 10 tagged; p5: bridge 2, access VLAN 1. */
const PORTS: Record<string, RefPort> = {
  p1: { bridge: 1, pvid: 1, access: true, learning: true, vlans: new Map([[1, true]]) },
  p2: { bridge: 1, pvid: 1, access: true, learning: true, vlans: new Map([[1, true]]) },
  p3: { bridge: 1, pvid: 1, access: false, learning: true, vlans: new Map([[1, true], [10, false]]) },
  p5: { bridge: 2, pvid: 1, access: true, learning: true, vlans: new Map([[1, true]]) },
};
const VTEPS: RefVtep[] = [
  { vni: 100, bridge: 1, vid: 1, local: LOCAL, port: 4789, learning: true, peers: [] },
  { vni: 101, bridge: 1, vid: 10, local: LOCAL, port: 4789, learning: false, peers: [R2] },
  { vni: 200, bridge: 2, vid: 1, local: LOCAL, port: 4789, learning: true, peers: [] },
];
const VNIS = [100, 101, 200, 300, 0];
/** Static: A behind p1 (bridge 1, VLAN 1); B behind p3 in VLAN 10; X behind R2 in VNI 100; B behind p5 in bridge 2. */
const STATIC: Array<[number, number, string, string, string?]> = [[1, 1, MACS.a, 'p1'], [1, 10, MACS.b, 'p3'], [1, 1, MACS.x, 'up0', R2], [2, 1, MACS.b, 'p5']];
const BrMeta = struct('xn_br_meta', { bridge: 'u32', vid: 'u16', tagged: 'u16' });

/** The bridges' FDB ageing: longer than any run, as the reference has no clock. At 300 s, a 10^7-frame
 * run on a loaded machine outlived it and learned entries aged out mid-epoch (floods where the reference forwards). */
const AGEING = 1_000_000;

type Hook = 'xdp' | 'tc';
const VERDICT: Record<Hook, Record<Outcome['cls'], number>> = {
  xdp: { pass: XDP.PASS, local: XDP.PASS, drop: XDP.DROP, flood: XDP.REDIRECT, forward: XDP.REDIRECT, encap: XDP.REDIRECT },
  tc: { pass: TC.OK, local: TC.OK, drop: TC.SHOT, flood: TC.SHOT, forward: TC.REDIRECT, encap: TC.REDIRECT }, // no encap from the uplink: split horizon
};

describe('fuzz: VXLAN uplink programs', () => {
  let pins: PinRoot;
  let br: BpfObject;
  const ifx: Record<string, number> = {};
  const maps = new Map<string, BpfMap>(); // opened once: br.map() asks the kernel for the map's info every time
  const map = (name: string): BpfMap => maps.get(name) ?? maps.set(name, br.map(name)).get(name)!;

  beforeAll(() => {
    const ns = netns('fzvx');
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    for (const p of [...Object.keys(PORTS), 'up0']) veth(ns, p, ns, `${p}x`);
    sh('ip', ['-n', ns, 'addr', 'add', `${LOCAL}/24`, 'dev', 'up0']);
    pins = new PinRoot('fzvx');
    enterNetns(ns);
    for (const p of [...Object.keys(PORTS), 'up0']) ifx[p] = ifNameToIndex(p);
    br = pins.open(builtObject(BRIDGE.object));
  });
  afterAll(() => {
    pins?.cleanup();
    cleanup();
  });

  function configure(): RefSwitch {
    for (const name of [...Object.values(BRIDGE.maps), ...Object.values(VXLAN.maps), 'xn_drops', 'xn_if_slots']) {
      const m = map(name);
      for (const k of [...m.keys()]) m.delete(k);
    }
    for (const k of [...map('xn_if_stats').keys()]) map('xn_if_stats').update(k, Buffer.alloc(map('xn_if_stats').valueBufSize));
    invalidateCache(map(BR_GEN_MAP));
    for (const id of [1, 2]) {
      map(BRIDGE.maps.bridges).update(u32(id), Bridge.encode({ mac: mac(`02:b0:00:00:00:0${id}`), flags: 0, ageing_sec: AGEING, max_learned: 0, learned: 0, name: Buffer.from(`br${id}`) }));
    }
    const slots = giveSlots(br, [...Object.keys(PORTS), 'up0'].map((p) => ifx[p]));
    for (const [name, p] of Object.entries(PORTS)) {
      map(BRIDGE.maps.ports).update(u32(ifx[name]), Port.encode({ bridge: p.bridge, pvid: p.pvid, flags: PORT_FLAGS.LEARNING | (p.access ? PORT_FLAGS.ACCESS : 0), slot: slots.get(ifx[name])! }));
      for (const [vid, untagged] of p.vlans) map(BRIDGE.maps.vlans).update(VlanKey.encode({ ifindex: ifx[name], vid, pad: 0 }), Vlan.encode({ untagged: untagged ? 1 : 0 }));
      map(BRIDGE.maps.txPorts).update(u32(ifx[name]), DevmapVal.encode({ ifindex: ifx[name], prog_fd: br.program(BRIDGE.programs.egress).fd }));
    }
    for (const [bridge, vid] of [[1, 1], [1, 10], [2, 1]]) {
      const members = Object.entries(PORTS).filter(([, p]) => p.bridge === bridge && egressTag(p, vid) !== undefined).map(([n]) => ifx[n]);
      map(BRIDGE.maps.flood).update(FloodKey.encode({ bridge, vid, pad: 0 }), floodList(members));
    }
    for (const v of VTEPS) {
      map(VXLAN.maps.vteps).update(u32(v.vni), Vtep.encode({
        bridge: v.bridge, vid: v.vid, flags: v.learning ? VTEP_FLAGS.LEARNING : 0, local: ipv4ToNum(v.local), ifindex: ifx.up0, port: v.port, pad: 0,
      }));
      map(VXLAN.maps.vlans).update(FloodKey.encode({ bridge: v.bridge, vid: v.vid, pad: 0 }), u32(v.vni));
      for (const peer of v.peers) map(VXLAN.maps.peers).update(VxPeerKey.encode({ vni: v.vni, addr: ipv4ToNum(peer) }), u32(1));
    }
    map(VXLAN.maps.ports).update(VxPortKey.encode({ local: ipv4ToNum(LOCAL), port: 4789, pad: 0 }), u32(1));
    const ref: RefSwitch = { macs: new Map([[1, '02:b0:00:00:00:01'], [2, '02:b0:00:00:00:02']]), ports: new Map(Object.entries(PORTS)), fdb: new Map() };
    for (const [bridge, vid, m, port, remote] of STATIC) {
      map(BRIDGE.maps.fdb).update(FdbKey.encode({ bridge, vid, mac: mac(m) }),
        FdbEntry.encode({ ifindex: ifx[port], remote: remote ? ipv4ToNum(remote) : 0, updated_ns: 0n, flags: FDB_FLAGS.STATIC, ageing_sec: 0 }));
      ref.fdb.set(fdbKey(bridge, vid, m), remote ? { port, isStatic: true, remote } : { port, isStatic: true });
    }
    return ref;
  }

  /** A frame for the uplink: mostly VXLAN to our address and port, sometimes anything else. */
  function uplinkFrame(r: Rng): Buffer {
    const inner = frame(r, INNER, [0, 1, 10], r.chance(0.9) ? l3(r, INNER) : r.bytes(r.int(30)), ETH_P.IPV4, 0.1);
    const outer = { src: r.pick(OUTER.ips), dst: r.chance(0.9) ? LOCAL : r.pick(OUTER.ips) };
    const l3o = r.chance(0.85) ? vxlanPacket(r, INNER, VNIS, inner, outer) : l3(r, OUTER);
    return eth({ dst: OUTER.macs[0], src: OUTER.macs[1] }, l3o);
  }

  function fuzz(hook: Hook): void {
    const seed = runSeed();
    const since = started();
    const r = new Rng(seed);
    let ref = configure();
    const runner = new Runner(br.program(hook === 'xdp' ? VXLAN.programs.uplink : VXLAN.programs.uplinkTc), hook);
    const mismatches = new Mismatches(seed);
    const fail = mismatches.fail.bind(mismatches);
    type Counts = Record<string, Record<string, number>>;
    let want: Counts = {};
    const add = (port: string, what: string) => void ((want[port] ??= {})[what] = (want[port][what] ?? 0) + 1);
    const reset = () => {
      ref = configure();
      want = {};
    };
    let decapped = 0;

    /** Frame i: drawn, run, checked against the reference and accounted in `want`. */
    const step = (i: number) => {
      const { frame: f, how } = mutate(r, uplinkFrame(r), 0.6);
      const res = runner.run(ifx.up0, f);
      if (!res) return { frame: f, how, ran: false };
      const o = vxlanRef(ref, VTEPS, 'up0', f, hook);
      add('up0', 'rx');
      if (o.learned) add('up0', 'learned');
      if (o.cls === 'drop') add('up0', `drop ${o.reason}`);
      if (o.cls === 'flood') {
        add('up0', 'flooded');
        if (hook === 'tc') for (const m of o.members) add(m, 'tx');
      }
      if (o.cls === 'forward') add(o.out, 'tx');
      if (o.cls === 'forward' || o.cls === 'flood') decapped++;
      const where = () => `${hook} verdict ${res.retval}, reference ${JSON.stringify({ ...o, inner: undefined, vtep: o.vtep?.vni })}`;
      if (res.retval !== VERDICT[hook][o.cls]) {
        fail(i, f, how, where());
      } else if (o.cls === 'pass') {
        if (!res.data.equals(f)) fail(i, f, how, `passed changed: ${res.data.toString('hex')}`);
      } else if (o.cls === 'forward' || (o.cls === 'flood' && hook === 'xdp')) {
        const inner = o.inner!;
        const exp = o.cls === 'flood' ? Buffer.concat([BrMeta.encode({ bridge: o.vtep!.bridge, vid: o.vtep!.vid, tagged: 0 }), inner])
          : hook === 'xdp' ? retagged(inner, o.vtep!.vid, o.tag) : tcBytes(inner, o.tag);
        if (!res.data.equals(exp)) fail(i, f, how, `${where()}: out\n  ${res.data.toString('hex')}\n  expected\n  ${exp.toString('hex')}`);
      }
      return { frame: f, how, ran: true };
    };

    /** How the maps differ from what the reference expects of every frame so far, or ''. */
    const checkMaps = (): string => {
      const bad: string[] = [];
      const got: Counts = {};
      const counters = readCounters(map('xn_if_slots'), map('xn_if_stats')); // one read of each map a batch
      const drops = readDropsByIface(map('xn_drops'));
      for (const p of [...Object.keys(PORTS), 'up0']) {
        const c = counters.get(ifx[p])!;
        const g: Record<string, number> = {};
        for (const [k, n] of [['rx', c.rx_packets], ['tx', c.tx_packets], ['flooded', c.flooded], ['learned', c.learned]] as const) if (n) g[k] = Number(n);
        for (const [reason, n] of Object.entries(drops.get(ifx[p]) ?? {})) g[`drop ${reason}`] = n;
        const dropped = Object.entries(g).filter(([k]) => k.startsWith('drop ')).reduce((a, [, n]) => a + n, 0);
        if (Number(c.dropped) !== dropped) bad.push(`${p}: dropped ${c.dropped}, ${dropped} by reason`);
        if (Object.keys(g).length) got[p] = g;
      }
      if (canon(got) !== canon(want)) bad.push(diff(got, want));
      const now = fdbNow(br, ifx);
      if (canon([...now].sort()) !== canon([...ref.fdb].sort())) bad.push(`fdb ${canon([...now].sort())}\n  expected ${canon([...ref.fdb].sort())}`);
      return bad.join('; ');
    };

    const { run } = runBatches({ program: `vxlan uplink ${hook}`, rng: r, frames: FRAMES, since, mismatches, step, checkMaps, reset, needsReset: () => ref.fdb.size > 4000 });
    runner.close();
    console.log(`  ${decapped} decapsulated`);
    expect(decapped).toBeGreaterThan(run / 20); // the generator must keep reaching decapsulation
    expect(mismatches.list.filter(Boolean), `seed ${seed}: ${mismatches.list.length} mismatches`).toEqual([]);
  }

  it('XDP (xn_vx_uplink) agrees with the reference on every frame', () => fuzz('xdp'), 600_000);
  it('tc (xn_vx_uplink_tc) agrees with the reference on every frame', () => fuzz('tc'), 600_000);
});
