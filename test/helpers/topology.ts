// The NAT topology e2e tests share (nat.test.ts, upgrade.test.ts): a "host"
// namespace with an uplink up0 to an "outside" namespace that routes nothing
// back to the containers' subnet, and containers on veths v1..vN of the host
// (their eth0), routed through the host's bridge address. The bridge itself
// and what is attached are each test's own. Also: long-running processes in a
// namespace (peers, streams), which both tests start.
import { spawn, type ChildProcess } from 'node:child_process';
import { netns, sh, veth } from './sys.js';

export interface NatTopology { host: string; outside: string; containers: string[] }

/**
 * Namespaces `${tag}h` (host), `${tag}o` (outside), `${tag}c1`.. (containers).
 * uplink: the host's and the outside's addresses on up0 and eth0 (a /24; the
 * host's default route is the outside's). outside: addresses on the outside's
 * lo (servers and clients). containers: their addresses, in the /16 of
 * `gateway` (the bridge's address, not made here).
 */
export function natTopology(o: {
  tag: string;
  uplink: { host: string; outside: string };
  outside: string[];
  gateway: string;
  containers: string[];
  ipv6?: boolean; // false: the containers send no IPv6 autoconfiguration
  txChecksum?: boolean; // false: the containers send complete checksums (frames into an XDP port need them)
}): NatTopology {
  const host = netns(`${o.tag}h`);
  const outside = netns(`${o.tag}o`);
  veth(host, 'up0', outside, 'eth0', `${o.uplink.host}/24`, `${o.uplink.outside}/24`);
  for (const a of o.outside) sh('ip', ['-n', outside, 'addr', 'add', `${a}/32`, 'dev', 'lo']);
  sh('ip', ['-n', host, 'route', 'add', 'default', 'via', o.uplink.outside]);
  sh('ip', ['netns', 'exec', host, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  // XDP on up0 gets what the outside sends: complete checksums, as from a NIC's wire (up0 keeps TSO).
  sh('ip', ['netns', 'exec', outside, 'ethtool', '-K', 'eth0', 'tx', 'off']);
  const containers = o.containers.map((addr, i) => {
    const c = netns(`${o.tag}c${i + 1}`);
    if (o.ipv6 === false) sh('ip', ['netns', 'exec', c, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    veth(host, `v${i + 1}`, c, 'eth0', undefined, `${addr}/16`);
    sh('ip', ['-n', c, 'route', 'add', 'default', 'via', o.gateway]);
    if (o.txChecksum === false) sh('ip', ['netns', 'exec', c, 'ethtool', '-K', 'eth0', 'tx', 'off']);
    return c;
  });
  return { host, outside, containers };
}

/** A long-running node script in a namespace, with its output so far. */
export interface Proc { p: ChildProcess; out: () => string }

/** Starts `node script args` in ns; resolves once it has said something (a server: that it listens). */
export function startIn(ns: string, script: string, args: string[]): Promise<Proc> {
  const p = spawn('ip', ['netns', 'exec', ns, process.execPath, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d));
  p.stderr!.on('data', (d: Buffer) => (out += d));
  return new Promise((res, rej) => {
    const t = setInterval(() => {
      if (out.length) {
        clearInterval(t);
        res({ p, out: () => out });
      }
    }, 20);
    setTimeout(() => {
      clearInterval(t);
      rej(new Error(`${script} ${args.join(' ')} said nothing`));
    }, 60_000); // a node process can take seconds to start on a loaded machine
  });
}
