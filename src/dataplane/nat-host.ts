// What NAT needs to know of the host, as rtnetlink and /proc tell it inside
// the instance's namespace: its addresses, routes and the ports it uses itself.
import { readFileSync } from 'node:fs';
import { XdpnetError } from '../errors.js';
import { ipv4ToNum, numToIpv4 } from '../objects/codec.js';
import { dumpAddresses } from '../sys/rtnl.js';
import { routeGet } from './host.js';
import type { Prefix } from './inet.js';

/** The host's IPv4 addresses but loopback's: address → ifindex, and each interface's addresses in the kernel's order (primary first). */
export function hostAddresses(): { byAddr: Map<number, number>; byIf: Map<number, number[]> } {
  const byAddr = new Map<number, number>();
  const byIf = new Map<number, number[]>();
  for (const a of dumpAddresses()) {
    if (a.address.startsWith('127.')) continue;
    const n = ipv4ToNum(a.address);
    byAddr.set(n, a.ifindex);
    (byIf.get(a.ifindex) ?? byIf.set(a.ifindex, []).get(a.ifindex)!).push(n);
  }
  return { byAddr, byIf };
}

/**
 * The interface the kernel routes the prefix through (a host address in it is
 * asked), if it is reached directly there: a route via a gateway (the default
 * route, say) says nothing about where those sources are. The first host
 * address is often this host's own (a bridge's gateway address, routed to lo),
 * so the last one is asked then.
 */
export function routeDev(p: Prefix): string | undefined {
  const hosts = p.len < 31 ? [(p.addr + 1) >>> 0, (p.addr | (0xffffffff >>> p.len)) - 1] : [p.addr];
  for (const host of hosts) {
    const r = routeGet(numToIpv4(host >>> 0));
    if (r?.type === 'local') continue;
    return r && !r.gateway && r.dev !== 'lo' && (!r.type || r.type === 'unicast') ? r.dev : undefined;
  }
  return undefined;
}

/**
 * The default route's interface: the first 0.0.0.0/0 route of the main table
 * that has one, as `ip -4 route show default` lists them. Read from
 * /proc/thread-self/net/route (this thread's namespace, after a setns too),
 * which costs microseconds where running `ip` costs milliseconds.
 */
export function defaultDev(): string | undefined {
  let text = '';
  try {
    text = readFileSync('/proc/thread-self/net/route', 'utf8');
  } catch { /* no IPv4 */ }
  for (const line of text.split('\n').slice(1)) {
    const [dev, dst, , , , , , mask] = line.split('\t');
    if (dst === '00000000' && mask === '00000000' && dev && dev !== '*') return dev;
  }
  return undefined;
}

/** Ports the host itself uses: its ephemeral range and every bound TCP/UDP port (the ports SNAT must not take). */
export function hostPorts(): { ephemeral: [number, number]; bound: Set<number> } {
  const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const bound = new Set<number>();
  for (const f of ['tcp', 'tcp6', 'udp', 'udp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/net/${f}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 4) continue;
      if (f.startsWith('tcp') && cols[3] !== '0A') continue; // LISTEN
      bound.add(parseInt(cols[1].split(':')[1], 16));
    }
  }
  return { ephemeral: [lo, hi], bound };
}

/** The default SNAT port range: the longest run of ports from 1024 up outside the host's ephemeral range, bound ports and the given host ports. */
export function defaultPortRange(avoid: Iterable<number> = []): [number, number] {
  const { ephemeral, bound } = hostPorts();
  const taken = new Set([...bound, ...avoid]);
  let best: [number, number] = [0, -1];
  let start = -1;
  for (let p = 1024; p <= 65536; p++) {
    const free = p <= 65535 && (p < ephemeral[0] || p > ephemeral[1]) && !taken.has(p);
    if (free && start < 0) start = p;
    if (!free && start >= 0) {
      if (p - 1 - start > best[1] - best[0]) best = [start, p - 1];
      start = -1;
    }
  }
  if (best[1] < best[0]) throw new XdpnetError('no free source port range: the host uses every port from 1024 up', 'give one with --ports LO-HI');
  return best;
}
