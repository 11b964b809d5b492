// Struct codecs: each struct that crosses the kernel/user boundary is declared
// once in a bpf/include header and mirrored here with C's natural alignment.
// test/bpf/layout.test.ts checks every codec against the object's BTF.

type Scalar = 'u8' | 'u16' | 'u32' | 'u64' | 'be16' | 'be32';
type FieldType = Scalar | { bytes: number };
type Value<F> = F extends 'u64' ? bigint : F extends { bytes: number } ? Buffer : number;

const SIZE: Record<Scalar, number> = { u8: 1, u16: 2, u32: 4, u64: 8, be16: 2, be32: 4 };

export interface Codec<T> {
  /** The C struct name in BTF. */
  name: string;
  size: number;
  fields: Array<{ name: string; offset: number; size: number }>;
  decode(buf: Buffer, off?: number): T;
  encode(v: T, buf?: Buffer, off?: number): Buffer;
}

export function struct<S extends Record<string, FieldType>>(
  name: string,
  spec: S,
): Codec<{ [K in keyof S]: Value<S[K]> }> {
  type T = { [K in keyof S]: Value<S[K]> };
  let off = 0;
  let align = 1;
  const fields = Object.entries(spec).map(([fname, type]) => {
    const size = typeof type === 'string' ? SIZE[type] : type.bytes;
    const a = typeof type === 'string' ? size : 1;
    off = Math.ceil(off / a) * a;
    align = Math.max(align, a);
    const f = { name: fname, offset: off, size, type };
    off += size;
    return f;
  });
  const size = Math.ceil(off / align) * align;
  return {
    name,
    size,
    fields: fields.map(({ name, offset, size }) => ({ name, offset, size })),
    decode(buf, base = 0) {
      const v: Record<string, unknown> = {};
      for (const f of fields) {
        const o = base + f.offset;
        switch (f.type) {
          case 'u8': v[f.name] = buf.readUInt8(o); break;
          case 'u16': v[f.name] = buf.readUInt16LE(o); break;
          case 'u32': v[f.name] = buf.readUInt32LE(o); break;
          case 'u64': v[f.name] = buf.readBigUInt64LE(o); break;
          case 'be16': v[f.name] = buf.readUInt16BE(o); break;
          case 'be32': v[f.name] = buf.readUInt32BE(o); break;
          default: v[f.name] = Buffer.from(buf.subarray(o, o + f.size));
        }
      }
      return v as T;
    },
    encode(v, buf = Buffer.alloc(size), base = 0) {
      for (const f of fields) {
        const o = base + f.offset;
        const x = v[f.name as keyof T] as unknown;
        switch (f.type) {
          case 'u8': buf.writeUInt8(x as number, o); break;
          case 'u16': buf.writeUInt16LE(x as number, o); break;
          case 'u32': buf.writeUInt32LE(x as number, o); break;
          case 'u64': buf.writeBigUInt64LE(x as bigint, o); break;
          case 'be16': buf.writeUInt16BE(x as number, o); break;
          case 'be32': buf.writeUInt32BE(x as number, o); break;
          default: (x as Buffer).copy(buf, o, 0, f.size);
        }
      }
      return buf;
    },
  };
}

/** Sums a per-CPU value buffer (one 8-byte aligned slot per CPU) field by field. */
export function sumPerCpu<T extends Record<string, unknown>>(codec: Codec<T>, buf: Buffer): T {
  const slot = Math.ceil(codec.size / 8) * 8;
  const total = codec.decode(buf, 0) as Record<string, unknown>;
  for (let off = slot; off + codec.size <= buf.length; off += slot) {
    const v = codec.decode(buf, off) as Record<string, unknown>;
    for (const k of Object.keys(total)) {
      const a = total[k];
      if (typeof a === 'bigint') total[k] = a + (v[k] as bigint);
      else if (typeof a === 'number') total[k] = a + (v[k] as number);
    }
  }
  return total as T;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** A `char name[n]` field's text (up to the first NUL). */
export function cString(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.toString('utf8', 0, end < 0 ? buf.length : end);
}

/** IPv4 text <-> the number a be32 codec field holds. */
export function ipv4ToNum(ip: string): number {
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`malformed IPv4 address: ${ip}`);
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}
export const numToIpv4 = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
