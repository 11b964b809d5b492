// The bridge programs' forwarding, XDP and tc, byte-exact: learning, known unicast, floods to VLAN
// members (tagged and untagged), VLAN ingress and egress rules, and drops by reason.
// The bench (namespace, objects, captures, reset before each test): ./bridge-world.ts.
import { readDropsByIface } from '../../src/dataplane/stats.js';
import { describe, expect, it } from 'vitest';
import { Bridge, BRIDGE, BR_GEN_MAP, FDB_FLAGS, FdbEntry, FdbKey, floodList, FloodKey, invalidateCache, Port, PORT_FLAGS, Vlan, VlanKey, XDP_NOTES } from '../../src/objects/bridge.js';
import { u32 } from '../../src/objects/codec.js';
import { EVENT_HOOKS, EVENT_TYPES, MON_FLAGS, openEvents, type RawEvent, setMonitor } from '../../src/objects/monitor.js';
import type { InstancePaths } from '../../src/objects/paths.js';
import { DROP_REASONS } from '../../src/objects/stats.js';
import { giveSlots, TC, XDP } from '../helpers/bpf.js';
import { fromHex, hex, mac } from '../helpers/packet.js';
import { sh } from '../helpers/sys.js';
import { xdpSendMode } from '../helpers/xdp-send.js';
import { ifNameToIndex } from '../../src/sys/libc.js';
import { A, B, BCAST, BR, BR_MAC, bridgeWorld, C, frame, PORTS } from './bridge-world.js';

