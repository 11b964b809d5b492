// The bridge test bench shared by test/bpf/bridge-*.test.ts (split by feature
// from one file). The test process enters a private
// namespace with four veth ports; a capture program on each port's far end
// records exactly what the bridge sent out of it. XDP runs with live frames
// or, where the kernel's live frames cannot be cloned, on the wire
// (helpers/xdp-send.ts; either way the devmap egress program really runs), tc with BPF_PROG_RUN (its
// floods are real clones, its unicast verdict is checked with tx counters).
import { readCacheStats, readDrops } from '../../src/dataplane/stats.js';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { enterNetns } from '../../src/dataplane/host.js';
import {
  BR_GEN_MAP, Bridge, BRIDGE, invalidateCache, DevmapVal, FDB_FLAGS, FdbEntry, FdbKey, floodList, FloodKey, Port, PORT_FLAGS, Vlan, VlanKey,
} from '../../src/objects/bridge.js';
import { u32 } from '../../src/objects/codec.js';
import { BR_CACHE, sizeCache } from '../../src/objects/memory.js';
import type { InstancePaths } from '../../src/objects/paths.js';
import { BPF_XDP, BpfMap, BpfObject, linkCreate, numPossibleCpus, XDP_FLAGS_DRV_MODE } from '../../src/sys/libbpf.js';
import { close, ifNameToIndex } from '../../src/sys/libc.js';
import { builtObject, fixtureObject, giveSlots, ifCounters, PinRoot, skbMd, xdpMd } from '../helpers/bpf.js';
import { eth, ETH_P, hex, mac, udp4 } from '../helpers/packet.js';
import { cleanup, netns, sh, veth } from '../helpers/sys.js';
import { XdpSender } from '../helpers/xdp-send.js';

export const BR = 1;
export const BR_MAC = '02:b0:00:00:00:01';
export const A = '02:00:00:00:00:0a';
export const B = '02:00:00:00:00:0b';
export const C = '02:00:00:00:00:0c';
export const BCAST = 'ff:ff:ff:ff:ff:ff';
export const PORTS = ['p1', 'p2', 'p3', 'p4'] as const;
export type PortName = (typeof PORTS)[number];

export const payload = udp4({ src: '10.0.0.1', dst: '10.0.0.2', sport: 1111, dport: 2222 }, Buffer.from('xdpnet bridge test'));
export const frame = (dst: string, src: string, vlan?: number) => eth({ dst, src, type: ETH_P.IPV4, vlan }, payload);

/**
 * The namespace, the loaded bridge object with its capture programs, the maps
 * reset before each test (hooks registered in the calling describe), and the
 * helpers that drive them.
 */
