// Fuzzes the bridge's XDP and tc programs through BPF_PROG_RUN, encapsulation
// towards a remote VTEP included: well-formed frames and their mutations on
// every kind of port, each checked against
// bridge-ref.ts (verdict class, drop reason, the frame's bytes as it leaves),
// and every batch against the maps (counters per port, drops per reason, the
// FDB entry for entry). Two bridges, VLANs 1 and 10: a frame that crosses
// either shows up as a counter or FDB entry where the reference has none.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDropsByIface } from '../../src/dataplane/stats.js';
import { enterNetns } from '../../src/dataplane/host.js';
import {
  Bridge, BR_GEN_MAP, BRIDGE, DevmapVal, FDB_FLAGS, FdbEntry, FdbKey, floodList, FloodKey, invalidateCache, Port, PORT_FLAGS, Vlan, VlanKey, Vtep, VXLAN, XDP_NOTES,
} from '../../src/objects/bridge.js';
import { ipv4ToNum, struct, u32 } from '../../src/objects/codec.js';
import type { BpfMap, BpfObject } from '../../src/sys/libbpf.js';
import { ifNameToIndex } from '../../src/sys/libc.js';
import { readCounters } from '../../src/dataplane/slots.js';
import { builtObject, giveSlots, PinRoot, TC, XDP } from '../helpers/bpf.js';
import { ETH_P, mac } from '../helpers/packet.js';
import { cleanup, netns, sh, veth } from '../helpers/sys.js';
import { bridgeRef, egressTag, fdbKey, retagged, type Outcome, type RefPort, type RefSwitch } from './bridge-ref.js';
import { FRAMES, frame, l3, mutate, Rng, runSeed, type Addrs } from './gen.js';
import { Mismatches, Runner, runBatches, started } from './harness.js';
import { canon, checkEncap, diff, fdbNow, tcBytes } from './switch-maps.js';

const MACS = {
  br1: '02:b0:00:00:00:01', br2: '02:b0:00:00:00:02',
  a: '02:00:00:00:00:0a', b: '02:00:00:00:00:0b', c: '02:00:00:00:00:0c', d: '02:00:00:00:00:0d', e: '02:00:00:00:00:0e',
  x: '02:00:00:00:01:01', y: '02:00:00:00:01:02',
};
const LOCAL = '192.0.2.1'; // the VTEP's address, on the uplink up0
const R2 = '192.0.2.2'; // a remote VTEP (permanent neighbour)
const R2_MAC = '02:00:00:00:02:02';
const VNI = 100; // carries bridge 1's VLAN 1; VLAN 10 has none
const ADDRS: Addrs = {
  macs: [...Object.values(MACS), 'ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:01', '00:00:00:00:00:00', '03:00:00:00:00:0a'],
  ips: ['10.0.0.1', '10.0.0.2', '224.0.0.1', '255.255.255.255', '0.0.0.0'],
  ports: [53, 80, 4789, 40000],
};
const VIDS = [0, 1, 10, 20, 4095];
/** p1, p2: access VLAN 1; p3: trunk, VLAN 1 untagged (PVID) and 10 tagged; p4: access VLAN 10, no learning; p5: bridge 2's; p6: no port. */
const PORTS: Record<string, RefPort> = {
  p1: { bridge: 1, pvid: 1, access: true, learning: true, vlans: new Map([[1, true]]) },
  p2: { bridge: 1, pvid: 1, access: true, learning: true, vlans: new Map([[1, true]]) },
  p3: { bridge: 1, pvid: 1, access: false, learning: true, vlans: new Map([[1, true], [10, false]]) },
  p4: { bridge: 1, pvid: 10, access: true, learning: false, vlans: new Map([[10, true]]) },
  p5: { bridge: 2, pvid: 1, access: true, learning: true, vlans: new Map([[1, true]]) },
};
const IFACES = [...Object.keys(PORTS), 'p6'];
/** Static entries: C behind p4 but in VLAN 1 (stale: egress denied), D behind p3 in VLAN 10, E in bridge 2;
 * X behind remote VTEP R2 in VLAN 1 (encapsulated in VNI 100), Y behind it in VLAN 10 (no VNI: dropped). */
const STATIC: Array<[number, number, string, string, string?]> = [
  [1, 1, MACS.c, 'p4'], [1, 10, MACS.d, 'p3'], [2, 1, MACS.e, 'p5'], [1, 1, MACS.x, 'up0', R2], [1, 10, MACS.y, 'up0', R2],
];

