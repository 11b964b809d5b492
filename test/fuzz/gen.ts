// Seeded frame generation for the fuzz tier: a PRNG, well-formed seed frames
// and the mutations applied to them. Everything is a function of the seed, so
// a failure reproduces from the seed and frame number the test prints.
import { ETH_P, IPPROTO } from '../helpers/packet.js';

/** mulberry32: small, fast, and good enough to pick mutations. */
export class Rng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }
  /** Where the sequence is: setting it back repeats the draws from there (a batch's replay). */
  get state(): number {
    return this.s;
  }
  set state(s: number) {
    this.s = s;
  }
  u32(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return this.u32() % n;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  chance(p: number): boolean {
    return this.u32() < p * 2 ** 32;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n); // every byte written
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** The seed of a run: XDPNET_FUZZ_SEED, else a fresh one (printed, so a failure reproduces). */
export function runSeed(): number {
  const env = process.env.XDPNET_FUZZ_SEED;
  return env ? Number(env) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0;
}

/** Frames a program gets: XDPNET_FUZZ_FRAMES (`make fuzz`), else the `make test` box. */
export const FRAMES = Number(process.env.XDPNET_FUZZ_FRAMES ?? 100_000);

export interface Addrs {
  macs: readonly string[];
  ips: readonly string[];
  srcs?: readonly string[]; // sources, if not any of ips
  ports: readonly number[];
}

/** An IPv4 packet of a random kind between addresses from `a`. */
export function l3(r: Rng, a: Addrs): Buffer {
  const src = ipBytes(r.pick(a.srcs ?? a.ips));
  const dst = ipBytes(r.pick(a.ips));
  const sport = r.pick(a.ports);
  const dport = r.pick(a.ports);
  const data = r.bytes(r.int(24));
  const opts = r.chance(0.1); // NOPs + EOL: legal options
  const frag = r.chance(0.1) ? { mf: r.chance(0.5), off: r.int(4) } : { mf: false, off: 0 };
  const ip = (proto: number, l4: Buffer, csumAt = -1, f = frag) => ipv4(src, dst, proto, opts, f.mf, f.off, l4, csumAt);
  switch (r.int(5)) {
    case 0: return ip(IPPROTO.UDP, udpHeader(sport, dport, data), 6);
    case 1: {
      const flags = TCP_FLAGS[r.int(TCP_FLAGS.length)];
      const seq = r.u32();
      return ip(IPPROTO.TCP, tcpHeader(sport, dport, flags, seq, r.u32(), data), 16);
    }
    case 2: {
      const type = r.pick([0, 8]);
      const id = r.pick(a.ports);
      return ip(IPPROTO.ICMP, icmp(type, 0, (id << 16) | r.int(65536), data));
    }
    case 3: { // an ICMP error quoting a packet of any kind, possibly cut or garbage
      const quoted = r.chance(0.8) ? l3(r, a) : r.bytes(r.int(40));
      const type = r.pick([3, 11, 12]);
      const code = r.int(5);
      const ihl = quoted.length ? (quoted[0] & 0x0f) * 4 : 0;
      return ip(IPPROTO.ICMP, icmp(type, code, 0, quoted.subarray(0, ihl + r.int(12))), -1, { mf: false, off: 0 });
    }
    default: return ip(r.pick([IPPROTO.UDP, IPPROTO.TCP, IPPROTO.ICMP, 47, 0]), data);
  }
}

/** A VXLAN packet (UDP to 4789) carrying `inner`; sometimes VXLAN inside VXLAN. */
export function vxlanPacket(r: Rng, a: Addrs, vnis: readonly number[], inner: Buffer, outer: { src: string; dst: string }): Buffer {
  let body = inner;
  if (r.chance(0.1)) {
    const dst = r.pick(a.macs);
    const src = r.pick(a.macs);
    const l3p = vxlanPacket(r, a, vnis, inner, outer);
    body = Buffer.allocUnsafe(14 + l3p.length);
    macBytes(dst).copy(body, 0);
    macBytes(src).copy(body, 6);
    body.writeUInt16BE(ETH_P.IPV4, 12);
    l3p.copy(body, 14);
  }
  const sport = 49152 + r.int(1000);
  const csum = !r.chance(0.5);
  const vni = r.pick(vnis);
  const vx = Buffer.allocUnsafe(8 + 8 + body.length); // UDP header, VXLAN header, body
  vx.writeUInt32BE(((r.chance(0.95) ? 0x08 : r.int(256)) << 24) >>> 0, 8);
  vx.writeUInt32BE((vni << 8) >>> 0, 12);
  body.copy(vx, 16);
  writeUdp(vx, sport, 4789);
  return ipv4(ipBytes(outer.src), ipBytes(outer.dst), IPPROTO.UDP, false, false, 0, vx, csum ? 6 : -1);
}

// The fuzz loop builds millions of frames: these write each header once, in
// place, where test/helpers/packet.ts's builders (which test/unit/fuzz-gen
// checks them against) copy every layer into the next.
const TCP_FLAGS = [0x02, 0x12, 0x10, 0x18, 0x11, 0x04]; // S, SA, A, PA, FA, R

/** Ones'-complement sum of b[from..to) as big-endian words, added to s (not folded). */
function sum(b: Buffer, from: number, to: number, s = 0): number {
  for (let i = from; i + 1 < to; i += 2) s += (b[i] << 8) | b[i + 1];
  if ((to - from) & 1) s += b[to - 1] << 8;
  return s;
}
function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return ~s & 0xffff;
}