export function bridgeWorld() {
  let pins: PinRoot;
  let br: BpfObject;
  let cap: BpfObject;
  let sender: XdpSender;
  let other: XdpSender | undefined;
  const ifx = {} as Record<PortName, number>;
  const links: number[] = [];
  const map = (name: string): BpfMap => br.map(name);
  let cachePart = 0;

  beforeAll(() => {
    const ns = netns('bridge');
    // IPv4 only: the ports' own IPv6 autoconfiguration frames would show up in the captures.
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    for (const p of PORTS) {
      veth(ns, p, ns, `${p}x`);
      // Tags leave in the frame, as on a NIC without VLAN offload: veth would
      // otherwise carry tc's tag out of band, where XDP capture cannot see it.
      sh('ip', ['netns', 'exec', ns, 'ethtool', '-K', p, 'txvlan', 'off']);
    }
    pins = new PinRoot('bridge'); // on the host bpffs: entering the netns keeps our mounts
    enterNetns(ns);
    for (const p of PORTS) ifx[p] = ifNameToIndex(p);
    // The decision cache at its smallest size, not as compiled: the BPF side must index what the loader sized.
    br = pins.open(builtObject(BRIDGE.object), (o) => {
      cachePart = sizeCache(o, { maps: pins.dir } as InstancePaths, BR_CACHE, 1, numPossibleCpus());
    });
    cap = pins.open(fixtureObject('capture'));
    sender = new XdpSender(pins);
    for (const p of PORTS) {
      links.push(linkCreate(cap.program('xn_capture').fd, ifNameToIndex(`${p}x`), BPF_XDP, XDP_FLAGS_DRV_MODE, `capture on ${p}x`));
    }
  });
  afterAll(() => {
    sender?.close();
    other?.close();
    links.forEach(close);
    pins?.cleanup();
    cleanup();
  });

  /** p1, p2: access VLAN 1; p3: trunk VLANs 1 and 10 (tagged), no PVID; p4: access VLAN 10. */
  beforeEach(() => {
    for (const name of Object.values(BRIDGE.maps)) {
      const m = map(name);
      for (const k of [...m.keys()]) m.delete(k);
    }
    for (const m of [map('xn_if_stats'), map('xn_drops'), map('xn_cache_stats')]) for (const k of [...m.keys()]) m.update(k, Buffer.alloc(m.valueBufSize));
    invalidateCache(map(BR_GEN_MAP)); // as the control process does after every change
    map(BRIDGE.maps.bridges).update(u32(BR), Bridge.encode({
      mac: mac(BR_MAC), flags: 0, ageing_sec: 300, max_learned: 0, learned: 0, name: Buffer.from('br0'),
    }));
    const member: Record<PortName, Array<[number, boolean]>> = {
      p1: [[1, true]], p2: [[1, true]], p3: [[1, false], [10, false]], p4: [[10, true]],
    };
    const pvid: Record<PortName, number> = { p1: 1, p2: 1, p3: 0, p4: 10 };
    const slots = giveSlots(br, PORTS.map((p) => ifx[p]));
    for (const p of PORTS) {
      const access = member[p].length === 1 ? PORT_FLAGS.ACCESS : 0; // as the control plane writes them
      map(BRIDGE.maps.ports).update(u32(ifx[p]), Port.encode({ bridge: BR, pvid: pvid[p], flags: PORT_FLAGS.LEARNING | access, slot: slots.get(ifx[p])! }));
      for (const [vid, untagged] of member[p]) {
        map(BRIDGE.maps.vlans).update(VlanKey.encode({ ifindex: ifx[p], vid, pad: 0 }), Vlan.encode({ untagged: untagged ? 1 : 0 }));
      }
      map(BRIDGE.maps.txPorts).update(u32(ifx[p]), DevmapVal.encode({ ifindex: ifx[p], prog_fd: br.program(BRIDGE.programs.egress).fd }));
    }
    for (const vid of [1, 10]) {
      const members = PORTS.filter((p) => member[p].some(([v]) => v === vid)).map((p) => ifx[p]);
      map(BRIDGE.maps.flood).update(FloodKey.encode({ bridge: BR, vid, pad: 0 }), floodList(members));
    }
    resetCaptures();
  });

  function resetCaptures(): void {
    cap.map('xn_cap_count').update(u32(0), u32(0));
  }
  /** Frames captured since the last reset, by the port they left the bridge from. The ports' far ends
   * receive in softirq, which a loaded machine may defer: wait until the count holds still for 50 ms. */
  function captured(): Partial<Record<PortName, string[]>> {
    const count = () => cap.map('xn_cap_count').lookup(u32(0))!.readUInt32LE(0);
    const nap = new Int32Array(new SharedArrayBuffer(4));
    let n = count();
    for (let still = 0, i = 0; still < 5 && i < 100; i++) {
      Atomics.wait(nap, 0, 0, 10);
      const m = count();
      still = m === n ? still + 1 : 0;
      n = m;
    }
    const out: Partial<Record<PortName, string[]>> = {};
    for (let i = 0; i < n; i++) {
      const c = cap.map('xn_cap').lookup(u32(i))!;
      const port = PORTS.find((p) => ifNameToIndex(`${p}x`) === c.readUInt32LE(0))!;
      (out[port] ??= []).push(hex(c.subarray(8, 8 + c.readUInt32LE(4))));
    }
    resetCaptures();
    return out;
  }
  const xdpCtx = (p: PortName, f: Buffer) => xdpMd(ifx[p], f.length);
  /** The XDP verdict, without sending anything. */
  const xdpVerdict = (p: PortName, f: Buffer) => br.program(BRIDGE.programs.xdp).testRun({ data: f, ctx: xdpCtx(p, f) }).retval;
  /** Sends the frame through the XDP path for real and returns what came out where. */
  function xdpSend(p: PortName, f: Buffer) {
    sender.send(br.program(BRIDGE.programs.xdp), p, f);
    return captured();
  }
  /** As xdpSend, the way given (helpers/xdp-send.ts), whatever this kernel would use. */
  function xdpSendBy(mode: 'wire' | 'live', p: PortName, f: Buffer) {
    const s = mode === sender.mode ? sender : (other ??= new XdpSender(pins, mode));
    s.send(br.program(BRIDGE.programs.xdp), p, f);
    return captured();
  }
  function tcRun(p: PortName, f: Buffer) {
    return br.program(BRIDGE.programs.tc).testRun({ data: f, ctx: skbMd(ifx[p]) });
  }
  function fdb(m: string, vid = 1) {
    const v = map(BRIDGE.maps.fdb).lookup(FdbKey.encode({ bridge: BR, vid, mac: mac(m) }));
    return v && FdbEntry.decode(v);
  }
  function addStatic(m: string, p: PortName, vid = 1) {
    map(BRIDGE.maps.fdb).update(FdbKey.encode({ bridge: BR, vid, mac: mac(m) }),
      FdbEntry.encode({ ifindex: ifx[p], remote: 0, updated_ns: 0n, flags: FDB_FLAGS.STATIC, ageing_sec: 0 }));
  }
  function stats(p: PortName) {
    return ifCounters(br, ifx[p]);
  }
  const drops = () => readDrops(map('xn_drops'));
  const caches = () => readCacheStats(map('xn_cache_stats'));

  return {
    get pins() { return pins; }, get br() { return br; }, get cap() { return cap; }, get cachePart() { return cachePart; },
    addStatic, caches, captured, drops, fdb, ifx, links, map, resetCaptures, stats, tcRun, xdpCtx, xdpSend, xdpSendBy, xdpVerdict,
  };
}