/** What XDP puts in front of a frame it floods, for the devmap egress program (bpf/include/bridge.h). */
const BrMeta = struct('xn_br_meta', { bridge: 'u32', vid: 'u16', tagged: 'u16' });

/** The bridges' FDB ageing: longer than any run, as the reference has no clock. At 300 s, a 10^7-frame
 * run on a loaded machine outlived it and learned entries aged out mid-epoch (floods where the reference forwards). */
const AGEING = 1_000_000;

type Hook = 'xdp' | 'tc';
const VERDICT: Record<Hook, Record<Outcome['cls'], number>> = {
  xdp: { pass: XDP.PASS, local: XDP.PASS, drop: XDP.DROP, flood: XDP.REDIRECT, forward: XDP.REDIRECT, encap: XDP.REDIRECT },
  tc: { pass: TC.OK, local: TC.OK, drop: TC.SHOT, flood: TC.SHOT, forward: TC.REDIRECT, encap: TC.REDIRECT }, // tc floods by clones, then drops the original
};

describe('fuzz: bridge programs', () => {
  let pins: PinRoot;
  let br: BpfObject;
  const ifx: Record<string, number> = {};
  let upMac = '';
  const maps = new Map<string, BpfMap>(); // opened once: br.map() asks the kernel for the map's info every time
  const map = (name: string): BpfMap => maps.get(name) ?? maps.set(name, br.map(name)).get(name)!;

  beforeAll(() => {
    const ns = netns('fzbr');
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    for (const p of [...IFACES, 'up0']) veth(ns, p, ns, `${p}x`);
    sh('ip', ['-n', ns, 'addr', 'add', `${LOCAL}/24`, 'dev', 'up0']);
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.conf.up0.forwarding=1']); // else bpf_fib_lookup does not answer
    sh('ip', ['-n', ns, 'neigh', 'replace', R2, 'lladdr', R2_MAC, 'dev', 'up0', 'nud', 'permanent']);
    upMac = JSON.parse(sh('ip', ['-j', '-n', ns, 'link', 'show', 'up0']))[0].address;
    pins = new PinRoot('fzbr');
    enterNetns(ns);
    for (const p of [...IFACES, 'up0']) ifx[p] = ifNameToIndex(p);
    br = pins.open(builtObject(BRIDGE.object));
  });
  afterAll(() => {
    pins?.cleanup();
    cleanup();
  });

  /** Empty maps, the ports above, and the reference's copy of them. */
  function configure(): RefSwitch {
    for (const name of [...Object.values(BRIDGE.maps), ...Object.values(VXLAN.maps), 'xn_if_stats', 'xn_drops', 'xn_if_slots']) {
      const m = map(name);
      if (name === 'xn_if_stats') for (const k of [...m.keys()]) m.update(k, Buffer.alloc(m.valueBufSize));
      else for (const k of [...m.keys()]) m.delete(k);
    }
    invalidateCache(map(BR_GEN_MAP));
    for (const [id, m] of [[1, MACS.br1], [2, MACS.br2]] as const) {
      map(BRIDGE.maps.bridges).update(u32(id), Bridge.encode({ mac: mac(m), flags: 0, ageing_sec: AGEING, max_learned: 0, learned: 0, name: Buffer.from(`br${id}`) }));
    }
    const slots = giveSlots(br, [...Object.keys(PORTS), 'up0'].map((p) => ifx[p]));
    map(VXLAN.maps.vteps).update(u32(VNI), Vtep.encode({ bridge: 1, vid: 1, flags: 0, local: ipv4ToNum(LOCAL), ifindex: ifx.up0, port: 4789, pad: 0 }));
    map(VXLAN.maps.vlans).update(FloodKey.encode({ bridge: 1, vid: 1, pad: 0 }), u32(VNI));
    for (const [name, p] of Object.entries(PORTS)) {
      const flags = (p.learning ? PORT_FLAGS.LEARNING : 0) | (p.access ? PORT_FLAGS.ACCESS : 0);
      map(BRIDGE.maps.ports).update(u32(ifx[name]), Port.encode({ bridge: p.bridge, pvid: p.pvid, flags, slot: slots.get(ifx[name])! }));
      for (const [vid, untagged] of p.vlans) map(BRIDGE.maps.vlans).update(VlanKey.encode({ ifindex: ifx[name], vid, pad: 0 }), Vlan.encode({ untagged: untagged ? 1 : 0 }));
      map(BRIDGE.maps.txPorts).update(u32(ifx[name]), DevmapVal.encode({ ifindex: ifx[name], prog_fd: br.program(BRIDGE.programs.egress).fd }));
    }
    for (const [bridge, vid] of [[1, 1], [1, 10], [2, 1]]) {
      const members = Object.entries(PORTS).filter(([, p]) => p.bridge === bridge && egressTag(p, vid) !== undefined).map(([n]) => ifx[n]);
      map(BRIDGE.maps.flood).update(FloodKey.encode({ bridge, vid, pad: 0 }), floodList(members));
    }
    const ref: RefSwitch = {
      macs: new Map([[1, MACS.br1], [2, MACS.br2]]), ports: new Map(Object.entries(PORTS)), fdb: new Map(), vnis: new Map([['1/1', VNI]]),
    };
    for (const [bridge, vid, m, port, remote] of STATIC) {
      map(BRIDGE.maps.fdb).update(FdbKey.encode({ bridge, vid, mac: mac(m) }),
        FdbEntry.encode({ ifindex: ifx[port], remote: remote ? ipv4ToNum(remote) : 0, updated_ns: 0n, flags: FDB_FLAGS.STATIC, ageing_sec: 0 }));
      ref.fdb.set(fdbKey(bridge, vid, m), remote ? { port, isStatic: true, remote } : { port, isStatic: true });
    }
    return ref;
  }

  function fuzz(hook: Hook): void {
    const seed = runSeed();
    const since = started();
    const r = new Rng(seed);
    const ref = configure();
    const runner = new Runner(br.program(hook === 'xdp' ? BRIDGE.programs.xdp : BRIDGE.programs.tc), hook);
    const mismatches = new Mismatches(seed);
    const fail = mismatches.fail.bind(mismatches);
    const want = { rx: {} as Record<string, number>, tx: {} as Record<string, number>, flooded: {} as Record<string, number>, learned: {} as Record<string, number>, drops: {} as Record<string, Record<string, number>> };
    const add = (o: Record<string, number>, k: string, n = 1) => void (o[k] = (o[k] ?? 0) + n);
    const classes: Record<string, number> = {}; // how many frames the reference saw of each outcome
    /** Maps and reference afresh: the start of an epoch. */
    const reset = () => {
      ref.fdb = configure().fdb;
      for (const o of Object.values(want)) for (const k of Object.keys(o)) delete (o as Record<string, unknown>)[k];
    };

    /** How the maps differ from what the reference expects of every frame so far, or ''. */
    const checkMaps = (): string => {
      const bad: string[] = [];
      const got = { rx: {} as Record<string, number>, tx: {} as Record<string, number>, flooded: {} as Record<string, number>, learned: {} as Record<string, number>, drops: {} as Record<string, Record<string, number>> };
      const counters = readCounters(map('xn_if_slots'), map('xn_if_stats')); // one read of each map a batch
      const drops = readDropsByIface(map('xn_drops'));
      for (const p of [...Object.keys(PORTS), 'up0']) {
        const c = counters.get(ifx[p])!;
        if (c.rx_packets) got.rx[p] = Number(c.rx_packets);
        if (c.tx_packets) got.tx[p] = Number(c.tx_packets);
        if (c.flooded) got.flooded[p] = Number(c.flooded);
        if (c.learned) got.learned[p] = Number(c.learned);
        // rx = forwarded + flooded + passed + dropped, forwarded and passed by the verdicts seen
        const d = Number(c.dropped);
        const sumDrops = Object.values(drops.get(ifx[p]) ?? {}).reduce((a, b) => a + b, 0);
        if (d !== sumDrops) bad.push(`${p}: dropped ${d} but ${sumDrops} drops by reason`);
      }
      const byIfx = new Map(Object.entries(ifx).map(([n, x]) => [x, n]));
      for (const [x, reasons] of drops) got.drops[byIfx.get(x) ?? String(x)] = reasons;
      if (canon(got) !== canon(want)) bad.push(`counters ${diff(got, want)}`);
      const now = fdbNow(br, ifx);
      if (canon([...now].sort()) !== canon([...ref.fdb].sort())) bad.push(`fdb ${canon([...now].sort())}\n  expected ${canon([...ref.fdb].sort())}`);
      return bad.join('; ');
    };

    /** Frame i: drawn, run, checked against the reference and accounted in `want`. */
    const step = (i: number) => {
      const inName = r.pick(IFACES);
      const kind = r.int(10);
      const payload = kind < 6 ? l3(r, ADDRS) : kind < 8 ? arp(r) : r.bytes(r.int(64));
      const { frame: f, how } = mutate(r, frame(r, ADDRS, VIDS, payload, kind < 6 ? ETH_P.IPV4 : kind < 8 ? ETH_P.ARP : r.pick([ETH_P.IPV6, 0x88cc, 0x0001])));
      const res = runner.run(ifx[inName], f);
      if (!res) return { frame: f, how, ran: false };
      const o = bridgeRef(ref, inName, f, hook);
      add(classes, o.cls);
      if (o.cls !== 'pass') add(want.rx, inName);
      if (o.learned) add(want.learned, inName);
      if (o.cls === 'drop') add((want.drops[inName] ??= {}), o.reason);
      if (o.cls === 'flood') {
        add(want.flooded, inName);
        if (hook === 'tc') for (const m of o.members) add(want.tx, m); // one clone each (XDP's devmap copies are not made in a test run)
      }
      if (o.cls === 'forward') add(want.tx, o.out);
      if (o.cls === 'encap') add(want.tx, 'up0');
      const tagged = f.length >= 18 && f.readUInt16BE(12) === 0x8100;
      const vid = (tagged ? f.readUInt16BE(14) & 0xfff : 0) || PORTS[inName]?.pvid;
      if (res.retval !== VERDICT[hook][o.cls]) fail(i, f, how, `${hook} verdict ${res.retval}, reference ${JSON.stringify(o)} (${VERDICT[hook][o.cls]}) from ${inName}`);
      else if (hook === 'xdp' && (o.cls === 'flood' || o.cls === 'local')) {
        // the note to the devmap program (its bridge and VLAN: a wrong one floods across) or to tc, then the frame untouched
        const note = o.cls === 'local' ? u32(XDP_NOTES.LOCAL) : BrMeta.encode({ bridge: PORTS[inName].bridge, vid, tagged: tagged ? 1 : 0 });
        const exp = Buffer.concat([note, f]);
        if (!res.data.equals(exp)) fail(i, f, how, `${o.cls}: out as\n  ${res.data.toString('hex')}\n  expected\n  ${exp.toString('hex')}`);
      } else if (o.cls === 'forward' && hook === 'xdp') {
        const exp = retagged(f, vid, o.tag);
        if (!res.data.equals(exp)) fail(i, f, how, `forwarded to ${o.out} as\n  ${res.data.toString('hex')}\n  expected\n  ${exp.toString('hex')}`);
      } else if (o.cls === 'encap') {
        const inner = hook === 'xdp' ? retagged(f, vid, false) : tcBytes(f, false);
        const bad = checkEncap(res.data, inner, { src: upMac, dst: R2_MAC, saddr: LOCAL, daddr: o.remote, vni: o.vni });
        if (bad) fail(i, f, how, `encapsulated ${bad}:\n  ${res.data.toString('hex')}`);
      } else if (o.cls !== 'drop' && o.cls !== 'flood') {
        const exp = hook === 'tc' && o.cls === 'forward' ? tcBytes(f, o.tag) : f;
        if (!res.data.equals(exp)) fail(i, f, how, `${o.cls} out as\n  ${res.data.toString('hex')}\n  expected\n  ${exp.toString('hex')}`);
      }
      return { frame: f, how, ran: true };
    };

    // the FDB fills with learned junk MACs only as fast as mutations make them: reset now and then, reference too
    const { run } = runBatches({ program: `bridge ${hook}`, rng: r, frames: FRAMES, since, mismatches, step, checkMaps, reset, needsReset: () => ref.fdb.size > 4000 });
    runner.close();
    console.log(`  ${canon(classes)}`);
    for (const cls of Object.keys(VERDICT[hook])) expect(classes[cls] ?? 0, `${cls} frames`).toBeGreaterThan(run / 200); // every rule reached
    expect(mismatches.list.filter(Boolean), `seed ${seed}: ${mismatches.list.length} mismatches`).toEqual([]);
  }

  it('XDP (xn_br_xdp) agrees with the reference on every frame', () => fuzz('xdp'), 600_000);
  it('tc (xn_br_tc) agrees with the reference on every frame', () => fuzz('tc'), 600_000);
});

/** An ARP packet, request or reply, between the test's addresses (the bridge answers none: xn_arp is empty). */
function arp(r: Rng): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16BE(1, 0);
  b.writeUInt16BE(0x0800, 2);
  b[4] = 6;
  b[5] = 4;
  b.writeUInt16BE(r.pick([1, 2]), 6);
  mac(r.pick(ADDRS.macs)).copy(b, 8);
  Buffer.from([10, 0, 0, 1 + r.int(3)]).copy(b, 14);
  Buffer.from([10, 0, 0, 1 + r.int(3)]).copy(b, 24);
  return b;
}
