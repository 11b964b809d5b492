// The libbpf binding itself: consts before load, verifier errors, map ops.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setConsts } from '../../src/objects/btf.js';
import { COUNTER } from '../../src/objects/counter.js';
import { VerifierError, XdpnetError } from '../../src/errors.js';
import { BpfObject, numPossibleCpus } from '../../src/sys/libbpf.js';
import { DropKey } from '../../src/objects/stats.js';
import { builtObject, fixtureObject, PinRoot, XDP } from '../helpers/bpf.js';

describe('libbpf binding', () => {
  let pins: PinRoot;
  beforeAll(() => (pins = new PinRoot('libbpf')));
  afterAll(() => pins.cleanup());

  it('sets const volatile globals before load', () => {
    const frame = Buffer.alloc(64);
    const unset = pins.open(fixtureObject('consts'));
    expect(unset.program('xn_const_xdp').testRun({ data: frame }).retval).toBe(XDP.ABORTED);
    const set = pins.open(fixtureObject('consts'), (o) => setConsts(o, { verdict: XDP.DROP, marker: 0x1122334455667788n }));
    expect(set.program('xn_const_xdp').testRun({ data: frame }).retval).toBe(XDP.DROP);
  });

  it('refuses to set a const that does not exist', () => {
    const o = BpfObject.open(fixtureObject('consts'), { pinRoot: pins.dir });
    try {
      expect(() => setConsts(o, { nope: 1 })).toThrow(/has no const volatile nope/);
    } finally {
      o.close();
    }
  });

  it('reports a verifier rejection with the program and the log', () => {
    let err: unknown;
    try {
      pins.open(fixtureObject('reject'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VerifierError);
    const v = err as VerifierError;
    expect(v.program).toBe('xn_count_xdp');
    expect(v.log).toMatch(/invalid access to packet/);
    expect(v.message).toMatch(/^load program xn_count_xdp: EACCES[\s\S]*verifier log \(tail\):[\s\S]*invalid access to packet/);
  });

  it('says which object file is missing', () => {
    expect(() => BpfObject.open('/nonexistent/x.bpf.o')).toThrow(XdpnetError);
    expect(() => BpfObject.open('/nonexistent/x.bpf.o')).toThrow(/^object file missing: \/nonexistent\/x\.bpf\.o$/);
  });

  it('batch-updates, iterates, batch-looks-up and batch-deletes a per-CPU map', () => {
    const m = pins.open(builtObject(COUNTER.object)).map(COUNTER.maps.drops);
    expect(m.perCpu).toBe(true);
    expect(m.valueBufSize).toBe(8 * numPossibleCpus());
    const n = 9000; // more than max_entries (8192)
    const keys = Buffer.concat(Array.from({ length: n }, (_, i) => DropKey.encode({ ifindex: 100 + i, reason: 1 })));
    const values = Buffer.alloc(m.valueBufSize * n);
    for (let i = 0; i < n; i++) values.writeBigUInt64LE(BigInt(i), i * m.valueBufSize); // CPU 0 slot: packets = i
    m.updateBatch(keys, values, 500);
    const entries = m.entries();
    expect(entries.length).toBe(500);
    for (const [k, v] of entries) expect(v.readBigUInt64LE(0)).toBe(BigInt(k.readUInt32LE(0) - 100));
    expect([...m.keys()].length).toBe(500);
    m.deleteBatch(keys, 500);
    expect(m.entries()).toEqual([]);
    // The kernel applies a batch entry by entry: the error says how far it got.
    const err = (() => {
      try {
        m.updateBatch(keys, values, n);
      } catch (e) {
        return e as XdpnetError;
      }
      return undefined;
    })();
    expect(err?.message).toBe('batch update map xn_drops: E2BIG (Argument list too long)');
    expect(err?.hint).toBe('8192 of 9000 entries were written');
    expect(m.entries().length).toBe(8192);
    expect(m.delete(DropKey.encode({ ifindex: 100, reason: 1 }))).toBe(true);
    expect(m.delete(DropKey.encode({ ifindex: 100, reason: 1 }))).toBe(false);
  });

  it('refuses keys and values of the wrong size before the kernel reads them', () => {
    const m = pins.open(builtObject(COUNTER.object)).map(COUNTER.maps.drops);
    const key = DropKey.encode({ ifindex: 7, reason: 1 });
    const value = Buffer.alloc(m.valueBufSize);
    const before = m.entries();
    expect(() => m.update(key.subarray(0, key.length - 1), value))
      .toThrow(`update map xn_drops: key buffer is ${key.length - 1} bytes, the map needs ${key.length}`);
    expect(() => m.update(key, Buffer.alloc(m.valueBufSize - 1))).toThrow(`value buffer is ${m.valueBufSize - 1} bytes, the map needs ${m.valueBufSize}`);
    expect(() => m.update(Buffer.concat([key, Buffer.alloc(1)]), value)).toThrow(/key buffer is \d+ bytes/);
    expect(() => m.lookup(Buffer.alloc(2))).toThrow(/^lookup in map xn_drops: key buffer is 2 bytes/);
    expect(() => m.delete(Buffer.alloc(2))).toThrow(/^delete from map xn_drops: key buffer is 2 bytes/);
    expect(() => m.updateBatch(Buffer.concat([key, key]), Buffer.alloc(m.valueBufSize * 3), 3))
      .toThrow(`batch update map xn_drops: key buffer is ${2 * key.length} bytes, the map needs 3 × ${key.length}`);
    expect(() => m.deleteBatch(key, 2)).toThrow(/^batch delete from map xn_drops: key buffer/);
    expect(m.entries()).toEqual(before); // nothing reached the map
  });
});
