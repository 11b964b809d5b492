// The VXLAN test bench shared by test/bpf/vxlan-*.test.ts (split by feature
// from one file). The test process enters a private
// namespace: bridge ports p1, p2 (access, VLAN 1) and p3 (trunk: VLANs 1 and
// 10 tagged), and the uplink up0 (192.0.2.1/24) whose far end up0x stands for
// the underlay. Capture programs on every far end record exactly what left
// each interface. Remote VTEPs 192.0.2.2 and .3 have permanent neighbour
// entries; .9 has none (unresolved), 198.51.100.1 no route.
// XDP runs with live frames (redirects, devmap egress and XDP→tc hand-over
// really happen), tc with BPF_PROG_RUN (clones are real; a unicast verdict's
// frame is the returned data). The last block interoperates with the Linux
// kernel's own vxlan device in a second namespace.
import { readCacheStats, readDrops } from '../../src/dataplane/stats.js';
import { afterAll, beforeAll, beforeEach, expect } from 'vitest';
import { enterNetns } from '../../src/dataplane/host.js';
import {
  BR_GEN_MAP, Bridge, BRIDGE, invalidateCache, DevmapVal, FDB_FLAGS, FdbEntry, FdbKey, floodList, FloodKey, Port, PORT_FLAGS, remoteList, Vlan, VlanKey, Vtep, VTEP_FLAGS, VXLAN, VxPeerKey, VxPortKey,
} from '../../src/objects/bridge.js';
import { u32, ipv4ToNum } from '../../src/objects/codec.js';
import { BPF_XDP, BpfMap, BpfObject, linkCreate, XDP_FLAGS_DRV_MODE } from '../../src/sys/libbpf.js';
import { close, ifNameToIndex } from '../../src/sys/libc.js';
import { builtObject, fixtureObject, giveSlots, ifCounters, PinRoot, skbMd, tcIngress, xdpMd } from '../helpers/bpf.js';
import { eth, ETH_P, hex, ip4, IPPROTO, mac, parse, udp, udp4, vxlan } from '../helpers/packet.js';
import { cleanup, netns, sh, sleep, veth } from '../helpers/sys.js';
import { XdpSender } from '../helpers/xdp-send.js';

export const BR = 1;
export const BR_MAC = '02:b0:00:00:00:01';
export const VNI = 100;
export const LOCAL = '192.0.2.1';
export const R2 = '192.0.2.2'; // remote VTEPs with resolved neighbours
export const R3 = '192.0.2.3';
export const R9 = '192.0.2.9'; // on link, neighbour unresolved
export const NOROUTE = '198.51.100.1';
export const R2_MAC = '02:00:00:00:02:02';
export const R3_MAC = '02:00:00:00:02:03';
export const A = '02:00:00:00:00:0a'; // behind p1
export const B = '02:00:00:00:00:0b'; // behind p2
export const X = '02:00:00:00:01:01'; // behind a remote VTEP
export const Y = '02:00:00:00:01:02';
export const C_MAC = '02:00:00:00:00:0c'; // behind p3
export const BCAST = 'ff:ff:ff:ff:ff:ff';
export const IFACES = ['p1', 'p2', 'p3', 'up0'] as const;
export type Iface = (typeof IFACES)[number];
export const PORTS = ['p1', 'p2', 'p3'] as const;

export const inner = (dst: string, src: string, vlan?: number, body = 'xdpnet vxlan test') =>
  eth({ dst, src, vlan }, udp4({ src: '10.0.0.1', dst: '10.0.0.2', sport: 1111, dport: 2222 }, Buffer.from(body)));
/** An ARP request from src (sender spa) for tpa. */
export const arp = (dst: string, src: string, spa = '10.0.0.1', tpa = '10.0.0.2') => eth({ dst, src, type: ETH_P.ARP }, Buffer.concat([
  Buffer.from('0001080006040001', 'hex'), mac(src), ip4(spa), Buffer.alloc(6), ip4(tpa)]));

