// The layout record: what each pinned map of an instance holds, pinned with
// the maps (maps/xn_layout), so that a new build is checked against the maps
// it would adopt before it is loaded. libbpf adopts a pin whose type, sizes
// and flags match; a field moved within the same size would be adopted
// silently and misread. Per pinned map: key and value size, and a hash of
// the key's and the value's layout from the object's BTF (member names,
// offsets and sizes all the way down).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { XdpnetError } from '../errors.js';
import { BpfMap, mapCreate, objPin, type BpfObject, type MapSpec } from '../sys/libbpf.js';
import { Btf } from './btf.js';
import type { InstancePaths } from './paths.js';

export const LAYOUT_MAP = 'xn_layout';
const NAME_BYTES = 32; // pin names (map names can be longer than the kernel's 15 characters)
const HASH_BYTES = 8;
const BPF_MAP_TYPE_HASH = 1;

export interface MapLayout {
  /** The pin's name in maps/. */
  map: string;
  keySize: number;
  valueSize: number;
  /** First 16 hex digits of sha256 of the key's / value's layout. */
  keyHash: string;
  valueHash: string;
}

const hash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 2 * HASH_BYTES);

/** The layout of every map the object pins (from its BTF; call after open and configuration). */
export function objectLayouts(obj: BpfObject): MapLayout[] {
  const btf = new Btf(obj.btf());
  return obj.mapSpecs().filter((m): m is MapSpec & { pinPath: string } => m.pinPath !== null).map((m) => ({
    map: basename(m.pinPath),
    keySize: m.keySize,
    valueSize: m.valueSize,
    // maps without BTF types (ring buffers) are their sizes alone
    keyHash: hash(m.keyType ? btf.layout(m.keyType) : `bytes${m.keySize}`),
    valueHash: hash(m.valueType ? btf.layout(m.valueType) : `bytes${m.valueSize}`),
  }));
}

export function encodeName(map: string): Buffer {
  const b = Buffer.alloc(NAME_BYTES);
  if (Buffer.byteLength(map) >= NAME_BYTES) throw new XdpnetError(`map name ${map} is too long for the layout record`);
  b.write(map);
  return b;
}

export function encodeLayout(l: MapLayout): Buffer {
  const b = Buffer.alloc(8 + 2 * HASH_BYTES);
  b.writeUInt32LE(l.keySize, 0);
  b.writeUInt32LE(l.valueSize, 4);
  Buffer.from(l.keyHash, 'hex').copy(b, 8);
  Buffer.from(l.valueHash, 'hex').copy(b, 8 + HASH_BYTES);
  return b;
}

export function decodeLayout(key: Buffer, v: Buffer): MapLayout {
  return {
    map: key.toString('utf8', 0, key.indexOf(0) < 0 ? key.length : key.indexOf(0)),
    keySize: v.readUInt32LE(0),
    valueSize: v.readUInt32LE(4),
    keyHash: v.toString('hex', 8, 8 + HASH_BYTES),
    valueHash: v.toString('hex', 8 + HASH_BYTES, 8 + 2 * HASH_BYTES),
  };
}

/** The instance's record by map name (empty when it has none). */
export function readLayouts(inst: InstancePaths): Map<string, MapLayout> {
  const out = new Map<string, MapLayout>();
  BpfMap.usePin(join(inst.maps, LAYOUT_MAP), (m) => {
    for (const [k, v] of m.entries()) {
      const l = decodeLayout(k, v);
      out.set(l.map, l);
    }
  });
  return out;
}

/**
 * What differs between a map as recorded (or, pinned before records existed,
 * as the kernel has it: sizes only) and as this build defines it; empty when
 * nothing does.
 */
export function layoutChanges(was: Pick<MapLayout, 'keySize' | 'valueSize'> & Partial<MapLayout>, now: MapLayout): string[] {
  const out: string[] = [];
  if (was.keySize !== now.keySize) out.push(`key size ${was.keySize} → ${now.keySize} bytes`);
  else if (was.keyHash !== undefined && was.keyHash !== now.keyHash) out.push(`key layout changed (same ${now.keySize} bytes: fields moved, renamed or retyped)`);
  if (was.valueSize !== now.valueSize) out.push(`value size ${was.valueSize} → ${now.valueSize} bytes`);
  else if (was.valueHash !== undefined && was.valueHash !== now.valueHash) out.push(`value layout changed (same ${now.valueSize} bytes: fields moved, renamed or retyped)`);
  return out;
}

/**
 * Refuses a build whose maps do not match what the instance has pinned, before
 * anything is loaded or written: names every map and what changed. There are
 * no migrations yet: a map whose layout changes needs one written here (copy
 * the old map's entries into a new one of the new layout, then swap the pins).
 */
export function checkLayouts(inst: InstancePaths, object: string, layouts: MapLayout[]): void {
  const record = readLayouts(inst);
  const problems: string[] = [];
  for (const now of layouts) {
    const pin = join(inst.maps, now.map);
    if (!existsSync(pin)) continue; // made by this load
    const was = record.get(now.map) ?? BpfMap.usePin(pin, (m) => ({ keySize: m.info.keySize, valueSize: m.info.valueSize }))!;
    const changes = layoutChanges(was, now);
    if (changes.length) problems.push(`${now.map}: ${changes.join(', ')}${record.has(now.map) ? '' : ' (pinned before layout records)'}`);
  }
  if (problems.length) {
    throw new XdpnetError(
      `the installed ${object}.bpf.o does not fit this instance's maps (${inst.maps}); nothing was changed:\n  ${problems.join('\n  ')}`,
      'no migration exists for these maps: reinstall the build that made them, or remove the instance\'s state ' +
      '(xdpnet detach --all --everything) and set it up again with this build (their entries are lost)',
    );
  }
}

/** Records the layout of every pinned map that has no record yet (at its first pin, or the first load that checked it). */
export function recordLayouts(inst: InstancePaths, layouts: MapLayout[]): void {
  const pin = join(inst.maps, LAYOUT_MAP);
  if (!existsSync(pin)) {
    const m = mapCreate(BPF_MAP_TYPE_HASH, LAYOUT_MAP, NAME_BYTES, 8 + 2 * HASH_BYTES, 1024);
    try {
      objPin(m.fd, pin);
    } finally {
      m.close();
    }
  }
  BpfMap.usePin(pin, (m) => {
    for (const l of layouts) {
      const k = encodeName(l.map);
      if (!m.lookup(k)) m.update(k, encodeLayout(l));
    }
  });
}
