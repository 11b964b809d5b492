// What users type for L2/L3 addressing: MAC addresses, VLAN ids and lists,
// CIDRs. Parsed once at the edges (CLI arguments, files) into values the rest
// of the code trusts: MACs are 6-byte Buffers, VLANs numbers in 1..4094.
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { UsageError } from '../errors.js';

const hex = (c: number) => (c >= 48 && c <= 57 ? c - 48 : (c | 32) >= 97 && (c | 32) <= 102 ? (c | 32) - 87 : -1);

/**
 * Parses "02:42:ac:11:00:02" (or with dashes) into buf at off; false if it is
 * not one. By hand, not by regex: `fdb load` parses a hundred thousand.
 */
export function parseMacInto(s: string, buf: Buffer, off: number): boolean {
  if (typeof s !== 'string' || s.length !== 17) return false;
  const sep = s.charCodeAt(2);
  if (sep !== 58 && sep !== 45) return false; // ':' or '-'
  for (let i = 0; i < 6; i++) {
    const hi = hex(s.charCodeAt(3 * i));
    const lo = hex(s.charCodeAt(3 * i + 1));
    if (hi < 0 || lo < 0 || (i < 5 && s.charCodeAt(3 * i + 2) !== sep)) return false;
    buf[off + i] = (hi << 4) | lo;
  }
  return true;
}

export function parseMac(s: string): Buffer {
  const b = Buffer.allocUnsafe(6);
  if (!parseMacInto(s, b, 0)) throw new UsageError(`invalid MAC address '${s}': expected six hex octets like 02:42:ac:11:00:02`);
  return b;
}

/** Why the MAC at buf[off] cannot be a frame's source or an FDB destination (multicast/broadcast, zero), if it cannot. */
export function unicastMacProblem(buf: Buffer, off = 0): UsageError | undefined {
  if (buf[off] & 1) return new UsageError(`MAC address ${formatMac(buf.subarray(off, off + 6))} is multicast or broadcast`, 'use a unicast address (first octet even)');
  if (buf.readUInt32LE(off) === 0 && buf.readUInt16LE(off + 4) === 0) return new UsageError('MAC address 00:00:00:00:00:00 is not a valid address');
  return undefined;
}

/** A MAC that can be a frame's source or an FDB destination: not multicast/broadcast, not zero. */
export function parseUnicastMac(s: string): Buffer {
  const m = parseMac(s);
  const problem = unicastMacProblem(m);
  if (problem) throw problem;
  return m;
}

export function formatMac(b: Buffer): string {
  return [...b.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Random locally administered unicast MAC (like the kernel's eth_random_addr). */
export function randomMac(): Buffer {
  const b = randomBytes(6);
  b[0] = (b[0] & 0xfc) | 0x02;
  return b;
}

export const VLAN_MIN = 1;
export const VLAN_MAX = 4094; // 0 means "no VLAN" in a tag, 4095 is reserved

const vlanHelp = `expected a VLAN id from ${VLAN_MIN} to ${VLAN_MAX}`;

/** Checks a VLAN id that arrived as a number (a JSON row, an API call). */
export function checkVlan(n: unknown, what = 'VLAN'): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < VLAN_MIN || n > VLAN_MAX) {
    throw new UsageError(`invalid ${what} ${JSON.stringify(n)}: ${vlanHelp}`);
  }
  return n;
}

export function parseVlan(s: string): number {
  if (!/^\d+$/.test(s.trim())) throw new UsageError(`invalid VLAN '${s}': ${vlanHelp}`);
  return checkVlan(Number(s), 'VLAN');
}

/** '10,20,30-32' → [10, 20, 30, 31, 32] (sorted, without repeats). */
export function parseVlanList(s: string): number[] {
  const out = new Set<number>();
  for (const item of s.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(item);
    if (!m) throw new UsageError(`invalid VLAN list '${s}': '${item}' is not a VLAN id or range like 30-40`);
    const [lo, hi] = [m[1], m[2] ?? m[1]].map(parseVlan);
    if (lo > hi) throw new UsageError(`invalid VLAN list '${s}': range ${item.trim()} runs backwards`, `write it as ${hi}-${lo}`);
    for (let v = lo; v <= hi; v++) out.add(v);
  }
  return [...out].sort((a, b) => a - b);
}

/** [10, 20, 30, 31, 32] → '10,20,30-32'. */
export function formatVlanList(vids: number[]): string {
  const sorted = [...vids].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(j > i ? `${sorted[i]}-${sorted[j]}` : String(sorted[i]));
    i = j + 1;
  }
  return parts.join(',');
}

/** 'ADDRESS/PREFIX' with an IPv4 or IPv6 address, as `ip addr add` takes it. */
export function parseCidr(s: string): string {
  const [ip, prefix, ...rest] = s.split('/');
  const family = isIP(ip ?? '');
  const max = family === 6 ? 128 : 32;
  if (!family || rest.length || !/^\d+$/.test(prefix ?? '') || Number(prefix) > max) {
    throw new UsageError(`invalid address '${s}': expected ADDRESS/PREFIX like 172.17.0.1/16`);
  }
  return s;
}
