import { describe, expect, it } from 'vitest';
import { struct, sumPerCpu } from '../../src/objects/codec.js';

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
