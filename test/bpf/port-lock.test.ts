// The port lock (anti-spoofing), byte-exact through BPF_PROG_RUN on both
// bridge hooks: a locked port sends only from its MAC and IPv4 addresses;
// everything else is dropped unchanged, counted under its reason, and
// teaches the FDB nothing. Unlocked ports are as before.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { enterNetns } from '../../src/dataplane/host.js';
import { readCacheStats, readDrops } from '../../src/dataplane/stats.js';
import {
  Bridge, BR_GEN_MAP, BRIDGE, DevmapVal, FDB_FLAGS, FdbEntry, FdbKey, floodList, FloodKey, invalidateCache, Port, PORT_FLAGS,
  PORT_LOCK_MAP, portLock, Vlan, VlanKey,
} from '../../src/objects/bridge.js';
import { ipv4ToNum, u32 } from '../../src/objects/codec.js';
import { BpfMap, BpfObject } from '../../src/sys/libbpf.js';
import { ifNameToIndex } from '../../src/sys/libc.js';
import { builtObject, giveSlots, ifCounters, PinRoot, skbMd, TC, XDP, xdpMd } from '../helpers/bpf.js';
import { eth, ETH_P, ip4, mac, udp4 } from '../helpers/packet.js';
import { cleanup, netns, onCpu0, sh, veth } from '../helpers/sys.js';

const BR = 1;
const A = '02:00:00:00:00:0a'; // the locked port's own MAC and address
const A_IP = '10.0.0.1';
const A_IP2 = '10.0.0.11'; // its second address
const B = '02:00:00:00:00:0b'; // the victim, on p2
const B_IP = '10.0.0.2';
const C = '02:00:00:00:00:0c';
const BCAST = 'ff:ff:ff:ff:ff:ff';
const ZERO = '00:00:00:00:00:00';
const PORTS = ['p1', 'p2', 'p3'] as const; // p1 locked to A, p2 the victim's, p3 unlocked
type PortName = (typeof PORTS)[number];

const ipFrame = (o: { dst?: string; src?: string; saddr: string; daddr?: string; vlan?: number }) =>
  eth({ dst: o.dst ?? B, src: o.src ?? A, vlan: o.vlan },
    udp4({ src: o.saddr, dst: o.daddr ?? B_IP, sport: 1111, dport: 2222 }, Buffer.from('port lock')));

/** Ethernet/IPv4 ARP (RFC 826), field by field. */
function arp(o: { op: 1 | 2; dst?: string; src?: string; sha?: string; spa: string; tha?: string; tpa: string; htype?: number }): Buffer {
  const body = Buffer.concat([
    Buffer.from([0, o.htype ?? 1, 0x08, 0x00, 6, 4, 0, o.op]), mac(o.sha ?? A), ip4(o.spa), mac(o.tha ?? ZERO), ip4(o.tpa),
  ]);
  return eth({ dst: o.dst ?? BCAST, src: o.src ?? A, type: ETH_P.ARP }, body);
}

type Hook = 'xdp' | 'tc';