describe('bridge programs: forwarding', () => {
  const w = bridgeWorld();
  const { addStatic, captured, drops, fdb, ifx, map, stats, tcRun, xdpCtx, xdpSend, xdpSendBy, xdpVerdict } = w;

  describe('XDP', () => {
    it('floods a broadcast to the other ports of its VLAN, tagging for the trunk', () => {
      const f = frame(BCAST, A);
      expect(xdpVerdict('p1', f)).toBe(XDP.REDIRECT);
      expect(xdpSend('p1', f)).toEqual({ p2: [hex(f)], p3: [hex(frame(BCAST, A, 1))] });
      expect(stats('p1')).toMatchObject({ rx_packets: 2n, flooded: 2n, learned: 1n, dropped: 0n });
      expect(stats('p3')).toMatchObject({ tx_packets: 1n, tx_bytes: BigInt(f.length + 4) });
    });

    it('floods the same frames whether the test sends them on the wire or as live frames', () => {
      // The harness's two ways of driving XDP (helpers/xdp-send.ts) agree where both work: before
      // Linux 6.3 only the wire does, and there the live side would lose the flood's copies.
      const f = frame(BCAST, A);
      const want = { p2: [hex(f)], p3: [hex(frame(BCAST, A, 1))] };
      expect(xdpSendBy('wire', 'p1', f)).toEqual(want);
      if (xdpSendMode() === 'live') expect(xdpSendBy('live', 'p1', f)).toEqual(want);
      expect(stats('p1')).toMatchObject({ rx_packets: xdpSendMode() === 'live' ? 2n : 1n, flooded: xdpSendMode() === 'live' ? 2n : 1n });
    });

    it('learns the source MAC against the ingress port, once', () => {
      xdpSend('p1', frame(BCAST, A));
      expect(fdb(A)).toMatchObject({ ifindex: ifx.p1, remote: 0, flags: 0, ageing_sec: 300 });
      const first = fdb(A)!.updated_ns;
      xdpSend('p1', frame(BCAST, A));
      expect(fdb(A)!.updated_ns).toBe(first); // not rewritten within a second
      expect(stats('p1')!.learned).toBe(1n);
      expect(Bridge.decode(map(BRIDGE.maps.bridges).lookup(u32(BR))!).learned).toBe(1);
    });

    it('forwards known unicast to the learned port only', () => {
      xdpSend('p2', frame(BCAST, B)); // B learned on p2
      expect(xdpSend('p1', frame(B, A))).toEqual({ p2: [hex(frame(B, A))] });
    });

    it('tags known unicast leaving a trunk, without the devmap', () => {
      addStatic(C, 'p3');
      expect(xdpSend('p1', frame(C, A))).toEqual({ p3: [hex(frame(C, A, 1))] });
      expect(stats('p3')).toMatchObject({ tx_packets: 1n, tx_bytes: BigInt(frame(C, A).length + 4) });
    });

    it('refuses known unicast to a port outside the frame\'s VLAN', () => {
      addStatic(B, 'p4', 1); // a stale static entry pointing at a VLAN-10-only port
      expect(xdpVerdict('p1', frame(B, A))).toBe(XDP.DROP);
      expect(drops()).toEqual({ 'vlan-egress-denied': 1 });
    });

    it('ignores a learned entry older than its ageing and floods', () => {
      map(BRIDGE.maps.fdb).update(FdbKey.encode({ bridge: BR, vid: 1, mac: mac(B) }),
        FdbEntry.encode({ ifindex: ifx.p2, remote: 0, updated_ns: 1n, flags: 0, ageing_sec: 1 })); // learned at boot, 1 s ageing: expired on any machine
      expect(xdpSend('p1', frame(B, A))).toEqual({ p2: [hex(frame(B, A))], p3: [hex(frame(B, A, 1))] });
    });

    it('floods unknown unicast', () => {
      expect(xdpSend('p1', frame(C, A))).toEqual({ p2: [hex(frame(C, A))], p3: [hex(frame(C, A, 1))] });
    });

    it('follows a MAC that moves to another port', () => {
      xdpSend('p1', frame(BCAST, A));
      xdpSend('p2', frame(BCAST, A));
      expect(fdb(A)!.ifindex).toBe(ifx.p2);
      expect(xdpSend('p3', frame(A, C, 1))).toEqual({ p2: [hex(frame(A, C))] });
    });

    it('never overwrites a static entry by learning', () => {
      addStatic(A, 'p2');
      xdpSend('p1', frame(BCAST, A));
      expect(fdb(A)).toMatchObject({ ifindex: ifx.p2, flags: FDB_FLAGS.STATIC });
      expect(stats('p1')!.learned).toBe(0n);
    });

    describe('at its limits (--max-learned, a full FDB)', () => {
      const D = '02:00:00:00:00:0d';
      /** The FDB as (MAC, port, static/learned) rows, sorted. */
      const table = () => map(BRIDGE.maps.fdb).entries().map(([k, v]) => {
        const e = FdbEntry.decode(v);
        return `${FdbKey.decode(k).mac.toString('hex')} ${PORTS.find((p) => ifx[p] === e.ifindex)} ${e.flags & FDB_FLAGS.STATIC ? 'static' : 'learned'}`;
      }).sort();
      const setLimit = (maxLearned: number, learned: number) => {
        const b = Bridge.decode(map(BRIDGE.maps.bridges).lookup(u32(BR))!);
        map(BRIDGE.maps.bridges).update(u32(BR), Bridge.encode({ ...b, max_learned: maxLearned, learned }));
      };
      const learnedCount = () => Bridge.decode(map(BRIDGE.maps.bridges).lookup(u32(BR))!).learned;

      it('stops learning at --max-learned, counts each refusal, still forwards, and lets statics in', () => {
        setLimit(2, 0);
        xdpSend('p1', frame(BCAST, A));
        xdpSend('p2', frame(BCAST, B));
        // C is over the limit: not learned, refused and counted, its frame still flooded.
        expect(xdpSend('p1', frame(BCAST, C))).toEqual({ p2: [hex(frame(BCAST, C))], p3: [hex(frame(BCAST, C, 1))] });
        expect(table()).toEqual(['02000000000a p1 learned', '02000000000b p2 learned']);
        expect(learnedCount()).toBe(2);
        expect(stats('p1')).toMatchObject({ learned: 1n, learn_refused: 1n });
        expect(stats('p2')).toMatchObject({ learned: 1n, learn_refused: 0n });
        // A known MAC moving needs no room.
        xdpSend('p3', frame(BCAST, A, 1));
        expect(table()).toEqual(['02000000000a p3 learned', '02000000000b p2 learned']);
        // A static entry is no learning: it goes in and forwards.
        addStatic(C, 'p2');
        invalidateCache(map(BR_GEN_MAP));
        expect(xdpSend('p3', frame(C, A, 1))).toEqual({ p2: [hex(frame(C, A))] });
        expect(table()).toEqual(['02000000000a p3 learned', '02000000000b p2 learned', '02000000000c p2 static']);
        expect(learnedCount()).toBe(2);
      });

      it('learns again once an entry is gone (aged out or flushed, and the control process recounted)', () => {
        setLimit(1, 0);
        xdpSend('p1', frame(BCAST, A));
        xdpSend('p2', frame(BCAST, D));
        expect(table()).toEqual(['02000000000a p1 learned']);
        expect(stats('p2')!.learn_refused).toBe(1n);
        map(BRIDGE.maps.fdb).delete(FdbKey.encode({ bridge: BR, vid: 1, mac: mac(A) })); // as `fdb age`/`fdb flush` do,
        setLimit(1, 0); // then recountLearned
        invalidateCache(map(BR_GEN_MAP));
        xdpSend('p2', frame(BCAST, D));
        expect(table()).toEqual(['02000000000d p2 learned']);
        expect(stats('p2')).toMatchObject({ learned: 1n, learn_refused: 1n });
      });

      it('counts a MAC it cannot learn because the FDB is full, and still floods its frame', () => {
        const fdbMap = map(BRIDGE.maps.fdb);
        const n = fdbMap.info.maxEntries;
        const keys = Buffer.alloc(n * FdbKey.size);
        const values = Buffer.alloc(n * FdbEntry.size);
        const v = FdbEntry.encode({ ifindex: ifx.p4, remote: 0, updated_ns: 0n, flags: FDB_FLAGS.STATIC, ageing_sec: 0 });
        for (let i = 0; i < n; i++) {
          const m = Buffer.from([0x02, 0xee, 0, i >> 16, (i >> 8) & 0xff, i & 0xff]);
          FdbKey.encode({ bridge: 2, vid: 1, mac: m }).copy(keys, i * FdbKey.size); // another bridge's statics fill it
          v.copy(values, i * FdbEntry.size);
        }
        fdbMap.updateBatch(keys, values, n);
        try {
          expect(xdpSend('p1', frame(BCAST, A))).toEqual({ p2: [hex(frame(BCAST, A))], p3: [hex(frame(BCAST, A, 1))] });
          expect(fdb(A)).toBeUndefined();
          expect(stats('p1')).toMatchObject({ learned: 0n, learn_refused: 1n });
        } finally {
          fdbMap.deleteBatch(keys, n);
        }
      });
    });

    it('drops a frame whose destination is behind its ingress port', () => {
      addStatic(B, 'p1');
      expect(xdpVerdict('p1', frame(B, A))).toBe(XDP.DROP);
      expect(drops()).toEqual({ 'same-port': 1 });
    });

    it('drops multicast and zero source MACs without learning them', () => {
      expect(xdpVerdict('p1', frame(BCAST, '01:00:5e:00:00:01'))).toBe(XDP.DROP);
      expect(xdpVerdict('p1', frame(BCAST, '00:00:00:00:00:00'))).toBe(XDP.DROP);
      expect(drops()).toEqual({ 'invalid-source-mac': 2 });
      expect([...map(BRIDGE.maps.fdb).keys()]).toEqual([]);
    });

    it('pops the tag from trunk to access port and keeps VLANs apart', () => {
      const f = frame(BCAST, C, 10);
      expect(xdpSend('p3', f)).toEqual({ p4: [hex(frame(BCAST, C))] });
      expect(fdb(C, 10)).toMatchObject({ ifindex: ifx.p3 });
      expect(fdb(C, 1)).toBeUndefined();
      // VLAN 10 from p4 never reaches the VLAN-1 ports
      expect(xdpSend('p4', frame(BCAST, A))).toEqual({ p3: [hex(frame(BCAST, A, 10))] });
    });

    it('refuses VLANs a port does not allow, and untagged frames on a port without PVID', () => {
      expect(xdpVerdict('p3', frame(BCAST, C, 20))).toBe(XDP.DROP);
      expect(xdpVerdict('p1', frame(BCAST, A, 10))).toBe(XDP.DROP);
      expect(xdpVerdict('p3', frame(BCAST, C))).toBe(XDP.DROP);
      expect(drops()).toEqual({ 'vlan-ingress-denied': 2, 'vlan-untagged-refused': 1 });
      expect(stats('p3')!.dropped).toBe(2n);
      // and by the port that received them
      const byPort = readDropsByIface(map('xn_drops'));
      expect(byPort.get(ifx.p3)).toEqual({ 'vlan-ingress-denied': 1, 'vlan-untagged-refused': 1 });
      expect(byPort.get(ifx.p1)).toEqual({ 'vlan-ingress-denied': 1 });
    });

    // Found by the fuzz tier: a port sending from the bridge's MAC was learned, and took the host's frames.
    it('never learns the bridge\'s own MAC from a port: frames to it still go to the host', () => {
      xdpSend('p3', frame(BCAST, BR_MAC, 10)); // VLAN 10: no host port's local entry there
      expect(fdb(BR_MAC, 10)).toBeUndefined();
      expect(xdpVerdict('p4', frame(BR_MAC, A))).toBe(XDP.PASS);
    });

    it('passes frames for the bridge MAC to the host stack, unchanged', () => {
      const f = frame(BR_MAC, A);
      const r = w.br.program(BRIDGE.programs.xdp).testRun({ data: f, ctx: xdpCtx('p1', f) });
      expect(r.retval).toBe(XDP.PASS);
      // BPF_PROG_RUN returns the metadata too: XDP's note for the port's tc
      // program (XN_META_LOCAL: counted, for the host), then the frame as it came
      expect(r.data.readUInt32LE(0)).toBe(XDP_NOTES.LOCAL);
      expect(hex(r.data.subarray(4))).toBe(hex(f));
      expect(stats('p1')).toMatchObject({ rx_packets: 1n, learned: 1n });
    });

    it('leaves frames of interfaces that are not ports alone', () => {
      map(BRIDGE.maps.ports).delete(u32(ifx.p2));
      expect(xdpVerdict('p2', frame(BCAST, A))).toBe(XDP.PASS);
      expect(drops()).toEqual({});
    });

    it('drops a tagged frame truncated inside its tag, at every length', () => {
      const f = frame(BCAST, A, 1);
      for (let len = 14; len < 18; len++) {
        expect(xdpVerdict('p3', f.subarray(0, len)), `length ${len}`).toBe(XDP.DROP);
      }
      expect(drops()).toEqual({ 'truncated-vlan': 4 });
      expect([...map(BRIDGE.maps.fdb).keys()]).toEqual([]);
    });
  });

  // Known-unicast decisions are cached per CPU and hold until xn_br_gen changes
  // or the entry would age: these pin down that contract.

  describe('tc', () => {
    it('floods with one clone per member, tagging for the trunk, and drops the original', () => {
      const f = frame(BCAST, A);
      const r = tcRun('p1', f);
      expect(r.retval).toBe(TC.SHOT);
      expect(captured()).toEqual({ p2: [hex(f)], p3: [hex(frame(BCAST, A, 1))] });
      expect(fdb(A)).toMatchObject({ ifindex: ifx.p1 });
      expect(stats('p1')).toMatchObject({ rx_packets: 1n, flooded: 1n, learned: 1n });
    });

    it('floods to a full flood domain (64 members, untagged and tagged): one clone each, tagged as each member wants', () => {
      // 61 more ports in VLAN 1 beside p1, p2, p3: every other one a tagged trunk member. The
      // copies are counted by the kernel at each veth's far end (the test process is in the namespace).
      const extra = Array.from({ length: BRIDGE.limits.floodMax - 3 }, (_, i) => `q${i}`);
      if (!sh('ip', ['-o', 'link', 'show']).includes(' q0@')) { // one shell: 61 veths by spawnSync take seconds on a loaded machine
        sh('bash', ['-ec', extra.map((q) => `ip link add ${q} up type veth peer name ${q}x; ip link set ${q}x up
          ethtool -K ${q} txvlan off`).join('\n')]); // the tag in the frame, so the far end's byte count shows it
      }
      const qx = extra.map((q) => ifNameToIndex(q));
      const slots = giveSlots(w.br, [...PORTS.map((p) => ifx[p]), ...qx]);
      qx.forEach((ifindex, i) => {
        map(BRIDGE.maps.ports).update(u32(ifindex), Port.encode({ bridge: BR, pvid: i % 2 ? 0 : 1, flags: PORT_FLAGS.LEARNING, slot: slots.get(ifindex)! }));
        map(BRIDGE.maps.vlans).update(VlanKey.encode({ ifindex, vid: 1, pad: 0 }), Vlan.encode({ untagged: i % 2 ? 0 : 1 }));
      });
      const members = [ifx.p1, ifx.p2, ifx.p3, ...qx];
      expect(members.length).toBe(BRIDGE.limits.floodMax);
      map(BRIDGE.maps.flood).update(FloodKey.encode({ bridge: BR, vid: 1, pad: 0 }), floodList(members));
      const rx = () => new Map((JSON.parse(sh('ip', ['-j', '-s', 'link', 'show'])) as Array<{ ifname: string; stats64: { rx: { packets: number; bytes: number } } }>)
        .map((l) => [l.ifname, l.stats64.rx]));
      const before = rx();
      const f = frame(BCAST, A);
      expect(tcRun('p1', f).retval).toBe(TC.SHOT);
      expect(captured()).toEqual({ p2: [hex(f)], p3: [hex(frame(BCAST, A, 1))] });
      const after = rx();
      const got = extra.map((q) => [after.get(`${q}x`)!.packets - before.get(`${q}x`)!.packets, after.get(`${q}x`)!.bytes - before.get(`${q}x`)!.bytes]);
      expect(got).toEqual(extra.map((_, i) => [1, f.length + (i % 2 ? 4 : 0)]));
      expect(stats('p1')).toMatchObject({ rx_packets: 1n, flooded: 1n });
    });

    // bpf_clone_redirect fails for a member that no longer exists (-EINVAL) and for one without carrier
    // (its qdisc is the kernel's noop while the link is down: NET_XMIT_CN); the other members still get theirs.
    it('counts each copy the kernel refuses (a member gone, one without carrier) under the ingress port, not as a dropped frame', () => {
      const gone = 0x7ffffff0; // an ifindex no interface has: a port the control process has not removed yet
      map(BRIDGE.maps.ports).update(u32(gone), Port.encode({ bridge: BR, pvid: 1, flags: PORT_FLAGS.LEARNING | PORT_FLAGS.ACCESS, slot: 0 }));
      map(BRIDGE.maps.vlans).update(VlanKey.encode({ ifindex: gone, vid: 1, pad: 0 }), Vlan.encode({ untagged: 1 }));
      map(BRIDGE.maps.flood).update(FloodKey.encode({ bridge: BR, vid: 1, pad: 0 }), floodList([ifx.p1, gone, ifx.p2, ifx.p3]));
      sh('ip', ['link', 'set', 'p2x', 'down']); // p2 loses its carrier (the test process is in the namespace)
      const inst = { maps: w.pins.dir } as InstancePaths;
      const events: RawEvent[] = [];
      const ev = openEvents(inst, (e) => events.push(e))!;
      setMonitor(inst, MON_FLAGS.DROPS);
      try {
        const f = frame(BCAST, A);
        expect(tcRun('p1', f).retval).toBe(TC.SHOT);
        expect(captured()).toEqual({ p3: [hex(frame(BCAST, A, 1))] });
        expect(Object.fromEntries(readDropsByIface(map('xn_drops')))).toEqual({ [ifx.p1]: { 'flood-copy-refused': 2 } });
        expect(stats('p1')).toMatchObject({ rx_packets: 1n, flooded: 1n, dropped: 0n });
        expect(stats('p2')).toMatchObject({ tx_packets: 0n });
        expect(stats('p3')).toMatchObject({ tx_packets: 1n });
        ev.poll(100);
        // one drop event for the frame's refused local copies (the counter says how many), with the frame
        expect(events.map((e) => [EVENT_TYPES[e.type], EVENT_HOOKS[e.hook], e.ifindex, DROP_REASONS[e.info], hex(e.data.subarray(0, e.cap_len))]))
          .toEqual([['drop', 'tc', ifx.p1, 'flood-copy-refused', hex(f)]]);
      } finally {
        setMonitor(inst, 0);
        ev.close();
        sh('ip', ['link', 'set', 'p2x', 'up']);
      }
    });

    it('pops the tag from trunk to access port', () => {
      expect(tcRun('p3', frame(BCAST, C, 10)).retval).toBe(TC.SHOT);
      expect(captured()).toEqual({ p4: [hex(frame(BCAST, C))] });
    });

    it('redirects known unicast to the learned port', () => {
      addStatic(B, 'p2');
      const r = tcRun('p1', frame(B, A));
      expect(r.retval).toBe(TC.REDIRECT);
      expect(r.data.equals(frame(B, A))).toBe(true);
      expect(stats('p2')).toMatchObject({ tx_packets: 1n });
      expect(stats('p3')?.tx_packets ?? 0n).toBe(0n);
    });

    it('refuses unicast to a port outside the frame\'s VLAN', () => {
      addStatic(B, 'p4', 1); // a stale static entry pointing at a VLAN-10-only port
      expect(tcRun('p1', frame(B, A)).retval).toBe(TC.SHOT);
      expect(drops()).toEqual({ 'vlan-egress-denied': 1 });
    });

    it('drops what XDP drops, with the same reasons', () => {
      addStatic(B, 'p1');
      expect(tcRun('p1', frame(B, A)).retval).toBe(TC.SHOT);
      expect(tcRun('p1', frame(BCAST, '01:00:00:00:00:01')).retval).toBe(TC.SHOT);
      expect(tcRun('p3', frame(BCAST, C, 20)).retval).toBe(TC.SHOT);
      expect(drops()).toEqual({ 'same-port': 1, 'invalid-source-mac': 1, 'vlan-ingress-denied': 1 });
    });

    it('passes frames for the bridge MAC', () => {
      expect(tcRun('p1', frame(BR_MAC, A)).retval).toBe(TC.OK);
    });

    // Found by the fuzz tier: such a flood was counted as flooded and reached no port.
    it('drops and counts a flood whose tag will not come off (a stacked tag cut short)', () => {
      const f = Buffer.concat([mac(BCAST), mac(C), fromHex('8100 000a 8100 00')]); // VLAN 10, then 3 bytes of a second tag
      expect(tcRun('p3', f).retval).toBe(TC.SHOT);
      expect(captured()).toEqual({});
      expect(drops()).toEqual({ 'vlan-tag-op-failed': 1 });
      expect(stats('p3')).toMatchObject({ rx_packets: 1n, flooded: 0n, dropped: 1n });
    });
  });

  /** ARP for Ethernet/IPv4 (RFC 826), field by field: the expected replies are written out, not derived from the request. */
});