// ---- the expected outer headers, built independently of the C code --------
export const rol = (w: number, s: number) => ((w << s) | (w >>> (32 - s))) >>> 0;
/** The kernel's jhash_3words. */
export function jhash3(a: number, b: number, c: number, initval: number): number {
  const iv = (initval + 0xdeadbeef + 12) >>> 0;
  a = (a + iv) >>> 0; b = (b + iv) >>> 0; c = (c + iv) >>> 0;
  c = ((c ^ b) >>> 0) - rol(b, 14) >>> 0;
  a = ((a ^ c) >>> 0) - rol(c, 11) >>> 0;
  b = ((b ^ a) >>> 0) - rol(a, 25) >>> 0;
  c = ((c ^ b) >>> 0) - rol(b, 16) >>> 0;
  a = ((a ^ c) >>> 0) - rol(c, 4) >>> 0;
  b = ((b ^ a) >>> 0) - rol(a, 14) >>> 0;
  c = ((c ^ b) >>> 0) - rol(b, 24) >>> 0;
  return c;
}
/** udp_flow_src_port()'s spreading of a hash over 49152..65535. */
export function sportOf(hash: number): number {
  const h = (hash ^ (hash << 16)) >>> 0;
  return Number((BigInt(h) * 16384n) >> 32n) + 49152;
}
/** The XDP program's source port for an inner IPv4 TCP/UDP frame (else: its MACs), hashing words as they lie in memory (little-endian loads). */
export function xdpSport(f: Buffer): number {
  if (f.readUInt16BE(12) === ETH_P.IPV4) {
    const ihl = (f[14] & 15) * 4;
    return sportOf(jhash3(f.readUInt32LE(26), f.readUInt32LE(30), f.readUInt32LE(14 + ihl), f[23]));
  }
  return sportOf(jhash3(f.readUInt32LE(0), f.readUInt32LE(4), f.readUInt32LE(8), f.readUInt16LE(12)));
}
/** An outer frame exactly as RFC 7348 and our choices (TTL 64, DF, id 0, UDP checksum 0) make it. */
export function encapsulated(o: { dst: string; src: string; saddr: string; daddr: string; sport: number; dport?: number; vni?: number }, f: Buffer) {
  return eth({ dst: o.dst, src: o.src }, udp4({
    src: o.saddr, dst: o.daddr, sport: o.sport, dport: o.dport ?? 4789, ttl: 64, id: 0, df: true, csum: 0,
  }, vxlan({ vni: o.vni ?? VNI }, f)));
}

export function linkMac(ns: string, dev: string): string {
  return JSON.parse(sh('ip', ['-n', ns, '-j', 'link', 'show', dev]))[0].address as string;
}

/** An Ethernet/IPv6/UDP frame (the packet helpers build IPv4 only). */
export function inner6(dst: string, src: string): Buffer {
  const l4 = udp({ sport: 5555, dport: 6666, csum: 0 }, Buffer.from('xdpnet v6'));
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(l4.length, 4);
  h[6] = IPPROTO.UDP;
  h[7] = 64;
  Buffer.from('fd000000000000000000000000000001fd000000000000000000000000000002', 'hex').copy(h, 8);
  return eth({ dst, src, type: ETH_P.IPV6 }, Buffer.concat([h, l4]));
}


/**
 * The namespace, the loaded bridge object with its capture programs, the maps
 * reset before each test (hooks registered in the calling describe), and the
 * helpers that drive them.
 */
