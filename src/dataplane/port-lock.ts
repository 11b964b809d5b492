// Port locks (anti-spoofing): the MAC and IPv4 addresses a bridge port may
// send from (bpf/lib/port_lock.h). This module parses and checks them and is
// the one writer of xn_port_locks; the port's XN_PORT_LOCKED flag is the
// bridge's (bridge.ts), which writes the addresses here before it sets the
// flag and clears the flag before it deletes them.
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { BRIDGE, decodePortLock, PORT_LOCK_MAP, pinBridgeMaps, portLock } from '../objects/bridge.js';
import { numToIpv4, u32 } from '../objects/codec.js';
import type { InstancePaths } from '../objects/paths.js';
import { BpfMap } from '../sys/libbpf.js';
import { formatMac, parseUnicastMac, unicastMacProblem } from './addr.js';
import { parseIp } from './inet.js';

export interface PortLock {
  mac: Buffer;
  /** IPv4 addresses as numbers (ipv4ToNum). */
  ips: number[];
}

/** As `status --json` and `bridge show --json` print it. */
export interface PortLockInfo {
  mac: string;
  ips: string[];
}

/** Why an address cannot be a port's own source, if it cannot. */
function unicastProblem(n: number): string | undefined {
  if (n >>> 24 === 0) return 'is in 0.0.0.0/8 ("this network": never a source a lock can allow)';
  if (n >>> 24 === 127) return 'is a loopback address';
  if (n >>> 28 === 14) return 'is a multicast address';
  if (n >>> 28 === 15) return n === 0xffffffff ? 'is the broadcast address' : 'is in the reserved 240.0.0.0/4';
  return undefined;
}

/** '10.88.0.12,10.88.0.13' (or several such): unicast IPv4 addresses, without repeats, at most BRIDGE.limits.lockIps. */
export function parseLockIps(list: string | string[], what = '--lock-ip'): number[] {
  const items = (Array.isArray(list) ? list : [list]).flatMap((s) => s.split(',')).map((s) => s.trim());
  const out: number[] = [];
  for (const s of items) {
    const n = parseIp(s, what);
    const problem = unicastProblem(n);
    if (problem) throw new UsageError(`${what}: ${s} ${problem}`, 'a lock lists the unicast addresses the port\'s container owns');
    if (!out.includes(n)) out.push(n);
  }
  if (!out.length) throw new UsageError(`${what}: no address given`, 'e.g. --lock-ip 10.88.0.12');
  if (out.length > BRIDGE.limits.lockIps) {
    throw new UsageError(`${what}: ${out.length} addresses, a port lock holds at most ${BRIDGE.limits.lockIps}`);
  }
  return out;
}

/** A lock from what a user typed: the MAC (unicast) and the addresses. */
export function parseLock(mac: string | Buffer, ips: string | string[], what = '--lock-ip'): PortLock {
  const m = typeof mac === 'string' ? parseUnicastMac(mac) : mac;
  const problem = unicastMacProblem(m);
  if (problem) throw problem;
  return { mac: m, ips: parseLockIps(ips, what) };
}

export const lockInfo = (l: PortLock): PortLockInfo => ({ mac: formatMac(l.mac), ips: l.ips.map(numToIpv4) });

const pin = (inst: InstancePaths) => join(inst.maps, PORT_LOCK_MAP);

/** Every lock of the instance, by port ifindex (none when the map was never pinned). */
export function readLocks(inst: InstancePaths): Map<number, PortLock> {
  return BpfMap.usePin(pin(inst), (m) => new Map(m.entries().map(([k, v]) => [k.readUInt32LE(0), decodePortLock(v)]))) ?? new Map();
}

/** Writes a port's lock (before the port gets XN_PORT_LOCKED). */
export function writeLock(inst: InstancePaths, ifindex: number, l: PortLock): void {
  // Instances pinned before locks existed lack the map: loading the object pins it next to the others.
  if (BpfMap.usePin(pin(inst), () => true) === undefined) pinBridgeMaps(inst);
  BpfMap.usePin(pin(inst), (m) => m.update(u32(ifindex), portLock(l.mac, l.ips)));
}

/** Deletes a port's lock, if it has one (after the port lost XN_PORT_LOCKED, or the port itself). */
export function deleteLock(inst: InstancePaths, ifindex: number): void {
  BpfMap.usePin(pin(inst), (m) => (m.lookup(u32(ifindex)) ? m.delete(u32(ifindex)) : undefined));
}
