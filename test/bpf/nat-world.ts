// The NAT test bench shared by test/bpf/nat-*.test.ts (split by feature from
// one file): a private namespace shaped like a container host: uplink up0
// (10.99.0.1, default route via the gateway 10.99.0.254) and container side
// ct0 (172.17.0.1/16, containers C1 and C2), with permanent neighbours, so the
// programs' FIB lookups answer as on a real host. Frames run through
// BPF_PROG_RUN (tc with a __sk_buff ctx naming the ingress port). Expected
// frames are built from scratch by test/helpers/packet.ts, so every checksum
// in them is an independent full computation.
import { readCacheStats, readDrops } from '../../src/dataplane/stats.js';
import { afterAll, beforeAll, beforeEach, expect } from 'vitest';
import { enterNetns } from '../../src/dataplane/host.js';
import { sumPerCpu, u32, ipv4ToNum, numToIpv4 } from '../../src/objects/codec.js';
import {
  CT_FLAGS, CT_STATE_NAMES, CtEntry, CtKey, CtStats, flowsDeleted, NAT, NatConfig, Portmap, PortmapKey, SNAT_FLAGS, SnatRule, snatKey,
  type CtEntryT, type NatConfigT,
} from '../../src/objects/nat.js';
import { NAT_HOT, sizeCache } from '../../src/objects/memory.js';
import type { InstancePaths } from '../../src/objects/paths.js';
import { numPossibleCpus, type BpfMap, type BpfObject } from '../../src/sys/libbpf.js';
import { ifNameToIndex, monotonicCoarseNs } from '../../src/sys/libc.js';
import { builtObject, PinRoot, skbMd, TC, XDP, xdpMd } from '../helpers/bpf.js';
import { eth, hex, IPPROTO, parse, tcp4, type Parsed } from '../helpers/packet.js';
import { cleanup, netns, sh } from '../helpers/sys.js';

export const H = '10.99.0.1'; // the host's uplink address
export const GW = '10.99.0.254';
export const NO_NEIGH_GW = '10.99.0.253'; // a next hop without a neighbour entry
export const S = '198.51.100.7'; // a server outside
export const K = '203.0.113.9'; // a client outside
export const R = '192.0.2.1'; // a router on the way
export const C1 = '172.17.0.2';
export const C2 = '172.17.0.3';
export const BR = '172.17.0.1'; // the host on the container side
export const MAC = {
  up0: '02:00:00:00:01:01', gw: '02:00:00:00:01:fe', ct0: '02:00:00:00:02:01', c1: '02:00:00:00:02:02', c2: '02:00:00:00:02:03',
};
export const UPLINK_MTU = 1400;

export type Hook = 'xdp' | 'tc';
export type Port = 'up0' | 'ct0';
export const VERDICT: Record<Hook, Record<number, string>> = {
  xdp: { [XDP.PASS]: 'pass', [XDP.DROP]: 'drop', [XDP.REDIRECT]: 'redirect' },
  tc: { [TC.OK]: 'pass', [TC.SHOT]: 'drop', [TC.REDIRECT]: 'redirect' },
};

// Frames on each link, as the far end sends or receives them.
export const fromC1 = (l3: Buffer) => eth({ dst: MAC.ct0, src: MAC.c1 }, l3);
export const fromC2 = (l3: Buffer) => eth({ dst: MAC.ct0, src: MAC.c2 }, l3);
export const toC1 = (l3: Buffer) => eth({ dst: MAC.c1, src: MAC.ct0 }, l3);
export const toC2 = (l3: Buffer) => eth({ dst: MAC.c2, src: MAC.ct0 }, l3);
export const fromGw = (l3: Buffer) => eth({ dst: MAC.up0, src: MAC.gw }, l3);
export const toGw = (l3: Buffer) => eth({ dst: MAC.gw, src: MAC.up0 }, l3);

export const ZERO_CONFIG: NatConfigT = {
  tcp_syn_sent: 0, tcp_syn_recv: 0, tcp_established: 0, tcp_fin_wait: 0, tcp_time_wait: 0, tcp_close: 0, udp: 0, udp_replied: 0, icmp: 0,
};
export const PROTO_NAME: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp' };

/** Every checksum in the frame is valid (the parser recomputes each in full). */
export function expectChecksumsValid(f: Buffer): Parsed {
  const p = parse(f);
  expect(p.truncated).toBeUndefined();
  expect(p.ipv4?.headerChecksumValid).toBe(true);
  if (p.tcp) expect(p.tcp.checksumValid).toBe(true);
  if (p.udp && p.udp.checksum) expect(p.udp.checksumValid).toBe(true);
  if (p.icmp) expect(p.icmp.checksumValid).toBe(true);
  if (p.icmp?.original) expect(p.icmp.original.ipv4?.headerChecksumValid).toBe(true);
  return p;
}

/**
 * The namespaces, the loaded NAT object and its maps reset before each test
 * (hooks registered in the calling describe), and the helpers that drive them.
 */
