// The NAT programs, byte-exact. The test process enters a private namespace
// shaped like a container host: uplink up0 (10.99.0.1, default route via the
// gateway 10.99.0.254) and container side ct0 (172.17.0.1/16, containers C1
// and C2), with permanent neighbours, so the programs' FIB lookups answer as
// on a real host. Frames run through BPF_PROG_RUN (tc with a __sk_buff ctx
// naming the ingress port). Expected frames are built from scratch by
// test/helpers/packet.ts, so every checksum in them is an independent full
// computation; the parser's checksum flags are asserted on top.
import { spawn, spawnSync } from 'node:child_process';
import { readCacheStats, readDrops } from '../../src/dataplane/stats.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { enterNetns } from '../../src/dataplane/host.js';
import { sumPerCpu, u32, ipv4ToNum, numToIpv4 } from '../../src/objects/codec.js';
import {
  CT_FLAGS, CT_STATE, CT_STATE_NAMES, CtEntry, ctEntriesFor, CtKey, CtStats, flowsDeleted, NAT, NatConfig, Portmap, PortmapKey,
  SNAT_FLAGS, SnatRule, snatKey, type CtEntryT, type NatConfigT,
} from '../../src/objects/nat.js';
import { NAT_HOT, sizeCache } from '../../src/objects/memory.js';
import type { InstancePaths } from '../../src/objects/paths.js';
import { BPF_XDP, linkCreate, numPossibleCpus, XDP_FLAGS_DRV_MODE, type BpfMap, type BpfObject } from '../../src/sys/libbpf.js';
import { close, ifNameToIndex, monotonicCoarseNs } from '../../src/sys/libc.js';
import { builtObject, PinRoot, TC, tcIngress, XDP } from '../helpers/bpf.js';
import {
  checksum, eth, ETH_P, hex, icmpEcho, icmpError, ipv4, IPPROTO, parse, pseudoHeaderSum, tcp4, udp, udp4, type Parsed,
} from '../helpers/packet.js';
import { cleanup, netns, onCpu0, sh, sleep, tcFlavour } from '../helpers/sys.js';

let hotPart = 0;
const H = '10.99.0.1'; // the host's uplink address
const GW = '10.99.0.254';
const NO_NEIGH_GW = '10.99.0.253'; // a next hop without a neighbour entry
const S = '198.51.100.7'; // a server outside
const K = '203.0.113.9'; // a client outside
const R = '192.0.2.1'; // a router on the way
const C1 = '172.17.0.2';
const C2 = '172.17.0.3';
const BR = '172.17.0.1'; // the host on the container side
const MAC = {
  up0: '02:00:00:00:01:01', gw: '02:00:00:00:01:fe', ct0: '02:00:00:00:02:01', c1: '02:00:00:00:02:02', c2: '02:00:00:00:02:03',
};
const UPLINK_MTU = 1400;

type Hook = 'xdp' | 'tc';
type Port = 'up0' | 'ct0';
const VERDICT: Record<Hook, Record<number, string>> = {
  xdp: { [XDP.PASS]: 'pass', [XDP.DROP]: 'drop', [XDP.REDIRECT]: 'redirect' },
  tc: { [TC.OK]: 'pass', [TC.SHOT]: 'drop', [TC.REDIRECT]: 'redirect' },
};

// Frames on each link, as the far end sends or receives them.
const fromC1 = (l3: Buffer) => eth({ dst: MAC.ct0, src: MAC.c1 }, l3);
const fromC2 = (l3: Buffer) => eth({ dst: MAC.ct0, src: MAC.c2 }, l3);
const toC1 = (l3: Buffer) => eth({ dst: MAC.c1, src: MAC.ct0 }, l3);
const toC2 = (l3: Buffer) => eth({ dst: MAC.c2, src: MAC.ct0 }, l3);
const fromGw = (l3: Buffer) => eth({ dst: MAC.up0, src: MAC.gw }, l3);
const toGw = (l3: Buffer) => eth({ dst: MAC.gw, src: MAC.up0 }, l3);

const ZERO_CONFIG: NatConfigT = {
  tcp_syn_sent: 0, tcp_syn_recv: 0, tcp_established: 0, tcp_fin_wait: 0, tcp_time_wait: 0, tcp_close: 0, udp: 0, udp_replied: 0, icmp: 0,
};
const PROTO_NAME: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp' };

/** Every checksum in the frame is valid (the parser recomputes each in full). */
function expectChecksumsValid(f: Buffer): Parsed {
  const p = parse(f);
  expect(p.truncated).toBeUndefined();
  expect(p.ipv4?.headerChecksumValid).toBe(true);
  if (p.tcp) expect(p.tcp.checksumValid).toBe(true);
  if (p.udp && p.udp.checksum) expect(p.udp.checksumValid).toBe(true);
  if (p.icmp) expect(p.icmp.checksumValid).toBe(true);
  if (p.icmp?.original) expect(p.icmp.original.ipv4?.headerChecksumValid).toBe(true);
  return p;
}

