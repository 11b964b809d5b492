// Byte-exact packet builder/parser for tests that feed frames to eBPF programs.
// Builders return Buffers and compose: eth(e, udp4({src, dst, sport, dport}, data)).
import { Buffer } from 'node:buffer';

/** A MAC or IPv4 address, either as text ("02:00:00:00:00:01", "10.0.0.1") or raw bytes. */
export type Addr = string | Buffer;

export const ETH_P = { IPV4: 0x0800, ARP: 0x0806, VLAN: 0x8100, IPV6: 0x86dd } as const;
export const IPPROTO = { ICMP: 1, TCP: 6, UDP: 17 } as const;
export const VXLAN_PORTS: readonly number[] = [4789, 8472];

const EMPTY = Buffer.alloc(0);

// ---- addresses and hex ----------------------------------------------------
export function mac(s: string): Buffer {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(s)) throw new Error(`malformed MAC address: ${JSON.stringify(s)}`);
  return Buffer.from(s.replace(/:/g, ''), 'hex');
}

export function ip4(s: string): Buffer {
  const parts = s.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255))
    throw new Error(`malformed IPv4 address: ${JSON.stringify(s)}`);
  return Buffer.from(parts.map(Number));
}

export const macStr = (buf: Buffer): string => [...buf.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
export const ip4Str = (buf: Buffer): string => [...buf.subarray(0, 4)].join('.');

// Parsed text addresses, kept: the fuzz tier builds millions of frames from a few addresses.
// Only pack() and sum16() read what addr() returns, so sharing the Buffers is safe.
const parsedAddrs = new Map<string, Buffer>();
function addr(a: Addr, len: 4 | 6): Buffer {
  let b: Buffer | undefined;
  if (typeof a !== 'string') b = a;
  else if (!(b = parsedAddrs.get(a))) {
    b = len === 6 ? mac(a) : ip4(a);
    if (parsedAddrs.size < 4096) parsedAddrs.set(a, b);
  }
  if (b.length !== len) throw new Error(`address must be ${len} bytes, got ${b.length}`);
  return b;
}

/** Hex dump, 16 bytes per line with offsets: readable in vitest diffs. */
export function hex(buf: Buffer): string {
  const lines: string[] = [];
  for (let i = 0; i < buf.length; i += 16)
    lines.push(`${i.toString(16).padStart(4, '0')}  ${buf.subarray(i, i + 16).toString('hex').replace(/(..)(?!$)/g, '$1 ')}`);
  return lines.join('\n');
}

/** Parse hex text, ignoring whitespace: fromHex('4500 0073') */
export function fromHex(s: string): Buffer {
  const h = s.replace(/\s+/g, '');
  if (!/^([0-9a-f]{2})*$/i.test(h)) throw new Error(`malformed hex: ${JSON.stringify(s)}`);
  return Buffer.from(h, 'hex');
}

function uint(v: number, bits: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v >= 2 ** bits) throw new RangeError(`${what} out of range (${bits} bits): ${v}`);
  return v;
}

/** A header field: [byte width, unsigned big-endian value] (range-checked by Buffer) or raw bytes. */
type Field = [bytes: number, value: number] | Buffer;
function pack(...fields: Field[]): Buffer {
  let len = 0;
  for (const f of fields) len += Buffer.isBuffer(f) ? f.length : f[0];
  const out = Buffer.allocUnsafe(len); // every byte is written below
  let at = 0;
  for (const f of fields) {
    if (Buffer.isBuffer(f)) at += f.copy(out, at);
    else at = out.writeUIntBE(f[1], at, f[0]);
  }
  return out;
}

// ---- checksums ------------------------------------------------------------
/** Folded (not complemented) ones'-complement sum of 16-bit big-endian words. */
function sum16(buf: Buffer, initial = 0): number {
  let s = initial;
  const n = buf.length;
  for (let i = 0; i + 1 < n; i += 2) s += (buf[i] << 8) | buf[i + 1];
  if (n % 2) s += buf[n - 1] << 8;
  while (s > 0xffff) s = (s % 0x10000) + Math.floor(s / 0x10000);
  return s;
}

/** RFC 1071 internet checksum. `initial` is an uncomplemented partial sum (e.g. pseudoHeaderSum). 0 ⇔ valid when run over data that includes its checksum. */
export const checksum = (buf: Buffer, initial = 0): number => ~sum16(buf, initial) & 0xffff;

