// The bridge's per-CPU forwarding cache: what a cached decision skips, how long it lives, and what
// ends it (FDB and port changes, ageing, the generation).
// The bench (namespace, objects, captures, reset before each test): ./bridge-world.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BR_GEN_MAP, BRIDGE, invalidateCache, FDB_FLAGS, FdbEntry, FdbKey } from '../../src/objects/bridge.js';
import { u32 } from '../../src/objects/codec.js';
import { BR_CACHE } from '../../src/objects/memory.js';
import { numPossibleCpus } from '../../src/sys/libbpf.js';
import { TC, XDP } from '../helpers/bpf.js';
import { hex, mac } from '../helpers/packet.js';
import { sh, sleep } from '../helpers/sys.js';
import { A, B, BCAST, BR, bridgeWorld, frame, PortName } from './bridge-world.js';

describe('bridge programs: forwarding cache', () => {
  const w = bridgeWorld();
  const { caches, drops, fdb, ifx, map, stats, tcRun, xdpSend, xdpVerdict } = w;

  describe('forwarding cache', () => {
    // The cache is per CPU: a test that migrated between frames would miss it.
    const cpus = sh('taskset', ['-pc', String(process.pid)]).trim().split(': ')[1];
    beforeAll(() => void sh('taskset', ['-apc', '0', String(process.pid)]));
    afterAll(() => void sh('taskset', ['-apc', cpus, String(process.pid)]));
    const setFdb = (m: string, p: PortName, o: { learnedAt?: bigint } = {}) => map(BRIDGE.maps.fdb).update(
      FdbKey.encode({ bridge: BR, vid: 1, mac: mac(m) }),
      FdbEntry.encode({ ifindex: ifx[p], remote: 0, updated_ns: o.learnedAt ?? 0n, flags: o.learnedAt ? 0 : FDB_FLAGS.STATIC, ageing_sec: 1 }));

    it('serves a repeated frame from the cache until the control process invalidates it', () => {
      setFdb(B, 'p2');
      expect(xdpSend('p1', frame(B, A))).toEqual({ p2: [hex(frame(B, A))] });
      setFdb(B, 'p3'); // written behind the cache's back
      expect(xdpSend('p1', frame(B, A))).toEqual({ p2: [hex(frame(B, A))] });
      invalidateCache(map(BR_GEN_MAP));
      expect(xdpSend('p1', frame(B, A))).toEqual({ p3: [hex(frame(B, A, 1))] });
      expect(stats('p1')).toMatchObject({ rx_packets: 3n, dropped: 0n });
      expect(stats('p2')).toMatchObject({ tx_packets: 2n, tx_bytes: 2n * BigInt(frame(B, A).length) });
      expect(stats('p3')).toMatchObject({ tx_packets: 1n, tx_bytes: BigInt(frame(B, A).length + 4) });
      expect(caches().bridge).toEqual({ hits: 1, misses: 2 }); // the first frame, and the one after invalidation
    });

    it('fills only the running CPU\'s part of the size the loader chose', () => {
      expect(w.cachePart).toBe(BR_CACHE.minPart);
      expect(map(BR_CACHE.map).info.maxEntries).toBe(w.cachePart * numPossibleCpus());
      const filled = () => [...map(BR_CACHE.map).keys()].map((k) => k.readUInt32LE(0))
        .filter((i) => map(BR_CACHE.map).lookup(u32(i))!.some((b) => b !== 0));
      const cpu = Number(sh('nproc', []).trim()) - 1; // the last online CPU: the one furthest into the array
      for (const i of filled()) map(BR_CACHE.map).update(u32(i), Buffer.alloc(BR_CACHE.entryBytes)); // earlier tests' decisions
      setFdb(B, 'p2');
      sh('taskset', ['-apc', String(cpu), String(process.pid)]);
      try {
        expect(xdpSend('p1', frame(B, A))).toEqual({ p2: [hex(frame(B, A))] });
        setFdb(B, 'p3'); // behind the cache's back: a hit still goes to p2
        expect(xdpSend('p1', frame(B, A))).toEqual({ p2: [hex(frame(B, A))] });
      } finally {
        sh('taskset', ['-apc', '0', String(process.pid)]);
      }
      const added = filled();
      expect(added.length).toBe(1);
      expect(Math.floor(added[0] / w.cachePart)).toBe(cpu);
    });

    it('keys on the ingress port, the tag and both MACs', () => {
      setFdb(B, 'p2');
      expect(xdpSend('p1', frame(B, A))).toEqual({ p2: [hex(frame(B, A))] });
      // Same MACs, another port and tag: its own decision (VLAN 1 arrives tagged on the trunk, leaves untagged).
      expect(xdpSend('p3', frame(B, A, 1))).toEqual({ p2: [hex(frame(B, A))] });
      // VLAN 10 has no entry for B: flooded, not served from VLAN 1's decision.
      expect(xdpSend('p3', frame(B, A, 10))).toEqual({ p4: [hex(frame(B, A))] });
    });

    it('keys on the whole source MAC: a new source behind a cached pair is learned, a multicast one dropped', () => {
      setFdb(B, 'p2');
      expect(xdpSend('p1', frame(B, A))).toEqual({ p2: [hex(frame(B, A))] }); // now cached
      const A2 = '02:00:00:00:00:0d'; // A but for its last byte (the key's second word)
      expect(xdpSend('p1', frame(B, A2))).toEqual({ p2: [hex(frame(B, A2))] });
      expect(fdb(A2)).toMatchObject({ ifindex: ifx.p1, flags: 0 });
      expect(xdpVerdict('p1', frame(B, '03:00:00:00:00:0a'))).toBe(XDP.DROP); // A but for the group bit (the first word)
      expect(drops()).toEqual({ 'invalid-source-mac': 1 });
    });

    it('drops its decisions when learning moves a MAC, without the control process', () => {
      xdpSend('p2', frame(BCAST, B)); // B learned on p2
      expect(xdpSend('p1', frame(B, A))).toEqual({ p2: [hex(frame(B, A))] });
      xdpSend('p3', frame(BCAST, B, 1)); // B moves to p3
      expect(xdpSend('p1', frame(B, A))).toEqual({ p3: [hex(frame(B, A, 1))] });
    });

    it('ends a decision when its FDB entry ages out', () => {
      const now = process.hrtime.bigint(); // CLOCK_MONOTONIC, as BPF's coarse clock
      setFdb(B, 'p2', { learnedAt: now - 600_000_000n }); // ageing 1 s: 0.4 s left
      expect(xdpSend('p1', frame(B, A))).toEqual({ p2: [hex(frame(B, A))] });
      sleep(600);
      expect(xdpSend('p1', frame(B, A))).toEqual({ p2: [hex(frame(B, A))], p3: [hex(frame(B, A, 1))] }); // flooded
    });

    it('is shared by the tc program, and invalidated the same way', () => {
      setFdb(B, 'p2');
      expect(tcRun('p1', frame(B, A)).retval).toBe(TC.REDIRECT);
      setFdb(B, 'p4'); // VLAN 10 only: the slow path would refuse it
      expect(tcRun('p1', frame(B, A)).retval).toBe(TC.REDIRECT);
      expect(stats('p2')).toMatchObject({ tx_packets: 2n });
      invalidateCache(map(BR_GEN_MAP));
      expect(tcRun('p1', frame(B, A)).retval).toBe(TC.SHOT);
      expect(drops()).toEqual({ 'vlan-egress-denied': 1 });
      expect(caches()).toEqual({ bridge: { hits: 1, misses: 2 }, 'vxlan-nexthop': { hits: 0, misses: 0 }, nat: { hits: 0, misses: 0 } });
    });

    it('counts lookups, not frames that cannot be cached', () => {
      setFdb(B, 'p2');
      for (let i = 0; i < 3; i++) expect(xdpSend('p1', frame(B, A))).toEqual({ p2: [hex(frame(B, A))] });
      expect(xdpVerdict('p3', frame(B, A, 1).subarray(0, 16))).toBe(XDP.DROP); // cut inside its tag: no key, no lookup
      expect(caches().bridge).toEqual({ hits: 2, misses: 1 });
    });
  });

});