describe('port lock', () => {
  let pins: PinRoot;
  let br: BpfObject;
  const ifx = {} as Record<PortName, number>;
  const map = (name: string): BpfMap => br.map(name);

  beforeAll(() => {
    const ns = netns('lock');
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    for (const p of PORTS) veth(ns, p, ns, `${p}x`); // tc floods clone into them
    pins = new PinRoot('lock');
    enterNetns(ns);
    for (const p of PORTS) ifx[p] = ifNameToIndex(p);
    br = pins.open(builtObject(BRIDGE.object));
  });
  afterAll(() => {
    pins?.cleanup();
    cleanup();
  });

  /** p1, p2, p3: access ports of VLAN 1; p1 locked to A with two addresses; B static behind p2. */
  beforeEach(() => {
    for (const name of [...Object.values(BRIDGE.maps), PORT_LOCK_MAP]) {
      const m = map(name);
      for (const k of [...m.keys()]) m.delete(k);
    }
    for (const m of [map('xn_if_stats'), map('xn_drops'), map('xn_cache_stats')]) for (const k of [...m.keys()]) m.update(k, Buffer.alloc(m.valueBufSize));
    invalidateCache(map(BR_GEN_MAP));
    map(BRIDGE.maps.bridges).update(u32(BR), Bridge.encode({
      mac: mac('02:b0:00:00:00:01'), flags: 0, ageing_sec: 300, max_learned: 0, learned: 0, name: Buffer.from('br0'),
    }));
    const slots = giveSlots(br, PORTS.map((p) => ifx[p]));
    // as the control plane writes a lock: the addresses first, then the flag
    map(PORT_LOCK_MAP).update(u32(ifx.p1), portLock(mac(A), [ipv4ToNum(A_IP), ipv4ToNum(A_IP2)]));
    for (const p of PORTS) {
      const flags = PORT_FLAGS.LEARNING | PORT_FLAGS.ACCESS | (p === 'p1' ? PORT_FLAGS.LOCKED : 0);
      map(BRIDGE.maps.ports).update(u32(ifx[p]), Port.encode({ bridge: BR, pvid: 1, flags, slot: slots.get(ifx[p])! }));
      map(BRIDGE.maps.vlans).update(VlanKey.encode({ ifindex: ifx[p], vid: 1, pad: 0 }), Vlan.encode({ untagged: 1 }));
      map(BRIDGE.maps.txPorts).update(u32(ifx[p]), DevmapVal.encode({ ifindex: ifx[p], prog_fd: br.program(BRIDGE.programs.egress).fd }));
    }
    map(BRIDGE.maps.flood).update(FloodKey.encode({ bridge: BR, vid: 1, pad: 0 }), floodList(PORTS.map((p) => ifx[p])));
    map(BRIDGE.maps.fdb).update(FdbKey.encode({ bridge: BR, vid: 1, mac: mac(B) }),
      FdbEntry.encode({ ifindex: ifx.p2, remote: 0, updated_ns: 0n, flags: FDB_FLAGS.STATIC, ageing_sec: 0 }));
  });

  function run(hook: Hook, p: PortName, f: Buffer) {
    if (hook === 'xdp') {
      return br.program(BRIDGE.programs.xdp).testRun({ data: f, ctx: xdpMd(ifx[p], f.length) });
    }
    return br.program(BRIDGE.programs.tc).testRun({ data: f, ctx: skbMd(ifx[p]) });
  }
  const drops = () => readDrops(map('xn_drops'));
  const stats = (p: PortName) => ifCounters(br, ifx[p]);
  /** The FDB's MACs and where they are, as text. */
  const fdb = () => [...map(BRIDGE.maps.fdb).entries()].map(([k, v]) => {
    const key = FdbKey.decode(k);
    const port = PORTS.find((p) => ifx[p] === FdbEntry.decode(v).ifindex);
    return `${[...key.mac].map((b) => b.toString(16).padStart(2, '0')).join(':')}@${port}`;
  }).sort();

  /**
   * What became of one frame: 'forward' (known unicast, sent on unchanged),
   * 'flood', or 'drop:REASON' (the verdict says drop, the frame is unchanged,
   * and exactly that reason was counted once). Nothing else changed counters.
   */
  function fate(hook: Hook, p: PortName, f: Buffer): string {
    const before = { drops: drops(), st: stats(p)! };
    const r = run(hook, p, f);
    const after = { drops: drops(), st: stats(p)! };
    const counted = Object.entries(after.drops).filter(([k, n]) => n !== (before.drops[k] ?? 0));
    expect(after.st.rx_packets - before.st.rx_packets).toBe(1n);
    if (r.retval === (hook === 'xdp' ? XDP.DROP : TC.SHOT) && counted.length) {
      expect(counted.map(([k, n]) => [k, n - (before.drops[k] ?? 0)])).toEqual([[counted[0][0], 1]]);
      expect(after.st.dropped - before.st.dropped).toBe(1n);
      expect(r.data.equals(f), 'a dropped frame is left unchanged').toBe(true);
      return `drop:${counted[0][0]}`;
    }
    expect(counted).toEqual([]);
    if (after.st.flooded > before.st.flooded) return 'flood';
    expect(r.retval).toBe(hook === 'xdp' ? XDP.REDIRECT : TC.REDIRECT);
    expect(r.data.equals(f), 'forwarded unchanged').toBe(true);
    return 'forward';
  }

  for (const hook of ['xdp', 'tc'] as const) {
    describe(hook, () => {
      it('passes the locked port\'s own IPv4, from each of its addresses, tagged or not, and its own ARP', () => {
        expect(fate(hook, 'p1', ipFrame({ saddr: A_IP }))).toBe('forward');
        expect(fate(hook, 'p1', ipFrame({ saddr: A_IP2 }))).toBe('forward');
        expect(fate(hook, 'p1', ipFrame({ saddr: A_IP, dst: BCAST, daddr: '10.0.0.255' }))).toBe('flood');
        expect(fate(hook, 'p1', arp({ op: 1, spa: A_IP, tpa: B_IP }))).toBe('flood'); // who has B's address?
        expect(fate(hook, 'p1', arp({ op: 2, dst: B, spa: A_IP, tha: B, tpa: B_IP }))).toBe('forward'); // its own reply
        expect(fate(hook, 'p1', arp({ op: 1, spa: A_IP, tpa: A_IP }))).toBe('flood'); // gratuitous, for its own address
        expect(fate(hook, 'p1', arp({ op: 1, spa: '0.0.0.0', tpa: A_IP }))).toBe('flood'); // RFC 5227 probe
        expect(fate(hook, 'p1', ipFrame({ saddr: A_IP, dst: BCAST, vlan: 1 }))).toBe('flood'); // parsed past the tag
        expect(drops()).toEqual({});
        expect(fdb()).toEqual([`${A}@p1`, `${B}@p2`]);
      });

      it('drops frames from another source MAC, the victim\'s included, without learning them', () => {
        expect(fate(hook, 'p1', ipFrame({ src: C, saddr: A_IP }))).toBe('drop:port-lock-mac');
        expect(fate(hook, 'p1', ipFrame({ src: B, dst: BCAST, saddr: B_IP }))).toBe('drop:port-lock-mac'); // takes B's MAC
        expect(fate(hook, 'p1', arp({ op: 1, src: C, sha: C, spa: A_IP, tpa: B_IP }))).toBe('drop:port-lock-mac');
        expect(fdb()).toEqual([`${B}@p2`]); // B still behind p2; neither C nor B learned on p1
        expect(drops()).toEqual({ 'port-lock-mac': 3 });
      });

      it('drops ARP that claims another\'s address or MAC: gratuitous, replies, requests', () => {
        expect(fate(hook, 'p1', arp({ op: 1, spa: B_IP, tpa: B_IP }))).toBe('drop:port-lock-arp'); // gratuitous ARP for B's address
        expect(fate(hook, 'p1', arp({ op: 2, dst: C, spa: B_IP, tha: C, tpa: '10.0.0.3' }))).toBe('drop:port-lock-arp'); // answering for B
        expect(fate(hook, 'p1', arp({ op: 2, dst: BCAST, spa: B_IP, tpa: B_IP }))).toBe('drop:port-lock-arp'); // unsolicited reply
        expect(fate(hook, 'p1', arp({ op: 1, sha: B, spa: A_IP, tpa: B_IP }))).toBe('drop:port-lock-arp'); // sender MAC B
        expect(fate(hook, 'p1', arp({ op: 2, dst: B, spa: '0.0.0.0', tha: B, tpa: B_IP }))).toBe('drop:port-lock-arp'); // 0.0.0.0 only in a probe
        expect(fate(hook, 'p1', arp({ op: 1, spa: A_IP, tpa: B_IP, htype: 6 }))).toBe('drop:port-lock-arp'); // not Ethernet ARP
        expect(fate(hook, 'p1', arp({ op: 1, spa: A_IP, tpa: B_IP }).subarray(0, 14 + 27))).toBe('drop:port-lock-arp'); // cut short
        expect(drops()).toEqual({ 'port-lock-arp': 7 });
        expect(fdb()).toEqual([`${B}@p2`]);
      });

      it('drops IPv4 from another source address (0.0.0.0 too), anything but IPv4 and ARP, and cut IPv4 headers', () => {
        expect(fate(hook, 'p1', ipFrame({ saddr: B_IP }))).toBe('drop:port-lock-ip');
        expect(fate(hook, 'p1', ipFrame({ saddr: '0.0.0.0', dst: BCAST, daddr: '255.255.255.255' }))).toBe('drop:port-lock-ip');
        // (the kernel runs tc on no IPv4 frame shorter than its header: XDP alone sees one)
        if (hook === 'xdp') expect(fate(hook, 'p1', ipFrame({ saddr: A_IP }).subarray(0, 14 + 15))).toBe('drop:port-lock-ip');
        expect(fate(hook, 'p1', eth({ dst: B, src: A, type: ETH_P.IPV6 }, Buffer.alloc(40, 0x60)))).toBe('drop:port-lock-proto');
        expect(fate(hook, 'p1', eth({ dst: B, src: A, type: 0x88b5 }, Buffer.alloc(46)))).toBe('drop:port-lock-proto');
        expect(fate(hook, 'p1', ipFrame({ saddr: B_IP, vlan: 1 }))).toBe('drop:port-lock-ip'); // behind a tag
        expect(drops()).toEqual({ 'port-lock-ip': hook === 'xdp' ? 4 : 3, 'port-lock-proto': 2 });
        expect(fdb()).toEqual([`${B}@p2`]);
      });

      it('checks a cached decision\'s frame again: the cache knows the MACs, not the addresses', () => onCpu0(() => {
        const own = ipFrame({ saddr: A_IP });
        for (let i = 0; i < 3; i++) expect(fate(hook, 'p1', own)).toBe('forward');
        const hits = readCacheStats(map('xn_cache_stats')).bridge.hits;
        expect(fate(hook, 'p1', ipFrame({ saddr: B_IP }))).toBe('drop:port-lock-ip'); // same key as `own`
        expect(readCacheStats(map('xn_cache_stats')).bridge.hits).toBeGreaterThan(hits); // refused on the hit path
        expect(fate(hook, 'p1', arp({ op: 2, dst: B, spa: B_IP, tha: B, tpa: B_IP }))).toBe('drop:port-lock-arp');
      }));

      it('a locked port without its addresses in xn_port_locks passes nothing', () => {
        map(PORT_LOCK_MAP).delete(u32(ifx.p1));
        expect(fate(hook, 'p1', ipFrame({ saddr: A_IP }))).toBe('drop:port-lock-mac');
      });

      it('leaves unlocked ports alone: any source MAC and address, IPv6, learned as before', () => {
        expect(fate(hook, 'p3', ipFrame({ src: C, saddr: B_IP }))).toBe('forward');
        expect(fate(hook, 'p3', arp({ op: 1, src: C, sha: C, spa: B_IP, tpa: B_IP }))).toBe('flood');
        expect(fate(hook, 'p3', eth({ dst: B, src: C, type: ETH_P.IPV6 }, Buffer.alloc(40, 0x60)))).toBe('forward');
        expect(drops()).toEqual({});
        expect(fdb()).toEqual([`${B}@p2`, `${C}@p3`]);
      });
    });
  }
});