/** IPv4 header (20 bytes, or 24 with NOP NOP NOP EOL) + l4; DF unless a fragment; an L4 checksum at csumAt of l4 when >= 0. */
function ipv4(src: Buffer, dst: Buffer, proto: number, opts: boolean, mf: boolean, off: number, l4: Buffer, csumAt: number): Buffer {
  const hl = opts ? 24 : 20;
  const b = Buffer.allocUnsafe(hl + l4.length);
  b[0] = 0x40 | (hl / 4);
  b[1] = 0;
  b.writeUInt16BE(hl + l4.length, 2);
  b.writeUInt16BE(0, 4);
  b.writeUInt16BE((mf || off ? 0 : 0x4000) | (mf ? 0x2000 : 0) | off, 6);
  b[8] = 64;
  b[9] = proto;
  b.writeUInt16BE(0, 10);
  src.copy(b, 12);
  dst.copy(b, 16);
  if (opts) b.writeUInt32BE(0x01010100, 20);
  b.writeUInt16BE(fold(sum(b, 0, hl)), 10);
  l4.copy(b, hl);
  if (csumAt >= 0) {
    const pseudo = sum(src, 0, 4) + sum(dst, 0, 4) + proto + l4.length;
    const c = fold(sum(b, hl, b.length, pseudo));
    b.writeUInt16BE(c === 0 && proto === IPPROTO.UDP ? 0xffff : c, hl + csumAt);
  }
  return b;
}

/** A UDP header (checksum 0: ipv4() writes it) in front of data. */
function udpHeader(sport: number, dport: number, data: Buffer): Buffer {
  const b = Buffer.allocUnsafe(8 + data.length);
  data.copy(b, 8);
  return writeUdp(b, sport, dport);
}
/** Writes a UDP header over the first 8 bytes of b, its length b's. */
function writeUdp(b: Buffer, sport: number, dport: number): Buffer {
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt16BE(b.length, 4);
  b.writeUInt16BE(0, 6);
  return b;
}

function tcpHeader(sport: number, dport: number, flags: number, seq: number, ack: number, data: Buffer): Buffer {
  const b = Buffer.allocUnsafe(20 + data.length);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt32BE(seq, 4);
  b.writeUInt32BE(ack, 8);
  b[12] = 5 << 4;
  b[13] = flags;
  b.writeUInt32BE(0xffff0000, 14); // window 65535, checksum 0
  b.writeUInt16BE(0, 18);
  data.copy(b, 20);
  return b;
}

/** An ICMP message: type, code, checksum, the 4-byte rest (echo: id and sequence), body. */
function icmp(type: number, code: number, rest: number, body: Buffer): Buffer {
  const b = Buffer.allocUnsafe(8 + body.length);
  b[0] = type;
  b[1] = code;
  b.writeUInt16BE(0, 2);
  b.writeUInt32BE(rest >>> 0, 4);
  body.copy(b, 8);
  b.writeUInt16BE(fold(sum(b, 0, b.length)), 2);
  return b;
}

const ips = new Map<string, Buffer>();
function ipBytes(s: string): Buffer {
  let b = ips.get(s);
  if (!b) ips.set(s, (b = Buffer.from(s.split('.').map(Number))));
  return b;
}