/** Uncomplemented sum of the IPv4 pseudo header, to pass as `initial` to checksum(). */
export function pseudoHeaderSum(src: Addr, dst: Addr, proto: number, len: number): number {
  return sum16(pack(addr(src, 4), addr(dst, 4), [1, 0], [1, proto], [2, len]));
}

// ---- builders -------------------------------------------------------------
export interface EthOpts { dst: Addr; src: Addr; type?: number; vlan?: number; pcp?: number }
/** Ethernet header (+ 802.1Q tag when `vlan` is set) followed by payload. type defaults to IPv4. */
export function eth(o: EthOpts, payload: Buffer = EMPTY): Buffer {
  const tag: Field[] = o.vlan === undefined ? [] : [[2, ETH_P.VLAN], [2, (uint(o.pcp ?? 0, 3, 'pcp') << 13) | uint(o.vlan, 12, 'vlan')]];
  return pack(addr(o.dst, 6), addr(o.src, 6), ...tag, [2, o.type ?? ETH_P.IPV4], payload);
}

/** df defaults to true unless mf/fragOffset is set; fragOffset is in 8-byte units (wire value); options: raw, 4n bytes. */
export interface Ip4Opts {
  src: Addr; dst: Addr; proto: number; ttl?: number; id?: number; tos?: number;
  df?: boolean; mf?: boolean; fragOffset?: number; options?: Buffer;
}
export function ipv4(o: Ip4Opts, payload: Buffer = EMPTY): Buffer {
  const opts = o.options ?? EMPTY;
  if (opts.length % 4 || opts.length > 40) throw new RangeError('IPv4 options must be a multiple of 4 bytes, at most 40');
  const frag = uint(o.fragOffset ?? 0, 13, 'fragOffset');
  const flags = ((o.df ?? !(o.mf || frag)) ? 0x4000 : 0) | (o.mf ? 0x2000 : 0);
  const h = pack([1, 0x45 + opts.length / 4], [1, o.tos ?? 0], [2, 20 + opts.length + payload.length], [2, o.id ?? 0],
    [2, flags | frag], [1, o.ttl ?? 64], [1, o.proto], [2, 0], addr(o.src, 4), addr(o.dst, 4), opts);
  h.writeUInt16BE(checksum(h), 10);
  return Buffer.concat([h, payload]);
}

/** Addresses for the L4 pseudo header. */
export interface Pseudo { src: Addr; dst: Addr }
/** true = compute (needs the pseudo header), false = 0, number = write this value verbatim. */
export type Csum = boolean | number;

function withL4Csum(seg: Buffer, at: number, proto: number, csum: Csum = true, ph?: Pseudo): Buffer {
  let c = typeof csum === 'number' ? csum : 0;
  if (csum === true) {
    if (!ph) throw new Error('checksum needs the pseudo-header addresses {src, dst}');
    c = checksum(seg, pseudoHeaderSum(ph.src, ph.dst, proto, seg.length));
    if (c === 0 && proto === IPPROTO.UDP) c = 0xffff;
  }
  seg.writeUInt16BE(c, at);
  return seg;
}

export interface UdpOpts { sport: number; dport: number; csum?: Csum }
export const udp = (o: UdpOpts, payload: Buffer, ph?: Pseudo): Buffer =>
  withL4Csum(pack([2, o.sport], [2, o.dport], [2, 8 + payload.length], [2, 0], payload), 6, IPPROTO.UDP, o.csum, ph);

const TCP_FLAGS = 'FSRPAUEC'; // bit order, also the (scapy-like) order of parsed flag strings
export function tcpFlags(f: string | number): number {
  if (typeof f === 'number') return uint(f, 8, 'tcp flags');
  let bits = 0;
  for (const c of f.toUpperCase()) {
    const i = TCP_FLAGS.indexOf(c);
    if (i < 0) throw new Error(`unknown TCP flag ${JSON.stringify(c)} in ${JSON.stringify(f)}`);
    bits |= 1 << i;
  }
  return bits;
}
export const tcpFlagStr = (bits: number): string => [...TCP_FLAGS].filter((_, i) => bits & (1 << i)).join('');

