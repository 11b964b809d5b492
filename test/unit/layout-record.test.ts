// The map layout record (objects/layout.ts): its encoding, and what it says
// changed between a map as recorded and as a new build defines it.
import { describe, expect, it } from 'vitest';
import { decodeLayout, encodeLayout, encodeName, layoutChanges, type MapLayout } from '../../src/objects/layout.js';

const fdb: MapLayout = { map: 'xn_fdb', keySize: 12, valueSize: 24, keyHash: '0123456789abcdef', valueHash: 'fedcba9876543210' };

describe('layout record', () => {
  it('encodes and decodes a map\'s entry exactly', () => {
    const k = encodeName(fdb.map);
    const v = encodeLayout(fdb);
    expect(k).toHaveLength(32);
    expect(v).toHaveLength(24);
    expect(decodeLayout(k, v)).toEqual(fdb);
    expect(v.subarray(0, 8).toString('hex')).toBe('0c00000018000000'); // key size 12, value size 24, little-endian
  });

  it('refuses a map name that does not fit its key', () => {
    expect(() => encodeName('x'.repeat(32))).toThrow(/too long for the layout record/);
    expect(decodeLayout(encodeName('x'.repeat(31)), encodeLayout(fdb)).map).toBe('x'.repeat(31));
  });

  it('says nothing changed when nothing did', () => {
    expect(layoutChanges(fdb, { ...fdb })).toEqual([]);
  });

  it('names a size change of key or value with both sizes', () => {
    expect(layoutChanges(fdb, { ...fdb, valueSize: 32, valueHash: '00'.repeat(8) })).toEqual(['value size 24 → 32 bytes']);
    expect(layoutChanges(fdb, { ...fdb, keySize: 16, keyHash: '00'.repeat(8) })).toEqual(['key size 12 → 16 bytes']);
  });

  it('names a change within the same size (fields moved or renamed), key and value apart', () => {
    expect(layoutChanges(fdb, { ...fdb, valueHash: '00'.repeat(8) })).toEqual(['value layout changed (same 24 bytes: fields moved, renamed or retyped)']);
    expect(layoutChanges(fdb, { ...fdb, keyHash: '00'.repeat(8), valueHash: '11'.repeat(8) })).toHaveLength(2);
  });

  it('for a map pinned before records existed, compares the sizes the kernel has', () => {
    expect(layoutChanges({ keySize: 12, valueSize: 24 }, { ...fdb, valueHash: '00'.repeat(8) })).toEqual([]);
    expect(layoutChanges({ keySize: 12, valueSize: 20 }, fdb)).toEqual(['value size 20 → 24 bytes']);
  });
});
