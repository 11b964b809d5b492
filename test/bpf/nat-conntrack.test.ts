// NAT's connection tracking: TCP states, timeouts and expiry, XDP's FIB cache and hot copies, the
// table's size, and rules changed under established flows.
// The bench (namespaces, the object, reset before each test): ./nat-world.ts.
import { describe, expect, it } from 'vitest';
import { sumPerCpu, u32, ipv4ToNum } from '../../src/objects/codec.js';
import {
  CT_FLAGS, CT_STATE_NAMES, CtEntry, ctEntriesFor, CtKey, CtStats, flowsDeleted, NAT, SNAT_FLAGS, SnatRule, snatKey,
} from '../../src/objects/nat.js';
import { NAT_HOT } from '../../src/objects/memory.js';
import { numPossibleCpus } from '../../src/sys/libbpf.js';
import { builtObject, PinRoot, TC } from '../helpers/bpf.js';
import { eth, hex, IPPROTO, parse, tcp4, udp4 } from '../helpers/packet.js';
import { onCpu0, sh, sleep } from '../helpers/sys.js';
import { C1, C2, fromC1, fromC2, fromGw, H, MAC, natWorld, S, toC1, toGw } from './nat-world.js';

describe('NAT programs: conntrack', () => {
  const w = natWorld();
  const { age, ctStats, flow, flows, ifx, map, natCache, now, send, setConfig, skbCtx, syn } = w;

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
      sh('ip', ['-n', w.hns, 'neigh', 'replace', C1, 'lladdr', C1_NEW_MAC, 'dev', 'ct0', 'nud', 'permanent']);
      try {
        expectTo(reply(), MAC.c1); // cached
        sleep(1100); // the FIB answer (in the entry, and in XDP's copy of the flow) is a second old
        expectTo(reply(), C1_NEW_MAC);
        expect(flow(IPPROTO.TCP, C1, 40000, S, 80)[1].fib_dmac.toString('hex')).toBe(C1_NEW_MAC.replace(/:/g, ''));
        expect(flow(IPPROTO.TCP, C1, 40000, S, 80)[0].fib_ifindex).toBe(0); // its packets went through tc, which caches nothing
      } finally {
        sh('ip', ['-n', w.hns, 'neigh', 'replace', C1, 'lladdr', MAC.c1, 'dev', 'ct0', 'nud', 'permanent']);
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
        expect(w.hotPart).toBe(NAT_HOT.minPart);
        expect(hot.info.maxEntries).toBe(w.hotPart * numPossibleCpus());
        const added = filled();
        expect(added.length).toBe(1);
        expect(added[0]).toBeLessThan(w.hotPart);
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

});