/** flags: letters from "FSRPAUEC" ('S', 'SA', 'A', 'PA', 'FA', 'R'...) or the raw flag byte. */
export interface TcpOpts { sport: number; dport: number; flags: string | number; seq?: number; ack?: number; win?: number; csum?: Csum }
export const tcp = (o: TcpOpts, payload: Buffer, ph?: Pseudo): Buffer =>
  withL4Csum(pack([2, o.sport], [2, o.dport], [4, o.seq ?? 0], [4, o.ack ?? 0], [1, 5 << 4], [1, tcpFlags(o.flags)],
    [2, o.win ?? 65535], [2, 0], [2, 0], payload), 16, IPPROTO.TCP, o.csum, ph);

/** Whole IPv4+UDP / IPv4+TCP packets in one call; the IP src/dst double as the pseudo header. */
export const udp4 = (o: Omit<Ip4Opts, 'proto'> & UdpOpts, payload: Buffer = EMPTY): Buffer =>
  ipv4({ ...o, proto: IPPROTO.UDP }, udp(o, payload, o));
export const tcp4 = (o: Omit<Ip4Opts, 'proto'> & TcpOpts, payload: Buffer = EMPTY): Buffer =>
  ipv4({ ...o, proto: IPPROTO.TCP }, tcp(o, payload, o));

function icmp(type: number, code: number, rest: Buffer, body: Buffer): Buffer {
  const b = pack([1, type], [1, code], [2, 0], rest, body);
  b.writeUInt16BE(checksum(b), 2);
  return b;
}

/** ICMP echo request (8) / reply (0) message; wrap with ipv4({..., proto: IPPROTO.ICMP}). */
export const icmpEcho = (o: { type: 8 | 0; id: number; seq: number; code?: number }, payload: Buffer = EMPTY): Buffer =>
  icmp(o.type, o.code ?? 0, pack([2, o.id], [2, o.seq]), payload);

/** ICMP error quoting the original IP header + the first `quote` bytes (default 8) of its L4; `mtu` fills bytes 6-7 (frag needed). */
export function icmpError(o: { type: number; code: number; mtu?: number; quote?: number }, original: Buffer): Buffer {
  const ihl = original.length ? (original.readUInt8(0) & 0x0f) * 4 : 0;
  return icmp(o.type, o.code, pack([2, 0], [2, o.mtu ?? 0]), original.subarray(0, ihl + (o.quote ?? 8)));
}

/** 8-byte VXLAN header (flags 0x08 = VNI valid) + inner Ethernet frame. */
export const vxlan = (o: { vni: number; flags?: number }, inner: Buffer): Buffer =>
  pack([1, o.flags ?? 0x08], [3, 0], [3, o.vni], [1, 0], inner);

// ---- parser ---------------------------------------------------------------
export interface Parsed {
  eth?: { dst: string; src: string; type: number; vlan?: number; pcp?: number };
  /** flags: the 3-bit field (0b010 = DF, 0b001 = MF). */
  ipv4?: {
    src: string; dst: string; proto: number; ttl: number; id: number; tos: number; flags: number; fragOffset: number;
    len: number; ihl: number; checksum: number; headerChecksumValid: boolean;
  };
  /** checksumValid is absent when the checksum is 0 (not computed). */
  udp?: { sport: number; dport: number; len: number; checksum: number; checksumValid?: boolean };
  tcp?: { sport: number; dport: number; seq: number; ack: number; flags: string; win: number; checksum: number; checksumValid: boolean };
  /** id/seq for echo; mtu for dest-unreachable/frag-needed; original = the quoted packet for errors. */
  icmp?: { type: number; code: number; checksum: number; checksumValid: boolean; id?: number; seq?: number; mtu?: number; original?: Parsed };
  vxlan?: { flags: number; vni: number; inner: Parsed };
  /** Bytes after the innermost decoded header (Ethernet padding excluded). */
  payload?: Buffer;
  /** Set when the input ended before a header or the length an IP/UDP header claims. */
  truncated?: true;
}

function trunc(out: Parsed): Parsed {
  out.truncated = true;
  return out;
}

/** Decode an Ethernet frame. Never throws; short input yields partial layers + truncated: true. */
export function parse(frame: Buffer): Parsed {
  const out: Parsed = {};
  if (frame.length < 14) return trunc(out);
  let type = frame.readUInt16BE(12);
  out.eth = { dst: macStr(frame.subarray(0, 6)), src: macStr(frame.subarray(6, 12)), type };
  let off = 14;
  if (type === ETH_P.VLAN) {
    if (frame.length < 18) return trunc(out);
    const tci = frame.readUInt16BE(14);
    type = frame.readUInt16BE(16);
    out.eth = { ...out.eth, type, vlan: tci & 0xfff, pcp: tci >> 13 };
    off = 18;
  }
  if (type === ETH_P.IPV4) return parseIpv4(frame.subarray(off), out);
  out.payload = frame.subarray(off);
  return out;
}

