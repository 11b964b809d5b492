// Seeded frame generation for the fuzz tier: a PRNG, well-formed seed frames
// and the mutations applied to them. Everything is a function of the seed, so
// a failure reproduces from the seed and frame number the test prints.
import { eth, ETH_P, icmpEcho, icmpError, ipv4, IPPROTO, tcp4, udp4, vxlan } from '../helpers/packet.js';

/** mulberry32: small, fast, and good enough to pick mutations. */
export class Rng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
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
    const b = Buffer.alloc(n);
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
  const src = r.pick(a.srcs ?? a.ips);
  const dst = r.pick(a.ips);
  const sport = r.pick(a.ports);
  const dport = r.pick(a.ports);
  const data = r.bytes(r.int(24));
  const opts = r.chance(0.1) ? { options: Buffer.from([1, 1, 1, 0]) } : {}; // NOPs + EOL: legal options
  const frag = r.chance(0.1) ? { mf: r.chance(0.5), fragOffset: r.int(4) } : {};
  switch (r.int(5)) {
    case 0: return udp4({ src, dst, sport, dport, ...opts, ...frag }, data);
    case 1: return tcp4({ src, dst, sport, dport, flags: r.pick(['S', 'SA', 'A', 'PA', 'FA', 'R']), seq: r.u32(), ack: r.u32(), ...opts, ...frag }, data);
    case 2: return ipv4({ src, dst, proto: IPPROTO.ICMP, ...opts, ...frag }, icmpEcho({ type: r.pick([0, 8] as const), id: r.pick(a.ports), seq: r.int(65536) }, data));
    case 3: { // an ICMP error quoting a packet of any kind, possibly cut or garbage
      const quoted = r.chance(0.8) ? l3(r, a) : r.bytes(r.int(40));
      return ipv4({ src, dst, proto: IPPROTO.ICMP, ...opts }, icmpError({ type: r.pick([3, 11, 12]), code: r.int(5), quote: r.int(12) }, quoted));
    }
    default: return ipv4({ src, dst, proto: r.pick([IPPROTO.UDP, IPPROTO.TCP, IPPROTO.ICMP, 47, 0]), ...opts, ...frag }, data);
  }
}

/** A VXLAN packet (UDP to 4789) carrying `inner`; sometimes VXLAN inside VXLAN. */
export function vxlanPacket(r: Rng, a: Addrs, vnis: readonly number[], inner: Buffer, outer: { src: string; dst: string }): Buffer {
  const body = r.chance(0.1)
    ? eth({ dst: r.pick(a.macs), src: r.pick(a.macs) }, vxlanPacket(r, a, vnis, inner, outer))
    : inner;
  return udp4({ src: outer.src, dst: outer.dst, sport: 49152 + r.int(1000), dport: 4789, csum: r.chance(0.5) ? 0 : true },
    vxlan({ vni: r.pick(vnis), flags: r.chance(0.95) ? 0x08 : r.int(256) }, body));
}

/** An Ethernet frame: untagged, tagged, or with a stack of tags (QinQ, 802.1ad outer). */
export function frame(r: Rng, a: Addrs, vids: readonly number[], payload: Buffer, type: number = ETH_P.IPV4, tagged = 0.5): Buffer {
  const dst = r.pick(a.macs);
  const src = r.pick(a.macs);
  const tags = !r.chance(tagged) ? 0 : r.chance(0.8) ? 1 : 2 + r.int(2);
  let body = Buffer.concat([u16(type), payload]);
  for (let i = 0; i < tags; i++) {
    const tpid = i === tags - 1 && tags > 1 && r.chance(0.5) ? 0x88a8 : ETH_P.VLAN;
    body = Buffer.concat([u16(tpid), u16((r.int(8) << 13) | r.pick(vids)), body]);
  }
  return Buffer.concat([Buffer.from(dst.replace(/:/g, ''), 'hex'), Buffer.from(src.replace(/:/g, ''), 'hex'), body]);
}

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
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