export function natWorld() {
  let hotPart = 0;
  let pins: PinRoot;
  let nat: BpfObject;
  const ifx = {} as Record<Port, number>;
  const map = (name: string): BpfMap => nat.map(name);

  let hns: string; // the host's namespace, where the programs run
  let cns: string; // C1's namespace, behind ct0
  let ons: string; // outside, behind up0: the gateway, which also holds S, K and R
  beforeAll(() => {
    const ns = (hns = netns('nat'));
    cns = netns('natc');
    ons = netns('nato');
    const ip = (n: string, ...args: string[]) => sh('ip', ['-n', n, ...args]);
    const mtu = String(UPLINK_MTU);
    ip(ns, 'link', 'add', 'up0', 'address', MAC.up0, 'mtu', mtu, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ons);
    ip(ns, 'link', 'add', 'ct0', 'address', MAC.ct0, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', cns);
    ip(ons, 'link', 'set', 'eth0', 'address', MAC.gw, 'mtu', mtu, 'up');
    ip(cns, 'link', 'set', 'eth0', 'address', MAC.c1, 'up');
    for (const d of ['up0', 'ct0']) ip(ns, 'link', 'set', d, 'up');
    ip(ns, 'addr', 'add', `${H}/24`, 'dev', 'up0');
    ip(ns, 'addr', 'add', `${BR}/16`, 'dev', 'ct0');
    ip(ns, 'route', 'add', 'default', 'via', GW);
    ip(ns, 'route', 'add', '100.64.0.0/16', 'via', NO_NEIGH_GW);
    ip(ns, 'neigh', 'add', GW, 'lladdr', MAC.gw, 'dev', 'up0', 'nud', 'permanent');
    ip(ns, 'neigh', 'add', C1, 'lladdr', MAC.c1, 'dev', 'ct0', 'nud', 'permanent');
    ip(ns, 'neigh', 'add', C2, 'lladdr', MAC.c2, 'dev', 'ct0', 'nud', 'permanent');
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    ip(ons, 'addr', 'add', `${GW}/24`, 'dev', 'eth0');
    for (const a of [S, K, R]) ip(ons, 'addr', 'add', `${a}/32`, 'dev', 'lo');
    ip(cns, 'addr', 'add', `${C1}/16`, 'dev', 'eth0');
    ip(cns, 'route', 'add', 'default', 'via', BR);
    // Checksums for the live tests: the container sends CHECKSUM_PARTIAL and GSO
    // like any local stack; the outside sends complete checksums, like a NIC's
    // wire, and the host completes its own in software, so every receiver
    // verifies what it gets. GRO gives the container's veth the NAPI that XDP
    // needs to redirect into it.
    sh('ip', ['netns', 'exec', ons, 'ethtool', '-K', 'eth0', 'tx', 'off']);
    sh('ip', ['netns', 'exec', ns, 'ethtool', '-K', 'up0', 'tx', 'off']);
    sh('ip', ['netns', 'exec', cns, 'ethtool', '-K', 'eth0', 'gro', 'on']);
    pins = new PinRoot('nat'); // on the host bpffs: entering the netns keeps our mounts
    enterNetns(ns);
    ifx.up0 = ifNameToIndex('up0');
    ifx.ct0 = ifNameToIndex('ct0');
    // Hot copies at their smallest size, not as compiled: the BPF side must index what the loader sized.
    nat = pins.open(builtObject(NAT.object), (o) => {
      hotPart = sizeCache(o, { maps: pins.dir } as InstancePaths, NAT_HOT, 1, numPossibleCpus());
    });
  });
  afterAll(() => {
    pins?.cleanup();
    cleanup();
  });

  /** Masquerade 172.17.0.0/16 out of up0; tcp/10080 -> C2:80 and udp/10053 -> C2:53 on any interface. */
  beforeEach(() => {
    for (const name of [NAT.maps.ct, NAT.maps.snat, NAT.maps.portmap, NAT.maps.addrs]) {
      const m = map(name);
      for (const k of [...m.keys()]) m.delete(k);
    }
    flowsDeleted(map(NAT.maps.gen)); // as the control process does after deleting flows
    for (const m of [map(NAT.maps.ctStats), map('xn_drops'), map('xn_if_stats')]) {
      for (const k of [...m.keys()]) m.update(k, Buffer.alloc(m.valueBufSize));
    }
    setConfig({});
    masquerade(1024, 65535);
    portmap(0, IPPROTO.TCP, 10080, C2, 80);
    portmap(0, IPPROTO.UDP, 10053, C2, 53);
    map(NAT.maps.addrs).update(u32(ipv4ToNum(H)).reverse(), u32(ifx.up0));
    map(NAT.maps.addrs).update(u32(ipv4ToNum(BR)).reverse(), u32(ifx.ct0));
  });

  function masquerade(portMin: number, portMax: number, src = '172.17.0.0/16'): void {
    map(NAT.maps.snat).update(snatKey(ifx.up0, src), SnatRule.encode({
      addr_min: ipv4ToNum(H), addr_max: ipv4ToNum(H), port_min: portMin, port_max: portMax, flags: SNAT_FLAGS.MASQUERADE,
    }));
  }
  function portmap(ifindex: number, proto: number, port: number, to: string, toPort: number): void {
    map(NAT.maps.portmap).update(PortmapKey.encode({ ifindex, port, proto, pad: 0 }),
      Portmap.encode({ to_addr: ipv4ToNum(to), to_port: toPort, pad: 0 }));
  }
  function setConfig(c: Partial<NatConfigT>): void {
    map(NAT.maps.config).update(u32(0), NatConfig.encode({ ...ZERO_CONFIG, ...c }));
  }

  const xdpCtx = (port: Port, f: Buffer) => xdpMd(ifx[port], f.length);
  const skbCtx = (port: Port) => skbMd(ifx[port]);
  /** Runs a frame received on `port` through the hook's program: its verdict and the frame after it. */
  function send(hook: Hook, port: Port, f: Buffer): { verdict: string; out: string; frame: Buffer } {
    const prog = nat.program(NAT.programs[hook]);
    const r = prog.testRun({ data: f, ctx: hook === 'xdp' ? xdpCtx(port, f) : skbCtx(port) });
    return { verdict: VERDICT[hook][r.retval] ?? `verdict ${r.retval}`, out: hex(r.data), frame: r.data };
  }

  /** The conntrack table, one line per entry: "proto key => translation state [reply] [fin-orig] [fin-reply]". */
  function flows(): string[] {
    return map(NAT.maps.ct).entries().map(([k, v]) => {
      const key = CtKey.decode(k);
      const e = CtEntry.decode(v);
      const flags = [[CT_FLAGS.REPLY, 'reply'], [CT_FLAGS.FIN_ORIG, 'fin-orig'], [CT_FLAGS.FIN_REPLY, 'fin-reply']]
        .filter(([bit]) => e.flags & (bit as number)).map(([, n]) => ` ${n}`).join('');
      return `${PROTO_NAME[key.proto]} ${numToIpv4(key.src)}:${key.sport} > ${numToIpv4(key.dst)}:${key.dport} => ` +
        `${numToIpv4(e.to_src)}:${e.to_sport} > ${numToIpv4(e.to_dst)}:${e.to_dport} ${CT_STATE_NAMES[e.state]}${flags}`;
    }).sort();
  }
  /** Both entries of a flow, original direction first (sport/dport: TCP/UDP ports or the ICMP echo identifier). */
  function flow(proto: number, src: string, sport: number, dst: string, dport: number): [CtEntryT, CtEntryT] {
    const key = CtKey.encode({ src: ipv4ToNum(src), dst: ipv4ToNum(dst), sport, dport, proto, pad: Buffer.alloc(3) });
    const v = map(NAT.maps.ct).lookup(key);
    if (!v) throw new Error(`no conntrack entry for ${src}:${sport} > ${dst}:${dport}`);
    const e = CtEntry.decode(v);
    const peer = map(NAT.maps.ct).lookup(CtKey.encode({ src: e.to_dst, dst: e.to_src, sport: e.to_dport, dport: e.to_sport, proto, pad: Buffer.alloc(3) }));
    if (!peer) throw new Error('peer entry missing');
    return [e, CtEntry.decode(peer)];
  }
  /** Rewrites last_seen of both entries of a flow, as time passing would: XDP's copies of it (≤ 1 s) are gone too. */
  function age(proto: number, src: string, sport: number, dst: string, dport: number, lastSeen: bigint): void {
    const k = CtKey.encode({ src: ipv4ToNum(src), dst: ipv4ToNum(dst), sport, dport, proto, pad: Buffer.alloc(3) });
    const e = CtEntry.decode(map(NAT.maps.ct).lookup(k)!);
    const pk = CtKey.encode({ src: e.to_dst, dst: e.to_src, sport: e.to_dport, dport: e.to_sport, proto, pad: Buffer.alloc(3) });
    for (const key of [k, pk]) {
      map(NAT.maps.ct).update(key, CtEntry.encode({ ...CtEntry.decode(map(NAT.maps.ct).lookup(key)!), last_seen_ns: lastSeen }));
    }
    flowsDeleted(map(NAT.maps.gen));
  }
  const ctStats = () => sumPerCpu(CtStats, map(NAT.maps.ctStats).lookup(u32(0))!);
  const drops = () => readDrops(map('xn_drops'));
  const natCache = () => readCacheStats(map('xn_cache_stats')).nat;
  const now = () => monotonicCoarseNs(); // the datapath's clock, bpf_ktime_get_coarse_ns()

  const syn = (ttl = 64) => fromC1(tcp4({ src: C1, dst: S, sport: 40000, dport: 80, flags: 'S', seq: 1000, ttl }));

  return {
    get pins() { return pins; }, get nat() { return nat; }, get hns() { return hns; }, get cns() { return cns; },
    get ons() { return ons; }, get hotPart() { return hotPart; },
    age, ctStats, drops, flow, flows, ifx, map, masquerade, natCache, now, portmap, send, setConfig, skbCtx, syn, xdpCtx,
  };
}