/** Decode an IPv4 packet (no L2), adding layers to `out`. Never throws. */
export function parseIpv4(b: Buffer, out: Parsed = {}): Parsed {
  if (b.length < 20) return trunc(out);
  const ihl = (b.readUInt8(0) & 0x0f) * 4;
  if (b.readUInt8(0) >> 4 !== 4 || ihl < 20) {
    out.payload = b; // not IPv4 / malformed header length: leave undecoded
    return out;
  }
  if (b.length < ihl) return trunc(out);
  const len = b.readUInt16BE(2), fo = b.readUInt16BE(6), proto = b.readUInt8(9);
  const src = b.subarray(12, 16), dst = b.subarray(16, 20);
  out.ipv4 = {
    src: ip4Str(src), dst: ip4Str(dst), proto, ttl: b.readUInt8(8), id: b.readUInt16BE(4), tos: b.readUInt8(1),
    flags: fo >> 13, fragOffset: fo & 0x1fff, len, ihl,
    checksum: b.readUInt16BE(10), headerChecksumValid: checksum(b.subarray(0, ihl)) === 0,
  };
  if (b.length < len) out.truncated = true;
  const l4 = b.subarray(ihl, Math.max(ihl, Math.min(len, b.length)));
  const l4ok = (initial: number) => !out.truncated && checksum(l4, initial) === 0;
  if (out.ipv4.fragOffset !== 0) {
    out.payload = l4; // non-first fragment: no L4 header
  } else if (proto === IPPROTO.UDP) {
    if (l4.length < 8) return trunc(out);
    const ulen = l4.readUInt16BE(4), cs = l4.readUInt16BE(6), dport = l4.readUInt16BE(2);
    if (ulen > l4.length) out.truncated = true;
    out.udp = { sport: l4.readUInt16BE(0), dport, len: ulen, checksum: cs };
    const seg = l4.subarray(0, Math.max(8, ulen));
    if (cs !== 0) out.udp.checksumValid = !out.truncated && ulen >= 8 && checksum(seg, pseudoHeaderSum(src, dst, proto, ulen)) === 0;
    const data = seg.subarray(8);
    if (!VXLAN_PORTS.includes(dport)) out.payload = data;
    else if (data.length < 8) return trunc(out);
    else {
      out.vxlan = { flags: data.readUInt8(0), vni: data.readUIntBE(4, 3), inner: parse(data.subarray(8)) };
      if (out.vxlan.inner.truncated) out.truncated = true;
    }
  } else if (proto === IPPROTO.TCP) {
    if (l4.length < 20) return trunc(out);
    out.tcp = {
      sport: l4.readUInt16BE(0), dport: l4.readUInt16BE(2), seq: l4.readUInt32BE(4), ack: l4.readUInt32BE(8),
      flags: tcpFlagStr(l4.readUInt8(13)), win: l4.readUInt16BE(14), checksum: l4.readUInt16BE(16),
      checksumValid: l4ok(pseudoHeaderSum(src, dst, proto, l4.length)),
    };
    const doff = (l4.readUInt8(12) >> 4) * 4;
    if (doff > l4.length) return trunc(out);
    out.payload = l4.subarray(Math.max(20, doff));
  } else if (proto === IPPROTO.ICMP) {
    if (l4.length < 8) return trunc(out);
    const type = l4.readUInt8(0), code = l4.readUInt8(1);
    out.icmp = { type, code, checksum: l4.readUInt16BE(2), checksumValid: l4ok(0) };
    if (type === 0 || type === 8) {
      Object.assign(out.icmp, { id: l4.readUInt16BE(4), seq: l4.readUInt16BE(6) });
      out.payload = l4.subarray(8);
    } else if ([3, 5, 11, 12].includes(type)) {
      if (type === 3 && code === 4) out.icmp.mtu = l4.readUInt16BE(6);
      out.icmp.original = parseIpv4(l4.subarray(8));
    } else out.payload = l4.subarray(8);
  } else out.payload = l4;
  return out;
}
