// IPv4 addresses, prefixes and ports as users write them: the one parser of
// each, for every command (usage errors name the option, before anything is
// written).
import { isIPv4 } from 'node:net';
import { UsageError } from '../errors.js';
import { ipv4ToNum, numToIpv4 } from '../objects/codec.js';
import { IPPROTO } from '../objects/nat.js';

export interface Prefix { addr: number; len: number; text: string }

export function parsePrefix(s: string, what = '--src'): Prefix {
  const [ip, len = '32', ...rest] = s.split('/');
  if (!isIPv4(ip) || rest.length || !/^\d+$/.test(len) || Number(len) > 32) {
    throw new UsageError(`${what}: invalid IPv4 prefix '${s}'`, 'e.g. 172.17.0.0/16 or 172.17.0.2');
  }
  const bits = Number(len);
  const mask = bits ? (0xffffffff << (32 - bits)) >>> 0 : 0;
  const addr = (ipv4ToNum(ip) & mask) >>> 0;
  return { addr, len: bits, text: `${numToIpv4(addr)}/${bits}` };
}

export function parseIp(s: string, what: string): number {
  if (!isIPv4(s)) throw new UsageError(`${what}: invalid IPv4 address '${s}'`, 'expected an IPv4 address like 192.0.2.1');
  return ipv4ToNum(s);
}

/** "A" or "A-B" (IPv4 addresses, A <= B). */
export function parseAddrRange(s: string): [number, number] {
  const [a, b = a, ...rest] = s.split('-');
  if (rest.length) throw new UsageError(`--to: invalid address range '${s}'`, 'e.g. 203.0.113.5 or 203.0.113.5-203.0.113.8');
  const lo = parseIp(a, '--to');
  const hi = parseIp(b, '--to');
  if (hi < lo) throw new UsageError(`--to: the range ${s} runs backwards`, `write it low to high: ${b}-${a}`);
  return [lo, hi];
}

/** "LO-HI" or "P" ports, 1-65535. */
export function parsePortRange(s: string, what = '--ports'): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(s);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || lo < 1 || hi > 65535 || hi < lo) throw new UsageError(`${what}: invalid port range '${s}'`, 'e.g. 20000-29999 (1 to 65535, low to high)');
  return [lo, hi];
}

export function parsePort(s: string, what: string, hint = 'a port is 1 to 65535'): number {
  const n = Number(s);
  if (!/^\d+$/.test(s) || n < 1 || n > 65535) throw new UsageError(`${what}: invalid port '${s}'`, hint);
  return n;
}

export type Proto = 'tcp' | 'udp';
export const PROTO_NUM: Record<Proto, number> = { tcp: IPPROTO.TCP, udp: IPPROTO.UDP };
export const PROTO_NAME: Record<number, string> = { [IPPROTO.ICMP]: 'icmp', [IPPROTO.TCP]: 'tcp', [IPPROTO.UDP]: 'udp' };

export function parseProto(s: string): Proto {
  if (s !== 'tcp' && s !== 'udp') throw new UsageError(`--proto: expected tcp or udp, got '${s}'`);
  return s;
}

/** "IP:PORT". */
export function parseHostPort(s: string, what = '--to'): { addr: number; port: number } {
  const i = s.lastIndexOf(':');
  if (i < 0) throw new UsageError(`${what}: expected IP:PORT, got '${s}'`, 'e.g. --to 172.17.0.2:80');
  return { addr: parseIp(s.slice(0, i), what), port: parsePort(s.slice(i + 1), what) };
}
/** A unicast IPv4 address (not 0.0.0.0, multicast or broadcast), e.g. a VTEP's. */
export function parseUnicastIp(s: string, what: string): string {
  const n = parseIp(s, what);
  if (n === 0 || n >>> 28 === 14 || n === 0xffffffff) throw new UsageError(`${what}: ${s} is not a unicast address`, 'a VTEP address is a unicast address');
  return s;
}