describe('NAT programs', () => {
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

  function xdpCtx(port: Port, f: Buffer): Buffer {
    const ctx = Buffer.alloc(24); // struct xdp_md
    ctx.writeUInt32LE(f.length, 4); // data_end: the frame's length
    ctx.writeUInt32LE(ifx[port], 12); // ingress_ifindex
    return ctx;
  }
  function skbCtx(port: Port): Buffer {
    const ctx = Buffer.alloc(44); // struct __sk_buff up to ifindex
    ctx.writeUInt32LE(ifx[port], 40);
    return ctx;
  }
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

  for (const hook of ['tc', 'xdp'] as const) {
    describe(hook, () => {
      it('masquerades a TCP SYN from a container and forwards it to the gateway', () => {
        const r = send(hook, 'ct0', syn());
        expect(r.verdict).toBe('redirect');
        expect(r.out).toBe(hex(toGw(tcp4({ src: H, dst: S, sport: 40000, dport: 80, flags: 'S', seq: 1000, ttl: 63 }))));
        expectChecksumsValid(r.frame);
        expect(flows()).toEqual([
          'tcp 172.17.0.2:40000 > 198.51.100.7:80 => 10.99.0.1:40000 > 198.51.100.7:80 syn-sent',
          'tcp 198.51.100.7:80 > 10.99.0.1:40000 => 198.51.100.7:80 > 172.17.0.2:40000 syn-sent reply',
        ]);
        expect(ctStats()).toMatchObject({ created: 1n, insert_failed: 0n, port_exhausted: 0n, port_retries: 0n });
      });

      it('translates the reply back to the container', () => {
        send(hook, 'ct0', syn());
        const r = send(hook, 'up0', fromGw(tcp4({ src: S, dst: H, sport: 80, dport: 40000, flags: 'SA', seq: 5000, ack: 1001 })));
        expect(r.verdict).toBe('redirect');
        expect(r.out).toBe(hex(toC1(tcp4({ src: S, dst: C1, sport: 80, dport: 40000, flags: 'SA', seq: 5000, ack: 1001, ttl: 63 }))));
        expectChecksumsValid(r.frame);
        expect(flow(IPPROTO.TCP, C1, 40000, S, 80).map((e) => e.state)).toEqual([CT_STATE.SYN_RECV, CT_STATE.SYN_RECV]);
      });

      it('masquerades UDP both ways; a zero checksum stays zero, a computed zero goes out as 0xffff', () => {
        const q = Buffer.from('dns query');
        let r = send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 5353, dport: 53 }, q)));
        expect(r.out).toBe(hex(toGw(udp4({ src: H, dst: S, sport: 5353, dport: 53, ttl: 63 }, q))));
        expectChecksumsValid(r.frame);
        r = send(hook, 'up0', fromGw(udp4({ src: S, dst: H, sport: 53, dport: 5353 }, Buffer.from('answer'))));
        expect(r.out).toBe(hex(toC1(udp4({ src: S, dst: C1, sport: 53, dport: 5353, ttl: 63 }, Buffer.from('answer')))));
        expectChecksumsValid(r.frame);
        expect(flow(IPPROTO.UDP, C1, 5353, S, 53).map((e) => CT_STATE_NAMES[e.state])).toEqual(['udp-replied', 'udp-replied']);

        r = send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 5353, dport: 53, csum: false }, q)));
        expect(r.out).toBe(hex(toGw(udp4({ src: H, dst: S, sport: 5353, dport: 53, ttl: 63, csum: false }, q))));

        // A payload word that makes the translated datagram's checksum compute to 0.
        const w = Buffer.alloc(2);
        for (let v = 0; v < 0x10000; v++) {
          w.writeUInt16BE(v);
          const seg = udp({ sport: 5353, dport: 53, csum: false }, w);
          if (checksum(seg, pseudoHeaderSum(H, S, IPPROTO.UDP, seg.length)) === 0) break;
        }
        r = send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 5353, dport: 53 }, w)));
        expect(r.out).toBe(hex(toGw(udp4({ src: H, dst: S, sport: 5353, dport: 53, ttl: 63 }, w))));
        expect(parse(r.frame).udp).toMatchObject({ checksum: 0xffff, checksumValid: true });
      });

      it('masquerades ICMP echo, keyed by its identifier', () => {
        const ping = Buffer.from('ping payload');
        let r = send(hook, 'ct0', fromC1(ipv4({ src: C1, dst: S, proto: IPPROTO.ICMP }, icmpEcho({ type: 8, id: 0x1234, seq: 7 }, ping))));
        expect(r.out).toBe(hex(toGw(ipv4({ src: H, dst: S, proto: IPPROTO.ICMP, ttl: 63 }, icmpEcho({ type: 8, id: 0x1234, seq: 7 }, ping)))));
        expectChecksumsValid(r.frame);
        r = send(hook, 'up0', fromGw(ipv4({ src: S, dst: H, proto: IPPROTO.ICMP }, icmpEcho({ type: 0, id: 0x1234, seq: 7 }, ping))));
        expect(r.out).toBe(hex(toC1(ipv4({ src: S, dst: C1, proto: IPPROTO.ICMP, ttl: 63 }, icmpEcho({ type: 0, id: 0x1234, seq: 7 }, ping)))));
        expectChecksumsValid(r.frame);
        expect(flows()).toEqual([
          'icmp 172.17.0.2:4660 > 198.51.100.7:4660 => 10.99.0.1:4660 > 198.51.100.7:4660 icmp',
          'icmp 198.51.100.7:4660 > 10.99.0.1:4660 => 198.51.100.7:4660 > 172.17.0.2:4660 icmp reply',
        ]);
      });

      it('maps a host port to a container, and translates its reply', () => {
        let r = send(hook, 'up0', fromGw(tcp4({ src: K, dst: H, sport: 5555, dport: 10080, flags: 'S', seq: 1 })));
        expect(r.verdict).toBe('redirect');
        expect(r.out).toBe(hex(toC2(tcp4({ src: K, dst: C2, sport: 5555, dport: 80, flags: 'S', seq: 1, ttl: 63 }))));
        expectChecksumsValid(r.frame);
        r = send(hook, 'ct0', fromC2(tcp4({ src: C2, dst: K, sport: 80, dport: 5555, flags: 'SA', seq: 9, ack: 2 })));
        expect(r.out).toBe(hex(toGw(tcp4({ src: H, dst: K, sport: 10080, dport: 5555, flags: 'SA', seq: 9, ack: 2, ttl: 63 }))));
        expectChecksumsValid(r.frame);
        r = send(hook, 'up0', fromGw(udp4({ src: K, dst: H, sport: 7777, dport: 10053 }, Buffer.from('q'))));
        expect(r.out).toBe(hex(toC2(udp4({ src: K, dst: C2, sport: 7777, dport: 53, ttl: 63 }, Buffer.from('q')))));
        expect(flows()).toEqual([
          'tcp 172.17.0.3:80 > 203.0.113.9:5555 => 10.99.0.1:10080 > 203.0.113.9:5555 syn-recv reply',
          'tcp 203.0.113.9:5555 > 10.99.0.1:10080 => 203.0.113.9:5555 > 172.17.0.3:80 syn-recv',
          'udp 172.17.0.3:53 > 203.0.113.9:7777 => 10.99.0.1:10053 > 203.0.113.9:7777 udp reply',
          'udp 203.0.113.9:7777 > 10.99.0.1:10053 => 203.0.113.9:7777 > 172.17.0.3:53 udp',
        ]);
      });

      it('maps only to the host\'s own addresses, and honours a mapping\'s interface', () => {
        const other = fromGw(tcp4({ src: K, dst: '10.99.0.77', sport: 5555, dport: 10080, flags: 'S' }));
        expect(send(hook, 'up0', other)).toMatchObject({ verdict: 'pass', out: hex(other) });
        portmap(ifx.up0, IPPROTO.TCP, 10443, C1, 443);
        expect(send(hook, 'up0', fromGw(tcp4({ src: K, dst: H, sport: 5555, dport: 10443, flags: 'S' }))).out)
          .toBe(hex(toC1(tcp4({ src: K, dst: C1, sport: 5555, dport: 443, flags: 'S', ttl: 63 }))));
        const inside = fromC2(tcp4({ src: C2, dst: H, sport: 5555, dport: 10443, flags: 'S' }));
        expect(send(hook, 'ct0', inside)).toMatchObject({ verdict: 'pass', out: hex(inside) });
        expect(flows()).toHaveLength(2);
      });

      it('hairpins: a container reaching a mapping through the host address comes back through the host', () => {
        // C1 -> H:10080 is C2:80, from H so that C2 answers through us.
        let r = send(hook, 'ct0', fromC1(tcp4({ src: C1, dst: H, sport: 41000, dport: 10080, flags: 'S' })));
        expect(r.verdict).toBe('redirect');
        expect(r.out).toBe(hex(toC2(tcp4({ src: H, dst: C2, sport: 41000, dport: 80, flags: 'S', ttl: 63 }))));
        expectChecksumsValid(r.frame);
        r = send(hook, 'ct0', fromC2(tcp4({ src: C2, dst: H, sport: 80, dport: 41000, flags: 'SA' })));
        expect(r.out).toBe(hex(toC1(tcp4({ src: H, dst: C1, sport: 10080, dport: 41000, flags: 'SA', ttl: 63 }))));
        expectChecksumsValid(r.frame);
        // C2 reaching its own mapping.
        r = send(hook, 'ct0', fromC2(tcp4({ src: C2, dst: H, sport: 42000, dport: 10080, flags: 'S' })));
        expect(r.out).toBe(hex(toC2(tcp4({ src: H, dst: C2, sport: 42000, dport: 80, flags: 'S', ttl: 63 }))));
        r = send(hook, 'ct0', fromC2(tcp4({ src: C2, dst: H, sport: 80, dport: 42000, flags: 'SA' })));
        expect(r.out).toBe(hex(toC2(tcp4({ src: H, dst: C2, sport: 10080, dport: 42000, flags: 'SA', ttl: 63 }))));
        expect(flows()).toContain('tcp 172.17.0.2:41000 > 10.99.0.1:10080 => 10.99.0.1:41000 > 172.17.0.3:80 syn-recv');
      });

      describe('ICMP errors about a translated flow', () => {
        const q = Buffer.from('dns query');
        it('port unreachable from the server: outer and quoted headers back to the container', () => {
          send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 5000, dport: 53 }, q)));
          const quoted = udp4({ src: H, dst: S, sport: 5000, dport: 53, ttl: 50 }, q); // as the server got it
          const r = send(hook, 'up0', fromGw(ipv4({ src: S, dst: H, proto: IPPROTO.ICMP, ttl: 60 }, icmpError({ type: 3, code: 3 }, quoted))));
          expect(r.verdict).toBe('redirect');
          const original = udp4({ src: C1, dst: S, sport: 5000, dport: 53, ttl: 50 }, q); // as C1 sent it (but the TTL)
          expect(r.out).toBe(hex(toC1(ipv4({ src: S, dst: C1, proto: IPPROTO.ICMP, ttl: 59 }, icmpError({ type: 3, code: 3 }, original)))));
          const p = expectChecksumsValid(r.frame);
          // The quoted UDP checksum is the one of C1's whole datagram, computed afresh.
          expect(p.icmp!.original!.udp!.checksum).toBe(original.readUInt16BE(26));
        });

        it('fragmentation needed from a router, quoting the whole TCP header: MTU kept, both checksums valid', () => {
          send(hook, 'ct0', syn());
          const quoted = tcp4({ src: H, dst: S, sport: 40000, dport: 80, flags: 'S', seq: 1000, ttl: 60 });
          const r = send(hook, 'up0', fromGw(ipv4({ src: R, dst: H, proto: IPPROTO.ICMP }, icmpError({ type: 3, code: 4, mtu: 1280, quote: 20 }, quoted))));
          const original = tcp4({ src: C1, dst: S, sport: 40000, dport: 80, flags: 'S', seq: 1000, ttl: 60 });
          expect(r.out).toBe(hex(toC1(ipv4({ src: R, dst: C1, proto: IPPROTO.ICMP, ttl: 63 }, icmpError({ type: 3, code: 4, mtu: 1280, quote: 20 }, original)))));
          const p = expectChecksumsValid(r.frame);
          expect(p.icmp).toMatchObject({ type: 3, code: 4, mtu: 1280 });
          expect(p.icmp!.original!.tcp).toMatchObject({ sport: 40000, dport: 80, checksumValid: true });
        });

        it('time exceeded for a ping: the quoted echo\'s identifier and checksum restored', () => {
          const ping = icmpEcho({ type: 8, id: 0x77, seq: 1 }, Buffer.from('abc'));
          send(hook, 'ct0', fromC1(ipv4({ src: C1, dst: S, proto: IPPROTO.ICMP }, ping)));
          const quoted = ipv4({ src: H, dst: S, proto: IPPROTO.ICMP, ttl: 1 }, ping);
          const r = send(hook, 'up0', fromGw(ipv4({ src: R, dst: H, proto: IPPROTO.ICMP }, icmpError({ type: 11, code: 0, quote: ping.length }, quoted))));
          const original = ipv4({ src: C1, dst: S, proto: IPPROTO.ICMP, ttl: 1 }, ping);
          expect(r.out).toBe(hex(toC1(ipv4({ src: R, dst: C1, proto: IPPROTO.ICMP, ttl: 63 }, icmpError({ type: 11, code: 0, quote: ping.length }, original)))));
          expect(expectChecksumsValid(r.frame).icmp!.original!.icmp).toMatchObject({ id: 0x77, checksumValid: true });
        });

        it('an error the container sends about a reply leaves from the host address', () => {
          send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 5000, dport: 53 }, q)));
          const reply = udp4({ src: S, dst: C1, sport: 53, dport: 5000, ttl: 63 }, Buffer.from('late answer'));
          const r = send(hook, 'ct0', fromC1(ipv4({ src: C1, dst: S, proto: IPPROTO.ICMP }, icmpError({ type: 3, code: 3 }, reply))));
          const asSent = udp4({ src: S, dst: H, sport: 53, dport: 5000, ttl: 63 }, Buffer.from('late answer'));
          expect(r.out).toBe(hex(toGw(ipv4({ src: H, dst: S, proto: IPPROTO.ICMP, ttl: 63 }, icmpError({ type: 3, code: 3 }, asSent)))));
          expectChecksumsValid(r.frame);
        });

        it('an error a mapped container sends goes out from the host address, about the host port', () => {
          send(hook, 'up0', fromGw(udp4({ src: K, dst: H, sport: 7777, dport: 10053 }, q)));
          const got = udp4({ src: K, dst: C2, sport: 7777, dport: 53, ttl: 63 }, q);
          const r = send(hook, 'ct0', fromC2(ipv4({ src: C2, dst: K, proto: IPPROTO.ICMP }, icmpError({ type: 3, code: 3 }, got))));
          const sent = udp4({ src: K, dst: H, sport: 7777, dport: 10053, ttl: 63 }, q);
          expect(r.out).toBe(hex(toGw(ipv4({ src: H, dst: K, proto: IPPROTO.ICMP, ttl: 63 }, icmpError({ type: 3, code: 3 }, sent)))));
          expectChecksumsValid(r.frame);
        });

        it('an error about a flow we do not know is left alone', () => {
          const quoted = udp4({ src: H, dst: S, sport: 5001, dport: 53 }, q);
          const f = fromGw(ipv4({ src: S, dst: H, proto: IPPROTO.ICMP }, icmpError({ type: 3, code: 3 }, quoted)));
          expect(send(hook, 'up0', f)).toMatchObject({ verdict: 'pass', out: hex(f) });
        });
      });

      it('gives a second inner host with the same source port another port, and keeps ports per destination', () => {
        send(hook, 'ct0', syn());
        const r = send(hook, 'ct0', fromC2(tcp4({ src: C2, dst: S, sport: 40000, dport: 80, flags: 'S', seq: 1000 })));
        const [e] = flow(IPPROTO.TCP, C2, 40000, S, 80);
        expect(e.to_sport).not.toBe(40000);
        expect(e.to_sport).toBeGreaterThanOrEqual(1024);
        expect(r.out).toBe(hex(toGw(tcp4({ src: H, dst: S, sport: e.to_sport, dport: 80, flags: 'S', seq: 1000, ttl: 63 }))));
        expect(ctStats()).toMatchObject({ created: 2n, port_retries: 1n });
        const back = send(hook, 'up0', fromGw(tcp4({ src: S, dst: H, sport: 80, dport: e.to_sport, flags: 'SA' })));
        expect(back.out).toBe(hex(toC2(tcp4({ src: S, dst: C2, sport: 80, dport: 40000, flags: 'SA', ttl: 63 }))));
        // Another destination: no collision, the port is kept.
        send(hook, 'ct0', fromC2(tcp4({ src: C2, dst: S, sport: 40000, dport: 81, flags: 'S' })));
        expect(flow(IPPROTO.TCP, C2, 40000, S, 81)[0].to_sport).toBe(40000);
      });

      it('counts and drops a flow when the port range is exhausted', () => {
        masquerade(20000, 20001);
        const a = send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 20000, dport: 80 })));
        const b = send(hook, 'ct0', fromC2(udp4({ src: C2, dst: S, sport: 20000, dport: 80 })));
        expect(parse(a.frame).udp!.sport).toBe(20000);
        expect(parse(b.frame).udp!.sport).toBe(20001);
        const f = fromC1(udp4({ src: C1, dst: S, sport: 20001, dport: 80 }));
        expect(send(hook, 'ct0', f)).toMatchObject({ verdict: 'drop', out: hex(f) });
        expect(drops()).toEqual({ 'nat-ports-exhausted': 1 });
        expect(ctStats()).toMatchObject({ created: 2n, port_exhausted: 1n });
        expect(flows()).toHaveLength(4);
      });

      it('translates packets with IP options, carrying the options unchanged', () => {
        const options = Buffer.from([0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00]); // router alert, NOPs, end
        let r = send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 6000, dport: 53, options }, Buffer.from('opt'))));
        expect(r.out).toBe(hex(toGw(udp4({ src: H, dst: S, sport: 6000, dport: 53, options, ttl: 63 }, Buffer.from('opt')))));
        expect(expectChecksumsValid(r.frame).ipv4!.ihl).toBe(28);
        // An ICMP error from a router with options, quoting a header with options.
        const quoted = udp4({ src: H, dst: S, sport: 6000, dport: 53, options, ttl: 9 }, Buffer.from('opt'));
        r = send(hook, 'up0', fromGw(ipv4({ src: R, dst: H, proto: IPPROTO.ICMP, options }, icmpError({ type: 11, code: 0 }, quoted))));
        const original = udp4({ src: C1, dst: S, sport: 6000, dport: 53, options, ttl: 9 }, Buffer.from('opt'));
        expect(r.out).toBe(hex(toC1(ipv4({ src: R, dst: C1, proto: IPPROTO.ICMP, options, ttl: 63 }, icmpError({ type: 11, code: 0 }, original)))));
        expectChecksumsValid(r.frame);
      });

      it('drops fragments of translated flows, counted, and leaves other fragments alone', () => {
        const first = fromC1(udp4({ src: C1, dst: S, sport: 6000, dport: 53, mf: true, id: 9 }, Buffer.alloc(16)));
        const later = fromC1(ipv4({ src: C1, dst: S, proto: IPPROTO.UDP, fragOffset: 3, id: 9 }, Buffer.alloc(16)));
        expect(send(hook, 'ct0', first)).toMatchObject({ verdict: 'drop', out: hex(first) });
        expect(send(hook, 'ct0', later)).toMatchObject({ verdict: 'drop', out: hex(later) });
        expect(flows()).toEqual([]);
        send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 6000, dport: 53 })));
        expect(send(hook, 'ct0', first).verdict).toBe('drop'); // a fragment of a known flow
        expect(drops()).toEqual({ 'nat-fragment': 3 });
        const hostFirst = fromGw(udp4({ src: K, dst: H, sport: 53, dport: 6000, mf: true }, Buffer.alloc(16)));
        const hostLater = fromGw(ipv4({ src: K, dst: H, proto: IPPROTO.UDP, fragOffset: 3 }, Buffer.alloc(16)));
        const toHost = fromC1(ipv4({ src: C1, dst: BR, proto: IPPROTO.UDP, fragOffset: 3 }, Buffer.alloc(16)));
        for (const [port, f] of [['up0', hostFirst], ['up0', hostLater], ['ct0', toHost]] as const) {
          expect(send(hook, port, f)).toMatchObject({ verdict: 'pass', out: hex(f) });
        }
        expect(drops()).toEqual({ 'nat-fragment': 3 });
      });

      it('leaves the host\'s own traffic alone and tracks nothing for it', () => {
        const frames: Array<[Port, Buffer]> = [
          ['up0', fromGw(tcp4({ src: K, dst: H, sport: 443, dport: 50000, flags: 'SA' }))],
          ['up0', fromGw(udp4({ src: S, dst: H, sport: 53, dport: 40000 }))],
          ['up0', fromGw(ipv4({ src: K, dst: H, proto: IPPROTO.ICMP }, icmpEcho({ type: 8, id: 1, seq: 1 })))],
          ['ct0', fromC1(tcp4({ src: C1, dst: BR, sport: 40000, dport: 22, flags: 'S' }))],
          ['ct0', fromC1(ipv4({ src: C1, dst: S, proto: 47 }, Buffer.alloc(8)))], // GRE
          ['up0', eth({ dst: MAC.up0, src: MAC.gw, type: ETH_P.ARP }, Buffer.alloc(28))],
          ['up0', eth({ dst: MAC.up0, src: MAC.gw, type: ETH_P.IPV6 }, Buffer.alloc(40))],
        ];
        for (const [port, f] of frames) expect(send(hook, port, f)).toMatchObject({ verdict: 'pass', out: hex(f) });
        expect(flows()).toEqual([]);
        expect(drops()).toEqual({});
      });

      it('drops truncated and malformed packets at every length, with the right reason', () => {
        // The kernel refuses to test-run an skb whose IPv4 header is cut: tc starts there.
        const full = syn();
        const from = hook === 'xdp' ? 14 : 34;
        for (let len = from; len < full.length; len++) {
          const f = full.subarray(0, len);
          expect(send(hook, 'ct0', f), `length ${len}`).toMatchObject({ verdict: 'drop', out: hex(f) });
        }
        const expected: Record<string, number> = { 'truncated-ipv4': full.length - from };
        expect(drops()).toEqual(expected);

        // Well-formed IP whose payload is too short for its L4 header.
        const short = (proto: number, l4: Buffer, n: number) => fromC1(ipv4({ src: C1, dst: S, proto }, l4.subarray(0, n)));
        const th = tcp4({ src: C1, dst: S, sport: 1, dport: 2, flags: 'S' }).subarray(20);
        const uh = udp4({ src: C1, dst: S, sport: 1, dport: 2 }).subarray(20);
        const ih = icmpEcho({ type: 8, id: 1, seq: 1 });
        const quote = udp4({ src: H, dst: S, sport: 5000, dport: 53 });
        const err = icmpError({ type: 3, code: 3 }, quote);
        const cases: Array<[string, number, Buffer, number]> = [
          ['truncated-tcp', IPPROTO.TCP, th, 20], ['truncated-udp', IPPROTO.UDP, uh, 8],
          ['truncated-icmp', IPPROTO.ICMP, ih, 8], ['truncated-icmp', IPPROTO.ICMP, err, err.length],
        ];
        for (const [reason, proto, l4, n] of cases) {
          for (let len = reason === 'truncated-icmp' && n > 8 ? 8 : 0; len < n; len++) {
            const f = short(proto, l4, len);
            expect(send(hook, 'ct0', f), `${reason} at ${len}`).toMatchObject({ verdict: 'drop', out: hex(f) });
          }
          expected[reason] = (expected[reason] ?? 0) + (reason === 'truncated-icmp' && n > 8 ? n - 8 : n);
        }
        expect(drops()).toEqual(expected);

        const bad = (mutate: (ip: Buffer) => void) => {
          const l3 = udp4({ src: C1, dst: S, sport: 1, dport: 2 });
          mutate(l3);
          return fromC1(l3);
        };
        const badQuote = Buffer.from(quote);
        badQuote[0] = 0x44; // ihl 4
        const malformed: Array<[string, Buffer]> = [
          ['malformed-ipv4', bad((ip) => (ip[0] = 0x65))], // version 6
          ['malformed-ipv4', bad((ip) => (ip[0] = 0x44))], // ihl 4
          ['malformed-ipv4', bad((ip) => ip.writeUInt16BE(19, 2))], // total length under the header
          ['malformed-ipv4', bad((ip) => (ip[0] = 0x4f))], // a header longer than the total length
          ['truncated-ipv4', bad((ip) => ((ip[0] = 0x4f), ip.writeUInt16BE(60, 2)))], // options the frame does not have
          ['truncated-ipv4', bad((ip) => ip.writeUInt16BE(ip.length + 1, 2))],
          ['malformed-icmp-error', fromGw(ipv4({ src: S, dst: H, proto: IPPROTO.ICMP }, icmpError({ type: 3, code: 3 }, badQuote)))],
        ];
        for (const [reason, f] of malformed) {
          expect(send(hook, reason === 'malformed-icmp-error' ? 'up0' : 'ct0', f), reason).toMatchObject({ verdict: 'drop', out: hex(f) });
          expected[reason] = (expected[reason] ?? 0) + 1;
        }
        expect(drops()).toEqual(expected);
        expect(flows()).toEqual([]);
      });
    });
  }

  describe('conntrack', () => {
    const tcp = (from: 'c1' | 's', flags: string, extra: { sport?: number } = {}) =>
      from === 'c1'
        ? send('tc', 'ct0', fromC1(tcp4({ src: C1, dst: S, sport: extra.sport ?? 40000, dport: 80, flags })))
        : send('xdp', 'up0', fromGw(tcp4({ src: S, dst: H, sport: 80, dport: extra.sport ?? 40000, flags })));
    const states = () => flow(IPPROTO.TCP, C1, 40000, S, 80).map((e) => `${CT_STATE_NAMES[e.state]}:${e.flags & ~CT_FLAGS.REPLY}`);

    it('follows TCP through SYN, SYN-ACK, ACK, FIN, FIN and a reopening SYN, then RST', () => {
      const steps: Array<['c1' | 's', string, string]> = [
        ['c1', 'S', 'syn-sent:0'], ['s', 'SA', 'syn-recv:0'], ['c1', 'A', 'established:0'], ['s', 'PA', 'established:0'],
        ['c1', 'PA', 'established:0'], ['c1', 'FA', `fin-wait:${CT_FLAGS.FIN_ORIG}`],
        ['s', 'FA', `time-wait:${CT_FLAGS.FIN_ORIG | CT_FLAGS.FIN_REPLY}`], ['c1', 'A', `time-wait:${CT_FLAGS.FIN_ORIG | CT_FLAGS.FIN_REPLY}`],
        ['c1', 'S', 'syn-sent:0'], ['s', 'R', 'close:0'],
      ];
      for (const [from, flags, want] of steps) {
        expect(tcp(from, flags).verdict, `${from} ${flags}`).toBe('redirect');
        expect(states(), `after ${from} ${flags}`).toEqual([want, want]);
      }
    });

    it('XDP keeps the FIB answer for a second: a neighbour change applies after it', () => {
      const C1_NEW_MAC = '02:00:00:00:02:99';
      const reply = () => send('xdp', 'up0', fromGw(tcp4({ src: S, dst: H, sport: 80, dport: 40000, flags: 'A', ttl: 60 })));
      const expectTo = (r: ReturnType<typeof reply>, mac: string) =>
        expect(r.out).toBe(hex(eth({ dst: mac, src: MAC.ct0 }, tcp4({ src: S, dst: C1, sport: 80, dport: 40000, flags: 'A', ttl: 59 }))));
      tcp('c1', 'S');
      expectTo(reply(), MAC.c1);
      const [, e] = flow(IPPROTO.TCP, C1, 40000, S, 80);
      expect({ ifindex: e.fib_ifindex, dmac: e.fib_dmac.toString('hex'), smac: e.fib_smac.toString('hex'), mtu: e.fib_mtu })
        .toEqual({ ifindex: ifx.ct0, dmac: MAC.c1.replace(/:/g, ''), smac: MAC.ct0.replace(/:/g, ''), mtu: 1500 });
      sh('ip', ['-n', hns, 'neigh', 'replace', C1, 'lladdr', C1_NEW_MAC, 'dev', 'ct0', 'nud', 'permanent']);
      try {
        expectTo(reply(), MAC.c1); // cached
        sleep(1100); // the FIB answer (in the entry, and in XDP's copy of the flow) is a second old
        expectTo(reply(), C1_NEW_MAC);
        expect(flow(IPPROTO.TCP, C1, 40000, S, 80)[1].fib_dmac.toString('hex')).toBe(C1_NEW_MAC.replace(/:/g, ''));
        expect(flow(IPPROTO.TCP, C1, 40000, S, 80)[0].fib_ifindex).toBe(0); // its packets went through tc, which caches nothing
      } finally {
        sh('ip', ['-n', hns, 'neigh', 'replace', C1, 'lladdr', MAC.c1, 'dev', 'ct0', 'nud', 'permanent']);
      }
    });

    it('XDP serves a steady flow from its per-CPU copy; SYN, FIN, RST and deleted flows reach the table', () => {
      onCpu0(() => {
        const reply = (flags: string, ttl = 60) => send('xdp', 'up0', fromGw(tcp4({ src: S, dst: H, sport: 80, dport: 40000, flags, ttl })));
        const toC1Out = (flags: string) => hex(toC1(tcp4({ src: S, dst: C1, sport: 80, dport: 40000, flags, ttl: 59 })));
        const hot = map(NAT_HOT.map);
        const filled = () => [...hot.keys()].map((k) => k.readUInt32LE(0)).filter((i) => hot.lookup(u32(i))!.some((b) => b !== 0));
        for (const i of filled()) hot.update(u32(i), Buffer.alloc(NAT_HOT.entryBytes)); // earlier tests' copies
        tcp('c1', 'S');
        tcp('s', 'SA');
        tcp('c1', 'A');
        const base = natCache();
        const looked = (hits: number, misses: number) => ({ hits: base.hits + hits, misses: base.misses + misses });
        expect(reply('A').out).toBe(toC1Out('A')); // the table's answer, copied when the SYN-ACK went through
        expect(natCache()).toEqual(looked(1, 0));
        // into CPU 0's part of the size the loader chose
        expect(hotPart).toBe(NAT_HOT.minPart);
        expect(hot.info.maxEntries).toBe(hotPart * numPossibleCpus());
        const added = filled();
        expect(added.length).toBe(1);
        expect(added[0]).toBeLessThan(hotPart);
        const rkey = CtKey.encode({ src: ipv4ToNum(S), dst: ipv4ToNum(H), sport: 80, dport: 40000, proto: IPPROTO.TCP, pad: Buffer.alloc(3) });
        const e = CtEntry.decode(map(NAT.maps.ct).lookup(rkey)!);
        map(NAT.maps.ct).update(rkey, CtEntry.encode({ ...e, to_dport: 40001 })); // behind the copy's back
        expect(reply('PA').out).toBe(toC1Out('PA'));
        expect(natCache()).toEqual(looked(2, 0)); // served from the copy
        expect(reply('A', 1).verdict).toBe('pass'); // TTL 1: the kernel answers, as without the copy
        flowsDeleted(map(NAT.maps.gen)); // what conntrack flush and gc do after deleting
        expect(reply('A').out).toBe(hex(toC1(tcp4({ src: S, dst: C1, sport: 80, dport: 40001, flags: 'A', ttl: 59 }))));
        expect(natCache()).toEqual(looked(2, 2)); // TTL 1 and a stale copy: misses
        map(NAT.maps.ct).update(rkey, CtEntry.encode({ ...e, to_dport: 40000 }));
        flowsDeleted(map(NAT.maps.gen));
        expect(reply('A').out).toBe(toC1Out('A'));
        expect(reply('FA').out).toBe(toC1Out('FA'));
        expect(states()).toEqual([`fin-wait:${CT_FLAGS.FIN_REPLY}`, `fin-wait:${CT_FLAGS.FIN_REPLY}`]);
        expect(reply('RA').out).toBe(toC1Out('RA'));
        expect(states()).toEqual([`close:${CT_FLAGS.FIN_REPLY}`, `close:${CT_FLAGS.FIN_REPLY}`]);
        expect(natCache()).toEqual(looked(2, 3)); // FIN and RST never look at the copy
      });
    });

    it('picks up a TCP flow first seen mid-stream as established', () => {
      tcp('c1', 'PA');
      expect(states()).toEqual(['established:0', 'established:0']);
    });

    it('writes last_seen at most once a second, in both entries', () => {
      tcp('c1', 'S');
      const [a, b] = flow(IPPROTO.TCP, C1, 40000, S, 80);
      expect(a.last_seen_ns).toBe(b.last_seen_ns);
      tcp('s', 'SA'); // a state change, but no refresh within the second
      expect(flow(IPPROTO.TCP, C1, 40000, S, 80).map((e) => e.last_seen_ns)).toEqual([a.last_seen_ns, a.last_seen_ns]);
      tcp('c1', 'A');
      tcp('c1', 'PA');
      expect(flow(IPPROTO.TCP, C1, 40000, S, 80).map((e) => e.last_seen_ns)).toEqual([a.last_seen_ns, a.last_seen_ns]);
      const old = now() - 1_500_000_000n;
      age(IPPROTO.TCP, C1, 40000, S, 80, old);
      const before = now();
      tcp('s', 'PA'); // the reply direction refreshes both
      for (const e of flow(IPPROTO.TCP, C1, 40000, S, 80)) expect(e.last_seen_ns).toBeGreaterThanOrEqual(before);
    });

    it('expires a flow by its state\'s timeout: the next packet starts a new flow', () => {
      setConfig({ tcp_syn_sent: 5 });
      tcp('c1', 'S');
      age(IPPROTO.TCP, C1, 40000, S, 80, now() - 4_000_000_000n);
      tcp('c1', 'S'); // 4 s idle: still alive, refreshed
      expect(ctStats()).toMatchObject({ created: 1n, expired: 0n });
      age(IPPROTO.TCP, C1, 40000, S, 80, now() - 6_000_000_000n);
      const t = now();
      expect(tcp('c1', 'S').verdict).toBe('redirect');
      expect(ctStats()).toMatchObject({ created: 2n, expired: 1n });
      for (const e of flow(IPPROTO.TCP, C1, 40000, S, 80)) expect(e.last_seen_ns).toBeGreaterThanOrEqual(t);
    });

    it('does not translate a reply to an expired flow, and removes both entries', () => {
      setConfig({ udp: 2 });
      send('tc', 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 5000, dport: 53 })));
      age(IPPROTO.UDP, C1, 5000, S, 53, now() - 3_000_000_000n);
      const reply = fromGw(udp4({ src: S, dst: H, sport: 53, dport: 5000 }));
      expect(send('xdp', 'up0', reply)).toMatchObject({ verdict: 'pass', out: hex(reply) });
      expect(flows()).toEqual([]);
      expect(ctStats().expired).toBe(1n);
    });

    it('uses the built-in timeouts where the config holds 0', () => {
      tcp('c1', 'S');
      age(IPPROTO.TCP, C1, 40000, S, 80, now() - 100_000_000_000n); // 100 s < 120 s for syn-sent
      expect(tcp('s', 'SA').out).toContain(hex(toC1(tcp4({ src: S, dst: C1, sport: 80, dport: 40000, flags: 'SA', ttl: 63 }))).slice(0, 20));
      expect(ctStats().expired).toBe(0n);
    });

    it('recreates a reply entry the LRU evicted, on the next refresh', () => {
      tcp('c1', 'S');
      const key = CtKey.encode({ src: ipv4ToNum(C1), dst: ipv4ToNum(S), sport: 40000, dport: 80, proto: IPPROTO.TCP, pad: Buffer.alloc(3) });
      const e = CtEntry.decode(map(NAT.maps.ct).lookup(key)!);
      map(NAT.maps.ct).delete(CtKey.encode({ src: e.to_dst, dst: e.to_src, sport: e.to_dport, dport: e.to_sport, proto: IPPROTO.TCP, pad: Buffer.alloc(3) }));
      map(NAT.maps.ct).update(key, CtEntry.encode({ ...e, last_seen_ns: now() - 2_000_000_000n }));
      tcp('c1', 'S');
      expect(ctStats().restored).toBe(1n);
      expect(flows()).toEqual([
        'tcp 172.17.0.2:40000 > 198.51.100.7:80 => 10.99.0.1:40000 > 198.51.100.7:80 syn-sent',
        'tcp 198.51.100.7:80 > 10.99.0.1:40000 => 198.51.100.7:80 > 172.17.0.2:40000 syn-sent reply',
      ]);
      expect(tcp('s', 'SA').out).toBe(hex(toC1(tcp4({ src: S, dst: C1, sport: 80, dport: 40000, flags: 'SA', ttl: 63 }))));
    });
  });

  it('a table sized by --conntrack-max holds that many flows: the LRU evicts none of them', () => {
    // Without ctEntriesFor()'s headroom (2 entries a flow exactly) 128 of these 2048 entries go.
    const small = new PinRoot('natsmall');
    try {
      const o = small.open(builtObject(NAT.object), (x) => x.setMaxEntries(NAT.maps.ct, ctEntriesFor(1024)));
      o.map(NAT.maps.snat).update(snatKey(ifx.up0, '172.17.0.0/16'), SnatRule.encode({
        addr_min: ipv4ToNum(H), addr_max: ipv4ToNum(H), port_min: 1024, port_max: 65535, flags: SNAT_FLAGS.MASQUERADE,
      }));
      const prog = o.program(NAT.programs.tc);
      for (let i = 0; i < 1024; i++) {
        expect(prog.testRun({ data: fromC1(udp4({ src: C1, dst: S, sport: 10000 + i, dport: 53 })), ctx: skbCtx('ct0') }).retval).toBe(TC.REDIRECT);
      }
      // Both entries of every flow, the first ones too (an LRU evicts the oldest first).
      const ct = o.map(NAT.maps.ct);
      expect(ct.count()).toBe(2048);
      for (let i = 0; i < 1024; i++) {
        expect(ct.lookup(CtKey.encode({ src: ipv4ToNum(C1), dst: ipv4ToNum(S), sport: 10000 + i, dport: 53, proto: IPPROTO.UDP, pad: Buffer.alloc(3) }))).toBeDefined();
        expect(ct.lookup(CtKey.encode({ src: ipv4ToNum(S), dst: ipv4ToNum(H), sport: 53, dport: 10000 + i, proto: IPPROTO.UDP, pad: Buffer.alloc(3) }))).toBeDefined();
      }
      expect(sumPerCpu(CtStats, o.map(NAT.maps.ctStats).lookup(u32(0))!)).toMatchObject({ created: 1024n, insert_failed: 0n, restored: 0n });
    } finally {
      small.cleanup();
    }
  });

  describe('rules', () => {
    it('a removed rule stops new flows only: established ones keep their translation', () => {
      send('tc', 'ct0', syn());
      map(NAT.maps.snat).delete(snatKey(ifx.up0, '172.17.0.0/16'));
      expect(send('tc', 'ct0', syn()).out).toBe(hex(toGw(tcp4({ src: H, dst: S, sport: 40000, dport: 80, flags: 'S', seq: 1000, ttl: 63 }))));
      const other = fromC2(tcp4({ src: C2, dst: S, sport: 40000, dport: 80, flags: 'S' }));
      expect(send('tc', 'ct0', other)).toMatchObject({ verdict: 'pass', out: hex(other) });
      expect(flows()).toHaveLength(2);
    });

    it('gives each inner source one address of an SNAT range, and ports from the rule\'s range', () => {
      map(NAT.maps.snat).update(snatKey(ifx.up0, '172.17.0.0/16'), SnatRule.encode({
        addr_min: ipv4ToNum('10.99.0.10'), addr_max: ipv4ToNum('10.99.0.13'), port_min: 30000, port_max: 30099, flags: 0,
      }));
      const out = (from: (l3: Buffer) => Buffer, src: string, sport: number) =>
        parse(send('tc', 'ct0', from(udp4({ src, dst: S, sport, dport: 53 }))).frame);
      const a = out(fromC1, C1, 5000);
      const b = out(fromC1, C1, 5001);
      expect(a.ipv4!.src).toBe(b.ipv4!.src);
      expect(ipv4ToNum(a.ipv4!.src) - ipv4ToNum('10.99.0.10')).toBeLessThan(4);
      for (const p of [a, b]) expect(p.udp!.sport).toBeGreaterThanOrEqual(30000);
      for (const p of [a, b]) expect(p.udp!.sport).toBeLessThanOrEqual(30099);
    });
  });

  describe('delivery', () => {
    for (const hook of ['tc', 'xdp'] as const) {
      it(`${hook}: TTL 1 leaves a masqueraded packet to the kernel untouched (it answers with time exceeded)`, () => {
        const f = syn(1);
        expect(send(hook, 'ct0', f)).toMatchObject({ verdict: 'pass', out: hex(f) });
      });

      it(`${hook}: a reply with TTL 1 is translated and passed (only its destination changes)`, () => {
        send(hook, 'ct0', syn());
        const r = send(hook, 'up0', fromGw(tcp4({ src: S, dst: H, sport: 80, dport: 40000, flags: 'SA', ttl: 1 })));
        expect(r).toMatchObject({ verdict: 'pass', out: hex(fromGw(tcp4({ src: S, dst: C1, sport: 80, dport: 40000, flags: 'SA', ttl: 1 }))) });
      });

      it(`${hook}: too big for the uplink: with DF the kernel answers, without DF it is dropped, never sent untranslated`, () => {
        const big = (df: boolean) => fromC1(udp4({ src: C1, dst: S, sport: 6000, dport: 53, df }, Buffer.alloc(UPLINK_MTU)));
        expect(send(hook, 'ct0', big(true))).toMatchObject({ verdict: 'pass', out: hex(big(true)) });
        expect(send(hook, 'ct0', big(false))).toMatchObject({ verdict: 'drop', out: hex(big(false)) });
        expect(drops()).toEqual({ 'nat-cannot-forward': 1 });
      });
    }

    it('tc: a next hop without a neighbour entry goes out through bpf_redirect_neigh, translated', () => {
      const r = send('tc', 'ct0', fromC1(udp4({ src: C1, dst: '100.64.0.1', sport: 6000, dport: 53 })));
      expect(r).toMatchObject({
        verdict: 'redirect', out: hex(fromC1(udp4({ src: H, dst: '100.64.0.1', sport: 6000, dport: 53, ttl: 63 }))),
      });
    });

    it('xdp: a next hop without a neighbour entry is passed untouched to tc beside it, which resolves it', () => {
      const f = fromC1(udp4({ src: C1, dst: '100.64.0.1', sport: 6000, dport: 53 }));
      expect(send('xdp', 'ct0', f)).toMatchObject({ verdict: 'pass', out: hex(f) });
      expect(drops()).toEqual({});
      expect(send('tc', 'ct0', f)).toMatchObject({
        verdict: 'redirect', out: hex(fromC1(udp4({ src: H, dst: '100.64.0.1', sport: 6000, dport: 53, ttl: 63 }))),
      });
    });
  });
  describe(`live traffic through the kernel: tc (${tcFlavour()}) on the container port, XDP on the uplink`, () => {
    const links: number[] = [];
    let tcOff = () => {};
    beforeAll(() => {
      tcOff = tcIngress(nat.program(NAT.programs.tc).fd, ifx.ct0, 'nat on ct0');
      links.push(linkCreate(nat.program(NAT.programs.xdp).fd, ifx.up0, BPF_XDP, XDP_FLAGS_DRV_MODE, 'nat on up0'));
    });
    afterAll(() => {
      tcOff();
      links.splice(0).forEach(close);
    });

    /** Checksum errors a namespace's stack has counted (TCP, UDP, ICMP). */
    function csumErrors(n: string): number {
      const snmp = sh('ip', ['netns', 'exec', n, 'cat', '/proc/net/snmp']).split('\n');
      let total = 0;
      for (let i = 0; i + 1 < snmp.length; i += 2) {
        const names = snmp[i].split(/\s+/);
        const values = snmp[i + 1].split(/\s+/);
        const at = names.indexOf('InCsumErrors');
        if (at > 0) total += Number(values[at]);
      }
      return total;
    }
    /** iperf3 for a second: the server's and the client's JSON reports. */
    async function iperf(serverNs: string, serverArgs: string[], clientNs: string, clientArgs: string[]) {
      const srv = spawn('ip', ['netns', 'exec', serverNs, 'iperf3', '-s', '-1', '-J', ...serverArgs], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      srv.stdout.on('data', (d: Buffer) => (out += d));
      const closed = new Promise((res) => srv.on('close', res));
      await new Promise((res) => setTimeout(res, 500));
      const c = spawnSync('ip', ['netns', 'exec', clientNs, 'iperf3', '-J', '-t', '1', ...clientArgs], { encoding: 'utf8', timeout: 20_000 });
      await Promise.race([closed, new Promise((res) => setTimeout(res, 5000))]);
      srv.kill();
      return { server: JSON.parse(out || '{}'), client: JSON.parse(c.stdout || '{}') };
    }

    it('a container pings and talks TCP and UDP to a server outside, which sees the host address', async () => {
      const ping = spawnSync('ip', ['netns', 'exec', cns, 'ping', '-c', '2', '-i', '0.2', '-W', '2', S], { encoding: 'utf8' });
      expect(ping.status, ping.stdout).toBe(0);

      const tcpRun = await iperf(ons, ['-B', S], cns, ['-c', S]);
      expect(tcpRun.client.error).toBeUndefined();
      expect(tcpRun.server.start.connected[0].remote_host).toBe(H);
      expect(tcpRun.server.end.sum_received.bytes).toBeGreaterThan(1_000_000);
      expect(flows().some((f) => /^tcp 172\.17\.0\.2:\d+ > 198\.51\.100\.7:5201 => 10\.99\.0\.1:/.test(f))).toBe(true);

      const udpRun = await iperf(ons, ['-B', S], cns, ['-c', S, '-u', '-b', '20M', '-l', '1200']);
      expect(udpRun.client.error).toBeUndefined();
      expect(udpRun.server.start.connected[0].remote_host).toBe(H);
      expect(udpRun.server.end.sum.packets).toBeGreaterThan(1000);
      expect(csumErrors(ons) + csumErrors(cns)).toBe(0);
      expect(drops()).toEqual({});
    });

    it('an outside client reaches a container through a port mapping and keeps its own address', async () => {
      portmap(0, IPPROTO.TCP, 10080, C1, 5201);
      const run = await iperf(cns, [], ons, ['-c', H, '-p', '10080', '-B', K]);
      expect(run.client.error).toBeUndefined();
      expect(run.client.start.connected[0]).toMatchObject({ remote_host: H, remote_port: 10080 });
      expect(run.server.start.connected[0].remote_host).toBe(K);
      expect(run.server.end.sum_received.bytes).toBeGreaterThan(1_000_000);
      expect(csumErrors(ons) + csumErrors(cns)).toBe(0);
      expect(drops()).toEqual({});
    });
  });
});