/** An Ethernet frame: untagged, tagged, or with a stack of tags (QinQ, 802.1ad outer). */
export function frame(r: Rng, a: Addrs, vids: readonly number[], payload: Buffer, type: number = ETH_P.IPV4, tagged = 0.5): Buffer {
  const dst = r.pick(a.macs);
  const src = r.pick(a.macs);
  const tags = !r.chance(tagged) ? 0 : r.chance(0.8) ? 1 : 2 + r.int(2);
  const b = Buffer.allocUnsafe(14 + 4 * tags + payload.length);
  macBytes(dst).copy(b, 0);
  macBytes(src).copy(b, 6);
  // tags are drawn innermost first (the last drawn is outermost), as they are stacked
  for (let i = 0; i < tags; i++) {
    const at = 12 + 4 * (tags - 1 - i);
    const tpid = i === tags - 1 && tags > 1 && r.chance(0.5) ? 0x88a8 : ETH_P.VLAN;
    b.writeUInt16BE(tpid, at);
    b.writeUInt16BE((r.int(8) << 13) | r.pick(vids), at + 2);
  }
  b.writeUInt16BE(type, 12 + 4 * tags);
  payload.copy(b, 14 + 4 * tags);
  return b;
}

const macs = new Map<string, Buffer>();
function macBytes(m: string): Buffer {
  let b = macs.get(m);
  if (!b) macs.set(m, (b = Buffer.from(m.replace(/:/g, ''), 'hex')));
  return b;
}

/** Where the IPv4 header of an Ethernet frame starts (after tags), or -1. */
export function ipOffset(f: Buffer): number {
  let off = 12;
  while (off + 2 <= f.length && [ETH_P.VLAN, 0x88a8].includes(f.readUInt16BE(off))) off += 4;
  return off + 2 <= f.length && f.readUInt16BE(off) === ETH_P.IPV4 ? off + 2 : -1;
}

/** Mutations that make a frame malformed in the ways parsers get wrong. */
const MUTATIONS: Array<[string, (r: Rng, f: Buffer) => Buffer]> = [
  ['bit flip', (r, f) => { const b = Buffer.from(f); for (let n = 1 + r.int(3); n--;) b[r.int(b.length)] ^= 1 << r.int(8); return b; }],
  ['truncate', (r, f) => f.subarray(0, r.int(f.length + 1))],
  ['append junk', (r, f) => Buffer.concat([f, r.bytes(1 + r.int(64))])],
  ['random byte', (r, f) => { const b = Buffer.from(f); b[r.int(b.length)] = r.int(256); return b; }],
  ['ip total length', (r, f) => ipField(r, f, (b, o) => b.writeUInt16BE(r.pick([0, 19, 20, r.int(65536), b.length - o + 1, b.length - o - 1].map((v) => Math.max(0, Math.min(65535, v)))), o + 2))],
  ['ip ihl', (r, f) => ipField(r, f, (b, o) => { b[o] = (b[o] & 0xf0) | r.int(16); })],
  ['ip version', (r, f) => ipField(r, f, (b, o) => { b[o] = (r.int(16) << 4) | (b[o] & 0x0f); })],
  ['fragment', (r, f) => ipField(r, f, (b, o) => b.writeUInt16BE((r.int(8) << 13) | r.pick([0, 1, r.int(8192)]), o + 6))],
  ['l4 length', (r, f) => ipField(r, f, (b, o) => { const l4 = o + (b[o] & 0x0f) * 4; if (l4 + 6 <= b.length) b.writeUInt16BE(r.pick([0, 7, 8, r.int(65536)]), l4 + 4); })],
  ['ip options', (r, f) => ipField(r, f, (b, o) => { const ihl = b[o] & 0x0f; if (ihl > 5 && o + ihl * 4 <= b.length) b.fill(r.int(256), o + 20, o + ihl * 4); })],
];

function ipField(r: Rng, f: Buffer, edit: (b: Buffer, off: number) => void): Buffer {
  const b = Buffer.from(f);
  const o = ipOffset(b);
  if (o >= 0 && o + 20 <= b.length) edit(b, o);
  return b;
}

/** The frame, or a mutation of it (one or two), with what was done. */
export function mutate(r: Rng, f: Buffer, p = 0.7): { frame: Buffer; how: string[] } {
  const how: string[] = [];
  let out = f;
  if (r.chance(p)) {
    for (let n = r.chance(0.8) ? 1 : 2; n--;) {
      const [name, fn] = r.pick(MUTATIONS);
      how.push(name);
      out = fn(r, out);
    }
  }
  return { frame: out, how };
}
