import { describe, expect, it } from 'vitest';
import {
  Bridge, decodeFloodList, FDB_FLAGS, FdbEntry, FdbKey, Flood, FloodKey, floodList, Port, PORT_FLAGS, Vlan, VlanKey,
} from '../../src/objects/bridge.js';
import { cString, struct, sumPerCpu, type Codec } from '../../src/objects/codec.js';

describe('struct codec', () => {
  const S = struct('s', { a: 'u8', b: 'u32', c: 'be16', d: 'u64', mac: { bytes: 6 } });

  it('lays fields out with C natural alignment', () => {
    expect(S.fields).toEqual([
      { name: 'a', offset: 0, size: 1 },
      { name: 'b', offset: 4, size: 4 },
      { name: 'c', offset: 8, size: 2 },
      { name: 'd', offset: 16, size: 8 },
      { name: 'mac', offset: 24, size: 6 },
    ]);
    expect(S.size).toBe(32); // padded to the u64 alignment
  });

  it('encodes little-endian host fields and big-endian network fields byte-exact', () => {
    const buf = S.encode({ a: 0xab, b: 0x01020304, c: 0x1f90, d: 5n, mac: Buffer.from('020000000001', 'hex') });
    expect(buf.toString('hex')).toBe(
      'ab000000' + '04030201' + '1f90' + '0000' + '00000000' + '0500000000000000' + '020000000001' + '0000',
    );
    expect(S.decode(buf)).toEqual({ a: 0xab, b: 0x01020304, c: 0x1f90, d: 5n, mac: Buffer.from('020000000001', 'hex') });
  });

  it('sums per-CPU slots field by field', () => {
    const C = struct('c', { p: 'u64', b: 'u64' });
    const buf = Buffer.concat([C.encode({ p: 1n, b: 100n }), C.encode({ p: 2n, b: 200n }), C.encode({ p: 0n, b: 7n })]);
    expect(sumPerCpu(C, buf)).toEqual({ p: 3n, b: 307n });
  });
});

describe('bridge codecs (bpf/include/bridge.h)', () => {
  it('round-trip every struct', () => {
    const mac = Buffer.from('0242ac110002', 'hex');
    const cases: Array<[Codec<never>, Record<string, unknown>]> = [
      [Bridge as never, { mac, flags: 0, ageing_sec: 300, max_learned: 10, learned: 3, name: Buffer.from('br0'.padEnd(16, '\0')) }],
      [Port as never, { bridge: 1, pvid: 10, flags: PORT_FLAGS.LEARNING | PORT_FLAGS.HOST, slot: 7 }],
      [VlanKey as never, { ifindex: 7, vid: 4094, pad: 0 }],
      [Vlan as never, { untagged: 1 }],
      [FdbKey as never, { bridge: 2, vid: 20, mac }],
      [FdbEntry as never, { ifindex: 9, remote: 0x0a000001, updated_ns: 123456789012345n, flags: FDB_FLAGS.STATIC, ageing_sec: 0 }],
      [FloodKey as never, { bridge: 2, vid: 20, pad: 0 }],
    ];
    for (const [c, v] of cases) expect(c.decode(c.encode(v as never))).toEqual(v);
  });

  it('lays out keys as the kernel hashes them: no stray bytes', () => {
    expect(FdbKey.encode({ bridge: 1, vid: 10, mac: Buffer.from('0242ac110002', 'hex') }).toString('hex')).toBe('01000000' + '0a00' + '0242ac110002');
    expect([Bridge.size, Port.size, VlanKey.size, FdbKey.size, FdbEntry.size, FloodKey.size, Flood.size]).toEqual([36, 12, 8, 12, 24, 8, 4 + 4 * 64]);
  });

  it('encodes flood lists and reads them back', () => {
    expect(decodeFloodList(floodList([3, 5, 9]))).toEqual([3, 5, 9]);
    expect(decodeFloodList(floodList([]))).toEqual([]);
  });

  it('reads C strings up to the first NUL', () => {
    expect(cString(Buffer.from('br0\0\0\0junk'))).toBe('br0');
    expect(cString(Buffer.from('exactly16chars!!'))).toBe('exactly16chars!!');
  });
});
