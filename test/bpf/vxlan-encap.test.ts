// VXLAN encapsulation on the bridge's ports, XDP and tc, byte-exact: outer headers as RFC 7348 and our
// choices make them (source port from the inner flow's hash), head-end replication to every remote,
// the next-hop cache, MTU and drops by reason.
// The bench (namespace, objects, captures, reset before each test): ./vxlan-world.ts.
import { describe, expect, it } from 'vitest';
import { readDropsByIface } from '../../src/dataplane/stats.js';
import { BR_GEN_MAP, BRIDGE, floodList, FloodKey, invalidateCache, VXLAN, XDP_NOTES } from '../../src/objects/bridge.js';
import { TC, XDP } from '../helpers/bpf.js';
import { eth, ETH_P, hex, mac, macStr, parse, udp4 } from '../helpers/packet.js';
import { inNs, onCpu0, sh, sleep } from '../helpers/sys.js';
import {
  A, arp, B, BCAST, BR, C_MAC, encapsulated, inner, inner6, LOCAL, NOROUTE, R2, R2_MAC, R3, R3_MAC, R9, vxlanWorld, X, xdpSport, Y,
} from './vxlan-world.js';

describe('VXLAN VTEP: encap', () => {
  const w = vxlanWorld();
  const { addRemoteMac, caches, capturedRaw, checkOuter, drops, expectEncap, ifx, map, setRemotes, setVtep, stats, tcRun, xdpLive, xdpRun, xdpSend } = w;

  describe('encap, XDP', () => {
    it('encapsulates unicast for a remote MAC: every outer field, byte-exact', () => {
      addRemoteMac(X, R2);
      const f = inner(X, A);
      expect(xdpRun('p1', f).retval).toBe(XDP.REDIRECT);
      expect(capturedRaw()).toEqual({}); // a verdict-only run sends nothing
      const out = xdpSend('p1', f, 1);
      expect(out).toEqual({ up0: [expectEncap(f, R2, R2_MAC, xdpSport(f))] });
      xdpSend('p1', f, 1);
      expect(stats('up0')).toMatchObject({ tx_packets: 3n, tx_bytes: 3n * BigInt(f.length + 50) });
    });

    it('caches which VTEP a remote MAC is behind, until the control process invalidates it', () => {
      onCpu0(() => {
        addRemoteMac(X, R2);
        const f = inner(X, A);
        expect(xdpSend('p1', f, 1)).toEqual({ up0: [expectEncap(f, R2, R2_MAC, xdpSport(f))] });
        addRemoteMac(X, R3); // behind the cache's back
        expect(xdpSend('p1', f, 1)).toEqual({ up0: [expectEncap(f, R2, R2_MAC, xdpSport(f))] });
        invalidateCache(map(BR_GEN_MAP));
        expect(xdpSend('p1', f, 1)).toEqual({ up0: [expectEncap(f, R3, R3_MAC, xdpSport(f))] });
        expect(stats('p1')).toMatchObject({ rx_packets: 3n, dropped: 0n });
      });
    });

    it('caches the VTEP\'s address, port and VNI with the next hop, yet applies a VTEP change at once', () => {
      onCpu0(() => {
        addRemoteMac(X, R2);
        const f = inner(X, A);
        const out = (dport: number) => hex(encapsulated({ dst: R2_MAC, src: w.upMac, saddr: LOCAL, daddr: R2, sport: xdpSport(f), dport }, f));
        // Cached: a VTEP written behind the cache's back is not seen within the 20 ms. Only a
        // try whose two runs came well within that (10 ms, the coarse clock's ticks being up to
        // 4 ms) proves anything: an emulated VM can take longer for every pair.
        let cached = false;
        let quick = 0;
        for (let i = 0; i < 20 && !cached; i++) {
          setVtep({});
          invalidateCache(map(BR_GEN_MAP));
          const t0 = process.hrtime.bigint();
          expect(hex(xdpRun('p1', f).data)).toBe(out(4789));
          setVtep({ port: 8472 });
          const hit = hex(xdpRun('p1', f).data) === out(4789);
          if (process.hrtime.bigint() - t0 < 10_000_000n) quick++;
          cached ||= hit;
        }
        if (quick) expect(cached).toBe(true);
        else console.warn('encap cache: no two runs within 10 ms on this machine, its 20 ms validity not checked');
        setVtep({});
        invalidateCache(map(BR_GEN_MAP));
        expect(hex(xdpRun('p1', f).data)).toBe(out(4789)); // cached for 20 ms
        setVtep({ port: 8472 });
        invalidateCache(map(BR_GEN_MAP)); // as every vxlan command does: no waiting for the 20 ms
        expect(hex(xdpRun('p1', f).data)).toBe(out(8472));
      });
    });

    it('checks each outer field independently', () => {
      addRemoteMac(X, R3);
      const f = inner(X, A);
      xdpLive('p1', f);
      const [a, b] = capturedRaw(1).up0 ?? [];
      expect(b).toBeUndefined();
      expect(a.len).toBe(f.length + 50);
      expect(checkOuter(a.data, { dst: R3_MAC, daddr: R3, innerLen: f.length })).toBe(xdpSport(f));
      expect(a.data.subarray(50).equals(f)).toBe(true);
    });

    it('spreads flows over source ports from a hash of the inner flow (MACs for non-IP)', () => {
      addRemoteMac(X, R2);
      const ports = new Set<number>();
      for (let sp = 1000; sp < 1008; sp++) {
        const f = eth({ dst: X, src: A }, udp4({ src: '10.0.0.1', dst: '10.0.0.2', sport: sp, dport: 53 }, Buffer.from('q')));
        xdpLive('p1', f);
        const frames = capturedRaw(1).up0!;
        expect(frames).toHaveLength(1);
        expect(frames[0].data.readUInt16BE(34)).toBe(xdpSport(f));
        ports.add(xdpSport(f));
      }
      expect(ports.size).toBeGreaterThan(4);
      const a = arp(X, A);
      expect(xdpSend('p1', a, 1)).toEqual({ up0: [expectEncap(a, R2, R2_MAC, xdpSport(a))] });
    });

    it('pops the tag of a trunk frame: the VNI stands for the VLAN', () => {
      addRemoteMac(X, R2);
      const f = inner(X, A);
      expect(xdpSend('p3', inner(X, A, 1), 1)).toEqual({ up0: [expectEncap(f, R2, R2_MAC, xdpSport(f))] });
    });

    it('drops a frame for a remote MAC on a VLAN without a VNI', () => {
      addRemoteMac(X, R2, 10);
      expect(xdpRun('p3', inner(X, A, 10)).retval).toBe(XDP.DROP);
      expect(drops()).toEqual({ 'vxlan-unknown-vni': 1 });
    });

    it('never fragments: an inner packet of uplink MTU − 50 goes, one byte more is dropped', () => {
      addRemoteMac(X, R2);
      const fits = inner(X, A, undefined, 'x'.repeat(1500 - 50 - 28)); // inner IPv4 packet of 1450 bytes
      const big = inner(X, A, undefined, 'x'.repeat(1500 - 50 - 28 + 1));
      xdpLive('p1', fits);
      const [sent] = capturedRaw(1).up0!;
      expect(sent.len).toBe(1514);
      expect(xdpRun('p1', big).retval).toBe(XDP.DROP);
      expect(drops()).toEqual({ 'vxlan-too-big': 1 });
      sh('ip', ['-n', w.ns, 'link', 'set', 'up0', 'mtu', '1400']);
      try {
        expect(xdpRun('p1', fits).retval).toBe(XDP.DROP);
        expect(drops()).toEqual({ 'vxlan-too-big': 2 });
      } finally {
        sh('ip', ['-n', w.ns, 'link', 'set', 'up0', 'mtu', '1500']);
      }
    });

    it('caches the next hop for at most 20 ms: a changed neighbour or a removed route applies after that', () => {
      addRemoteMac(X, R2);
      const f = inner(X, A);
      expect(xdpRun('p1', f).data.subarray(0, 6).equals(mac(R2_MAC))).toBe(true);
      const moved = '02:00:00:00:02:99';
      try {
        sh('ip', ['-n', w.ns, 'neigh', 'replace', R2, 'lladdr', moved, 'dev', 'up0', 'nud', 'permanent']);
        sleep(30);
        const r = xdpRun('p1', f);
        expect(r.retval).toBe(XDP.REDIRECT);
        expect(macStr(r.data)).toBe(moved);
        sh('ip', ['-n', w.ns, 'route', 'add', 'blackhole', `${R2}/32`]);
        sleep(30);
        expect(xdpRun('p1', f).retval).toBe(XDP.DROP);
        expect(drops()).toEqual({ 'vxlan-no-route': 1 });
      } finally {
        inNs(w.ns, 'ip', ['route', 'del', 'blackhole', `${R2}/32`]);
        sh('ip', ['-n', w.ns, 'neigh', 'replace', R2, 'lladdr', R2_MAC, 'dev', 'up0', 'nud', 'permanent']);
      }
    });

    it('counts each lookup of the bridge cache and the next-hop cache as a hit or a miss', () => {
      onCpu0(() => {
        addRemoteMac(X, R2);
        const f = inner(X, A);
        const n = 20;
        for (let i = 0; i < n; i++) expect(xdpRun('p1', f).retval).toBe(XDP.REDIRECT);
        const c = caches();
        expect(c.bridge).toEqual({ hits: n - 1, misses: 1 }); // a decision holds for a second
        // a next hop holds for 1 to 2 ticks (jiffies): back-to-back runs mostly hit, and every encap looks it up once
        expect(c['vxlan-nexthop'].hits + c['vxlan-nexthop'].misses).toBe(n);
        expect(c['vxlan-nexthop'].misses).toBeGreaterThanOrEqual(1);
        expect(c['vxlan-nexthop'].hits).toBeGreaterThanOrEqual(1);
        expect(c.nat).toEqual({ hits: 0, misses: 0 });
      });
    });

    it('drops a frame for a VTEP it has no route to', () => {
      addRemoteMac(X, NOROUTE);
      expect(xdpRun('p1', inner(X, A)).retval).toBe(XDP.DROP);
      expect(drops()).toEqual({ 'vxlan-no-route': 1 });
    });

    it('hands a frame whose next hop is unresolved to tc, whose bpf_redirect_neigh resolves it', () => {
      addRemoteMac(X, R9);
      const f = inner(X, A);
      const r = xdpRun('p1', f);
      expect(r.retval).toBe(XDP.PASS);
      expect(r.data.readUInt32LE(0)).toBe(XDP_NOTES.PUNT);
      xdpLive('p1', f); // XDP_PASS to the stack, where tc takes over and the kernel asks for the next hop
      const asked = capturedRaw(1).up0!.map((x) => parse(x.data));
      expect(asked.map((a) => ({ dst: a.eth!.dst, type: a.eth!.type, target: a.payload!.subarray(24, 28).join('.') })))
        .toEqual([{ dst: BCAST, type: ETH_P.ARP, target: R9 }]);
      const R9_MAC = '02:00:00:00:02:09';
      sh('ip', ['-n', w.ns, 'neigh', 'replace', R9, 'lladdr', R9_MAC, 'dev', 'up0', 'nud', 'reachable']);
      const frames = capturedRaw(1).up0!;
      const vx = frames.filter((x) => parse(x.data).vxlan);
      expect(vx).toHaveLength(1);
      const sport = checkOuter(vx[0].data, { dst: R9_MAC, daddr: R9, innerLen: f.length });
      expect(hex(vx[0].data)).toBe(expectEncap(f, R9, R9_MAC, sport));
      expect(stats('p1')).toMatchObject({ rx_packets: 2n, learned: 1n, dropped: 0n }); // tc did not count it again
    });

    it('hands floods that reach remote VTEPs to tc: local ports and one copy per remote', () => {
      const f = inner(BCAST, A);
      const r = xdpRun('p1', f);
      expect(r.retval).toBe(XDP.PASS);
      expect(r.data.readUInt32LE(0)).toBe(XDP_NOTES.PUNT); // the note for tc, in the metadata
      xdpLive('p1', f);
      const got = capturedRaw(4);
      expect(got.p2!.map((x) => hex(x.data))).toEqual([hex(f)]);
      expect(got.p3!.map((x) => hex(x.data))).toEqual([hex(inner(BCAST, A, 1))]);
      const remotes = got.up0!.map((x) => parse(x.data));
      expect(remotes.map((r) => [r.eth!.dst, r.ipv4!.dst])).toEqual([[R2_MAC, R2], [R3_MAC, R3]]);
      for (const [i, r] of got.up0!.entries()) {
        expect(hex(r.data)).toBe(expectEncap(f, remotes[i].ipv4!.dst, remotes[i].eth!.dst, remotes[i].udp!.sport));
      }
      expect(stats('p1')).toMatchObject({ rx_packets: 2n, flooded: 1n, learned: 1n, dropped: 0n });
      expect(stats('up0')).toMatchObject({ tx_packets: 2n });
    });

    it('floods in XDP alone when the VNI has no remote VTEPs', () => {
      setRemotes([]);
      const f = inner(BCAST, A);
      expect(xdpRun('p1', f).retval).toBe(XDP.REDIRECT);
      expect(xdpSend('p1', f, 2)).toEqual({ p2: [hex(f)], p3: [hex(inner(BCAST, A, 1))] });
    });
  });

  describe('encap, tc', () => {
    it('encapsulates unicast for a remote MAC: every outer field, byte-exact, stable source port per flow', () => {
      addRemoteMac(X, R2);
      const f = inner(X, A);
      const r = tcRun('p1', f);
      expect(r.retval).toBe(TC.REDIRECT);
      const sport = checkOuter(r.data, { dst: R2_MAC, daddr: R2, innerLen: f.length });
      expect(hex(r.data)).toBe(expectEncap(f, R2, R2_MAC, sport));
      expect(tcRun('p1', f).data.readUInt16BE(34)).toBe(sport);
      const ports = new Set<number>();
      for (let sp = 1000; sp < 1008; sp++) {
        const g = eth({ dst: X, src: A }, udp4({ src: '10.0.0.1', dst: '10.0.0.2', sport: sp, dport: 53 }, Buffer.from('q')));
        ports.add(tcRun('p1', g).data.readUInt16BE(34));
      }
      expect(ports.size).toBeGreaterThan(4);
      expect(stats('up0')).toMatchObject({ tx_packets: 10n });
    });

    it('encapsulates IPv6 (adjust_room) and ARP (change_head) frames', () => {
      addRemoteMac(X, R2);
      for (const f of [inner6(X, A), arp(X, A)]) {
        const r = tcRun('p1', f);
        expect(r.retval).toBe(TC.REDIRECT);
        const sport = checkOuter(r.data, { dst: R2_MAC, daddr: R2, innerLen: f.length });
        expect(hex(r.data)).toBe(expectEncap(f, R2, R2_MAC, sport));
      }
    });

    it('pops the tag of a trunk frame', () => {
      addRemoteMac(X, R2);
      const r = tcRun('p3', inner(X, A, 1));
      expect(r.retval).toBe(TC.REDIRECT);
      const f = inner(X, A);
      expect(hex(r.data)).toBe(expectEncap(f, R2, R2_MAC, r.data.readUInt16BE(34)));
    });

    it('drops what XDP drops, with the same reasons', () => {
      addRemoteMac(X, NOROUTE);
      addRemoteMac(Y, R2, 10);
      addRemoteMac(B, R2);
      expect(tcRun('p1', inner(X, A)).retval).toBe(TC.SHOT);
      expect(tcRun('p3', inner(Y, A, 10)).retval).toBe(TC.SHOT);
      expect(tcRun('p1', inner(B, A, undefined, 'x'.repeat(1423))).retval).toBe(TC.SHOT);
      expect(tcRun('p1', inner(B, A, undefined, 'x'.repeat(1422))).retval).toBe(TC.REDIRECT);
      expect(drops()).toEqual({ 'vxlan-no-route': 1, 'vxlan-unknown-vni': 1, 'vxlan-too-big': 1 });
    });

    it('redirects through the neighbour subsystem when the next hop is unresolved (IP only)', () => {
      addRemoteMac(X, R9);
      const f = inner(X, A);
      const r = tcRun('p1', f);
      expect(r.retval).toBe(TC.REDIRECT);
      // MACs are left to the neighbour subsystem
      expect(hex(r.data)).toBe(hex(encapsulated({
        dst: '00:00:00:00:00:00', src: '00:00:00:00:00:00', saddr: LOCAL, daddr: R9, sport: r.data.readUInt16BE(34),
      }, f)));
      expect(tcRun('p1', arp(X, A)).retval).toBe(TC.SHOT);
      expect(drops()).toEqual({ 'vxlan-no-neighbour': 1 });
    });

    it('replicates a flood: one copy per local port and per remote VTEP, then drops the original', () => {
      setRemotes([R2, NOROUTE, R3, R9]);
      const f = inner(BCAST, A);
      expect(tcRun('p1', f).retval).toBe(TC.SHOT);
      const got = capturedRaw(4);
      expect(Object.fromEntries(Object.entries(got).map(([k, v]) => [k, v.length]))).toEqual({ p2: 1, p3: 1, up0: 2 });
      expect(hex(got.p2![0].data)).toBe(hex(f));
      expect(hex(got.p3![0].data)).toBe(hex(inner(BCAST, A, 1)));
      const sport = got.up0![0].data.readUInt16BE(34);
      expect(got.up0!.map((x) => hex(x.data))).toEqual([expectEncap(f, R2, R2_MAC, sport), expectEncap(f, R3, R3_MAC, sport)]);
      for (const [i, daddr] of [R2, R3].entries()) {
        checkOuter(got.up0![i].data, { dst: [R2_MAC, R3_MAC][i], daddr, innerLen: f.length });
      }
      expect(stats('up0')).toMatchObject({ tx_packets: 2n });
    });

    it('counts one flood frame once, as flooded, and each refused remote copy once under its reason', () => {
      setRemotes([R2, NOROUTE, R3, R9]);
      const f = inner(BCAST, A);
      expect(tcRun('p1', f).retval).toBe(TC.SHOT);
      capturedRaw(4);
      // every counter of every interface: the frame is in rx and flooded once, in dropped never (it was flooded);
      // the two copies that could not go (no route to NOROUTE, R9 unresolved) are one drop each by reason, under p1
      const zero = { rx_packets: 0n, rx_bytes: 0n, tx_packets: 0n, tx_bytes: 0n, flooded: 0n, learned: 0n, dropped: 0n, arp_replied: 0n, learn_refused: 0n };
      const tx = (n: number, len: number) => ({ ...zero, tx_packets: BigInt(n), tx_bytes: BigInt(n * len) });
      expect(Object.fromEntries((['p1', 'p2', 'p3', 'up0'] as const).map((d) => [d, stats(d)]))).toEqual({
        p1: { ...zero, rx_packets: 1n, rx_bytes: BigInt(f.length), flooded: 1n, learned: 1n },
        p2: tx(1, f.length),
        p3: tx(1, f.length), // tagged for the trunk: tc counts skb->len, the tag is in the skb's metadata
        up0: tx(2, f.length + 50),
      });
      expect(Object.fromEntries(readDropsByIface(map('xn_drops')))).toEqual({ [ifx.p1]: { 'vxlan-no-route': 1, 'vxlan-no-neighbour': 1 } });
    });

    // The route and the permanent neighbours stay while up0 has no carrier, so each copy is made and
    // encapsulated; bpf_clone_redirect then meets the kernel's noop qdisc (NET_XMIT_CN) and the copy is lost.
    it('counts each remote copy the kernel refuses (the uplink without carrier) once, and the local copies still go', () => {
      setRemotes([R2, R3]);
      sh('ip', ['link', 'set', 'up0x', 'down']); // the test process is in the namespace
      try {
        const f = inner(BCAST, A);
        expect(tcRun('p1', f).retval).toBe(TC.SHOT);
        const got = capturedRaw(2);
        expect(Object.fromEntries(Object.entries(got).map(([k, v]) => [k, v.length]))).toEqual({ p2: 1, p3: 1 });
        expect(Object.fromEntries(readDropsByIface(map('xn_drops')))).toEqual({ [ifx.p1]: { 'flood-copy-refused': 2 } });
        expect(stats('p1')).toMatchObject({ rx_packets: 1n, flooded: 1n, dropped: 0n });
        expect(stats('up0')).toMatchObject({ tx_packets: 0n });
      } finally {
        sh('ip', ['link', 'set', 'up0x', 'up']);
      }
    });

    it('replicates a flood to as many remote VTEPs as a VNI may have (64): each copy byte-exact', () => {
      const remotes = Array.from({ length: VXLAN.limits.remotesMax }, (_, i) => [`192.0.2.${100 + i}`, `02:00:00:00:03:${i.toString(16).padStart(2, '0')}`] as const);
      const neigh = (cmd: (ip: string, m: string) => string) => sh('bash', ['-ec', remotes.map(([ip, m]) => `ip neigh ${cmd(ip, m)}`).join('\n')]);
      neigh((ip, m) => `replace ${ip} lladdr ${m} dev up0 nud permanent`); // in this process's namespace
      try {
        setRemotes(remotes.map(([ip]) => ip));
        // p1 alone in the flood domain: the 64 copies fill the capture's 64 slots
        map(BRIDGE.maps.flood).update(FloodKey.encode({ bridge: BR, vid: 1, pad: 0 }), floodList([w.ifx.p1]));
        const f = inner(BCAST, A);
        expect(tcRun('p1', f).retval).toBe(TC.SHOT);
        const got = capturedRaw(remotes.length);
        expect(Object.keys(got)).toEqual(['up0']);
        const sport = got.up0![0].data.readUInt16BE(34);
        expect(got.up0!.map((x) => hex(x.data)).sort()).toEqual(remotes.map(([ip, m]) => expectEncap(f, ip, m, sport)).sort());
        expect(stats('up0')).toMatchObject({ tx_packets: BigInt(remotes.length) });
        expect(drops()).toEqual({});
      } finally {
        neigh((ip) => `del ${ip} dev up0`);
      }
    });

    it('replicates a tagged flood from a trunk: untagged locally and inside VXLAN', () => {
      const f = inner(BCAST, C_MAC);
      expect(tcRun('p3', inner(BCAST, C_MAC, 1)).retval).toBe(TC.SHOT);
      const got = capturedRaw(4);
      expect(got.p1!.map((x) => hex(x.data))).toEqual([hex(f)]);
      expect(got.p2!.map((x) => hex(x.data))).toEqual([hex(f)]);
      const sport = got.up0![0].data.readUInt16BE(34);
      expect(got.up0!.map((x) => hex(x.data))).toEqual([expectEncap(f, R2, R2_MAC, sport), expectEncap(f, R3, R3_MAC, sport)]);
    });

    it('replicates ARP broadcasts (change_head) too', () => {
      const f = arp(BCAST, A);
      expect(tcRun('p1', f).retval).toBe(TC.SHOT);
      const got = capturedRaw(4);
      const sport = got.up0![0].data.readUInt16BE(34);
      expect(got.up0!.map((x) => hex(x.data))).toEqual([expectEncap(f, R2, R2_MAC, sport), expectEncap(f, R3, R3_MAC, sport)]);
      expect(got.p2!.map((x) => hex(x.data))).toEqual([hex(f)]);
    });
  });

});