export function vxlanWorld() {
  let ns: string;
  let pins: PinRoot;
  let br: BpfObject;
  let cap: BpfObject;
  let sender: XdpSender;
  let upMac: string;
  const ifx = {} as Record<Iface, number>;
  /** Capture programs by the ifindex they run on → the name frames are filed under. */
  const capNames = new Map<number, string>();
  const links: number[] = [];
  const tcOff: Array<() => void> = [];
  const map = (name: string): BpfMap => br.map(name);

  function capture(dev: string, as: string): number {
    const i = ifNameToIndex(dev);
    capNames.set(i, as);
    return linkCreate(cap.program('xn_capture').fd, i, BPF_XDP, XDP_FLAGS_DRV_MODE, `capture on ${dev}`);
  }

  beforeAll(() => {
    ns = netns('vxlan');
    // No IPv6 autoconfiguration chatter (router solicitations, MLD) in the captures.
    for (const k of ['all', 'default']) sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv6.conf.${k}.disable_ipv6=1`]);
    for (const p of IFACES) {
      veth(ns, p, ns, `${p}x`);
      sh('ip', ['netns', 'exec', ns, 'ethtool', '-K', p, 'txvlan', 'off']);
    }
    sh('ip', ['-n', ns, 'addr', 'add', `${LOCAL}/24`, 'dev', 'up0']);
    // bpf_fib_lookup answers only for interfaces that forward (FWD_DISABLED otherwise).
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.conf.up0.forwarding=1']);
    for (const [ip, m] of [[R2, R2_MAC], [R3, R3_MAC]]) {
      sh('ip', ['-n', ns, 'neigh', 'replace', ip, 'lladdr', m, 'dev', 'up0', 'nud', 'permanent']);
    }
    upMac = linkMac(ns, 'up0');
    pins = new PinRoot('vxlan');
    enterNetns(ns);
    for (const p of IFACES) ifx[p] = ifNameToIndex(p);
    br = pins.open(builtObject(BRIDGE.object));
    cap = pins.open(fixtureObject('capture'));
    sender = new XdpSender(pins);
    for (const p of IFACES) links.push(capture(`${p}x`, p));
    // XDP ports of an overlay bridge carry the tc program too: XDP hands it
    // the floods that need a copy per remote VTEP.
    for (const p of PORTS) tcOff.push(tcIngress(br.program(BRIDGE.programs.tc).fd, ifx[p], `tc on ${p}`));
  });
  afterAll(() => {
    sender?.close();
    tcOff.forEach((off) => off());
    links.forEach(close);
    pins?.cleanup();
    cleanup();
  });

  /** Bridge 1: p1, p2 access VLAN 1; p3 trunk (1, 10 tagged). VLAN 1 ↔ VNI 100 over up0, learning, remotes .2 and .3. */
  beforeEach(() => {
    for (const name of [...Object.values(BRIDGE.maps), ...Object.values(VXLAN.maps)]) {
      const m = map(name);
      for (const k of [...m.keys()]) m.delete(k);
    }
    for (const m of [map('xn_if_stats'), map('xn_drops'), map('xn_cache_stats')]) for (const k of [...m.keys()]) m.update(k, Buffer.alloc(m.valueBufSize));
    invalidateCache(map(BR_GEN_MAP)); // as the control process does after every change
    slots = giveSlots(br, Object.values(ifx));
    addBridge(BR, BR_MAC);
    const member: Record<(typeof PORTS)[number], Array<[number, boolean]>> = { p1: [[1, true]], p2: [[1, true]], p3: [[1, false], [10, false]] };
    for (const p of PORTS) addPort(BR, ifx[p], p === 'p3' ? 0 : 1, member[p]);
    map(BRIDGE.maps.flood).update(FloodKey.encode({ bridge: BR, vid: 1, pad: 0 }), floodList([ifx.p1, ifx.p2, ifx.p3]));
    map(BRIDGE.maps.flood).update(FloodKey.encode({ bridge: BR, vid: 10, pad: 0 }), floodList([ifx.p3]));
    setVtep({});
    map(VXLAN.maps.vlans).update(FloodKey.encode({ bridge: BR, vid: 1, pad: 0 }), u32(VNI));
    map(VXLAN.maps.ports).update(VxPortKey.encode({ local: ipv4ToNum(LOCAL), port: 4789, pad: 0 }), u32(1));
    setRemotes([R2, R3]);
    sh('ip', ['-n', ns, 'neigh', 'flush', 'to', R9, 'dev', 'up0']);
    captured();
  });

  let slots = new Map<number, number>();
  /** The interface's counters slot, given one now if it has none (as attaching it would). */
  function slotOf(ifindex: number): number {
    let s = slots.get(ifindex);
    if (!s) {
      slots.set(ifindex, (s = slots.size + 1));
      map('xn_if_slots').update(u32(ifindex), u32(s));
    }
    return s;
  }
  function addBridge(id: number, m: string) {
    map(BRIDGE.maps.bridges).update(u32(id), Bridge.encode({
      mac: mac(m), flags: 0, ageing_sec: 300, max_learned: 0, learned: 0, name: Buffer.from(`br${id}`),
    }));
  }
  function addPort(bridge: number, ifindex: number, pvid: number, vlans: Array<[number, boolean]>) {
    map(BRIDGE.maps.ports).update(u32(ifindex), Port.encode({ bridge, pvid, flags: PORT_FLAGS.LEARNING, slot: slotOf(ifindex) }));
    for (const [vid, untagged] of vlans) {
      map(BRIDGE.maps.vlans).update(VlanKey.encode({ ifindex, vid, pad: 0 }), Vlan.encode({ untagged: untagged ? 1 : 0 }));
    }
    map(BRIDGE.maps.txPorts).update(u32(ifindex), DevmapVal.encode({ ifindex, prog_fd: br.program(BRIDGE.programs.egress).fd }));
  }
  function setVtep(o: { learning?: boolean; port?: number }) {
    map(VXLAN.maps.vteps).update(u32(VNI), Vtep.encode({
      bridge: BR, vid: 1, flags: o.learning === false ? 0 : VTEP_FLAGS.LEARNING, local: ipv4ToNum(LOCAL), ifindex: ifx.up0,
      port: o.port ?? 4789, pad: 0,
    }));
  }
  function setRemotes(ips: string[]) {
    map(VXLAN.maps.remotes).update(u32(VNI), remoteList(ips.map(ipv4ToNum)));
  }
  function addPeer(ip: string) {
    map(VXLAN.maps.peers).update(VxPeerKey.encode({ vni: VNI, addr: ipv4ToNum(ip) }), u32(1));
  }

  const capCount = () => cap.map('xn_cap_count').lookup(u32(0))!.readUInt32LE(0);
  /** Waits until at least min frames were captured and no more came for a while: veth delivers to its peer asynchronously. */
  function settle(min = 0): void {
    const start = Date.now();
    let last = -1;
    let since = start;
    for (;;) {
      const n = capCount();
      if (n !== last) [last, since] = [n, Date.now()];
      if ((n >= min && Date.now() - since >= 25) || Date.now() - start > 3000) return;
      sleep(2);
    }
  }
  /** Raw frames captured since the last call (first 256 bytes), by where they were seen. */
  function capturedRaw(min = 0): Record<string, Array<{ len: number; data: Buffer }>> {
    settle(min);
    const n = capCount();
    const out: Record<string, Array<{ len: number; data: Buffer }>> = {};
    for (let i = 0; i < n; i++) {
      const c = cap.map('xn_cap').lookup(u32(i))!;
      const len = c.readUInt32LE(4);
      (out[capNames.get(c.readUInt32LE(0)) ?? '?'] ??= []).push({ len, data: Buffer.from(c.subarray(8, 8 + Math.min(256, len))) });
    }
    cap.map('xn_cap_count').update(u32(0), u32(0));
    return out;
  }
  /** As capturedRaw, in hex for readable diffs. */
  function captured(min = 0): Record<string, string[]> {
    return Object.fromEntries(Object.entries(capturedRaw(min)).map(([k, v]) => [k, v.map((f) => hex(f.data))]));
  }
  const xdpCtx = (ifindex: number, f: Buffer) => xdpMd(ifindex, f.length);
  const progFor = (dev: string) => br.program(dev.startsWith('up') ? VXLAN.programs.uplink : BRIDGE.programs.xdp);
  /** The XDP verdict and output, without sending anything. */
  const xdpRun = (dev: Iface, f: Buffer) => progFor(dev).testRun({ data: f, ctx: xdpCtx(ifx[dev], f) });
  /** Sends the frame through XDP for real (helpers/xdp-send.ts). */
  function xdpLive(dev: string, f: Buffer) {
    sender.send(progFor(dev), dev, f);
  }
  function xdpSend(dev: string, f: Buffer, min = 0) {
    xdpLive(dev, f);
    return captured(min);
  }
  function tcRun(dev: string, f: Buffer) {
    return br.program(BRIDGE.programs.tc).testRun({ data: f, ctx: skbMd(ifNameToIndex(dev)) });
  }
  function fdb(m: string, bridge = BR, vid = 1) {
    const v = map(BRIDGE.maps.fdb).lookup(FdbKey.encode({ bridge, vid, mac: mac(m) }));
    return v && FdbEntry.decode(v);
  }
  function addRemoteMac(m: string, vtep: string, vid = 1, bridge = BR, uplink = ifx.up0) {
    map(BRIDGE.maps.fdb).update(FdbKey.encode({ bridge, vid, mac: mac(m) }),
      FdbEntry.encode({ ifindex: uplink, remote: ipv4ToNum(vtep), updated_ns: 0n, flags: FDB_FLAGS.STATIC, ageing_sec: 0 }));
  }
  function addLocalMac(m: string, p: Iface) {
    map(BRIDGE.maps.fdb).update(FdbKey.encode({ bridge: BR, vid: 1, mac: mac(m) }),
      FdbEntry.encode({ ifindex: ifx[p], remote: 0, updated_ns: 0n, flags: FDB_FLAGS.STATIC, ageing_sec: 0 }));
  }
  function stats(dev: string) {
    return ifCounters(br, ifNameToIndex(dev));
  }
  const drops = () => readDrops(map('xn_drops'));
  const caches = () => readCacheStats(map('xn_cache_stats'));
  /** A VXLAN frame from remote VTEP .2 (by default) to our uplink. */
  const fromRemote = (f: Buffer, o: { saddr?: string; vni?: number; flags?: number; dport?: number; daddr?: string } = {}) =>
    eth({ dst: upMac, src: R2_MAC }, udp4({
      src: o.saddr ?? R2, dst: o.daddr ?? LOCAL, sport: 54321, dport: o.dport ?? 4789, csum: 0,
    }, vxlan({ vni: o.vni ?? VNI, flags: o.flags }, f)));
  const expectEncap = (f: Buffer, daddr: string, dst: string, sport: number) =>
    hex(encapsulated({ dst, src: upMac, saddr: LOCAL, daddr, sport }, f));

  /** Every outer field checked on its own, not only through a builder that shares the packet helpers. Returns the source port. */
  function checkOuter(out: Buffer, o: { dst: string; daddr: string; innerLen: number }): number {
    const p = parse(out);
    expect(p.eth).toEqual({ dst: o.dst, src: upMac, type: ETH_P.IPV4 });
    expect(p.ipv4).toMatchObject({
      src: LOCAL, dst: o.daddr, proto: IPPROTO.UDP, ttl: 64, id: 0, tos: 0, flags: 0b010, fragOffset: 0, ihl: 20,
      len: 20 + 8 + 8 + o.innerLen, headerChecksumValid: true,
    });
    let sum = 0; // the header checksum by hand: one's complement of the one's complement sum of the other words
    for (let i = 14; i < 34; i += 2) if (i !== 24) sum += out.readUInt16BE(i);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    expect(out.readUInt16BE(24)).toBe(~sum & 0xffff);
    expect(out.readUInt16BE(14)).toBe(0x4500);
    expect(p.udp).toMatchObject({ dport: 4789, len: 8 + 8 + o.innerLen, checksum: 0 });
    expect(p.udp!.sport).toBeGreaterThanOrEqual(49152);
    expect(p.udp!.sport).toBeLessThanOrEqual(65535);
    expect(out.subarray(42, 50).toString('hex')).toBe(`08000000${VNI.toString(16).padStart(6, '0')}00`);
    expect(p.vxlan).toMatchObject({ flags: 0x08, vni: VNI });
    return p.udp!.sport;
  }

  return {
    get ns() { return ns; }, get pins() { return pins; }, get br() { return br; }, get cap() { return cap; }, get upMac() { return upMac; }, get slots() { return slots; },
    addBridge, addLocalMac, addPeer, addPort, addRemoteMac, caches, capCount, capNames, capture, captured, capturedRaw, checkOuter, drops, expectEncap, fdb, fromRemote, ifx, links, map, progFor, setRemotes, setVtep, settle, slotOf, stats, tcOff, tcRun, xdpCtx, xdpLive, xdpRun, xdpSend,
  };
}
