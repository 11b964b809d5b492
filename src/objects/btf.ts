// A small reader for raw BTF (from BpfObject.btf()): enough to resolve the
// size and member offsets of structs and the offsets of global variables, so
// codecs and rodata writes are checked against what clang actually laid out.
import type { BpfObject } from '../sys/libbpf.js';

const KIND = { INT: 1, PTR: 2, ARRAY: 3, STRUCT: 4, UNION: 5, ENUM: 6, FWD: 7, TYPEDEF: 8, VOLATILE: 9,
  CONST: 10, RESTRICT: 11, FUNC: 12, FUNC_PROTO: 13, VAR: 14, DATASEC: 15, FLOAT: 16, DECL_TAG: 17,
  TYPE_TAG: 18, ENUM64: 19 } as const;

interface BtfType {
  kind: number;
  name: string;
  vlen: number;
  sizeOrType: number;
  members: Array<{ name: string; type: number; offset: number }>; // struct/union (bit offsets), datasec (byte offsets), enum (values)
  array?: { elem: number; nelems: number };
}

export interface StructLayout {
  size: number;
  members: Array<{ name: string; offset: number; size: number }>;
}

export class Btf {
  private types: BtfType[] = [{ kind: 0, name: '', vlen: 0, sizeOrType: 0, members: [] }]; // id 0 = void

  constructor(raw: Buffer) {
    if (raw.readUInt16LE(0) !== 0xeb9f) throw new Error('not BTF (bad magic)');
    const hdrLen = raw.readUInt32LE(4);
    const typeOff = hdrLen + raw.readUInt32LE(8);
    const typeEnd = typeOff + raw.readUInt32LE(12);
    const strOff = hdrLen + raw.readUInt32LE(16);
    const str = (off: number) => raw.toString('utf8', strOff + off, raw.indexOf(0, strOff + off));
    for (let p = typeOff; p < typeEnd; ) {
      const info = raw.readUInt32LE(p + 4);
      const t: BtfType = { kind: (info >>> 24) & 0x1f, name: str(raw.readUInt32LE(p)), vlen: info & 0xffff,
        sizeOrType: raw.readUInt32LE(p + 8), members: [] };
      p += 12;
      switch (t.kind) {
        case KIND.INT: case KIND.VAR: case KIND.DECL_TAG: p += 4; break;
        case KIND.ARRAY:
          t.array = { elem: raw.readUInt32LE(p), nelems: raw.readUInt32LE(p + 8) };
          p += 12;
          break;
        case KIND.STRUCT: case KIND.UNION: case KIND.DATASEC:
          for (let i = 0; i < t.vlen; i++, p += 12) {
            const name = t.kind === KIND.DATASEC ? '' : str(raw.readUInt32LE(p));
            const type = raw.readUInt32LE(p + (t.kind === KIND.DATASEC ? 0 : 4));
            t.members.push({ name, type, offset: raw.readUInt32LE(p + (t.kind === KIND.DATASEC ? 4 : 8)) });
          }
          break;
        case KIND.ENUM:
          for (let i = 0; i < t.vlen; i++, p += 8) {
            t.members.push({ name: str(raw.readUInt32LE(p)), type: 0, offset: raw.readInt32LE(p + 4) });
          }
          break;
        case KIND.ENUM64: p += 12 * t.vlen; break;
        case KIND.FUNC_PROTO: p += 8 * t.vlen; break;
      }
      this.types.push(t);
    }
  }

  private find(kind: number, name: string): BtfType | undefined {
    return this.types.find((t) => t.kind === kind && t.name === name);
  }

  /** Byte size of a type, through typedefs and qualifiers. */
  sizeOf(id: number): number {
    const t = this.types[id];
    switch (t.kind) {
      case KIND.INT: case KIND.STRUCT: case KIND.UNION: case KIND.ENUM: case KIND.ENUM64: case KIND.FLOAT:
      case KIND.DATASEC:
        return t.sizeOrType;
      case KIND.PTR: return 8;
      case KIND.ARRAY: return this.sizeOf(t.array!.elem) * t.array!.nelems;
      case KIND.TYPEDEF: case KIND.VOLATILE: case KIND.CONST: case KIND.RESTRICT: case KIND.TYPE_TAG: case KIND.VAR:
        return this.sizeOf(t.sizeOrType);
      default: throw new Error(`BTF type ${id} (kind ${t.kind}) has no size`);
    }
  }

  struct(name: string): StructLayout | undefined {
    const t = this.find(KIND.STRUCT, name);
    if (!t) return undefined;
    return {
      size: t.sizeOrType,
      members: t.members.map((m) => ({ name: m.name, offset: m.offset / 8, size: this.sizeOf(m.type) })),
    };
  }

  /** Offset and size of a global variable within its section (e.g. '.rodata'). */
  variable(section: string, name: string): { offset: number; size: number } | undefined {
    const sec = this.find(KIND.DATASEC, section);
    for (const m of sec?.members ?? []) {
      if (this.types[m.type].name === name) return { offset: m.offset, size: this.sizeOf(m.type) };
    }
    return undefined;
  }

  /**
   * What a type looks like in memory, as a canonical string: sizes, member
   * names and offsets all the way down, through typedefs and qualifiers (so a
   * renamed typedef is the same layout, a moved or resized field is not).
   */
  layout(id: number): string {
    const t = this.types[id];
    const members = (open: string) => `${open}${t.sizeOrType}{${t.members.map((m) => `${m.name}@${m.offset}:${this.layout(m.type)}`).join(',')}}`;
    switch (t.kind) {
      case 0: return 'void';
      case KIND.INT: return `int${t.sizeOrType}`;
      case KIND.FLOAT: return `float${t.sizeOrType}`;
      case KIND.ENUM: case KIND.ENUM64: return `enum${t.sizeOrType}`;
      case KIND.PTR: return 'ptr';
      case KIND.ARRAY: return `${this.layout(t.array!.elem)}[${t.array!.nelems}]`;
      case KIND.STRUCT: return members('struct');
      case KIND.UNION: return members('union');
      case KIND.DATASEC: return `sec${t.sizeOrType}{${t.members.map((m) => `${this.types[m.type].name}@${m.offset}:${this.layout(m.type)}`).join(',')}}`;
      case KIND.TYPEDEF: case KIND.VOLATILE: case KIND.CONST: case KIND.RESTRICT: case KIND.TYPE_TAG: case KIND.VAR:
        return this.layout(t.sizeOrType);
      default: return `kind${t.kind}`;
    }
  }

  /** Name → value of a C enum. */
  enumValues(name: string): Map<string, number> | undefined {
    const t = this.find(KIND.ENUM, name);
    return t && new Map(t.members.map((m) => [m.name, m.offset]));
  }
}

/** Sets `const volatile` globals of an opened (not yet loaded) object by name. */
export function setConsts(obj: BpfObject, values: Record<string, number | bigint | Buffer>): void {
  const btf = new Btf(obj.btf());
  for (const [name, v] of Object.entries(values)) {
    const at = btf.variable('.rodata', name);
    if (!at) throw new Error(`${obj.path} has no const volatile ${name}`);
    const b = Buffer.alloc(at.size);
    if (Buffer.isBuffer(v)) {
      if (v.length !== at.size) throw new Error(`${name} is ${at.size} bytes, got ${v.length}`);
      v.copy(b);
    } else if (at.size === 8) b.writeBigUInt64LE(BigInt(v));
    else b.writeUIntLE(Number(v), 0, at.size);
    obj.writeRodata(at.offset, b);
  }
}
