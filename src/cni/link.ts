// The container's end: the veth pair, and what goes inside CNI_NETNS (address,
// routes, MTU, offloads), set with iproute2 and ethtool entered through
// nsenter (the host's mounts stay, so pins stay on the host's bpffs).
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { CODES, CniError, type CniRoute } from './spec.js';

/** The host end's name: stable for (container, ifname), so DEL finds it without state. */
export function hostVethName(containerId: string, ifname: string): string {
  return `xnc${createHash('sha256').update(`${containerId}/${ifname}`).digest('hex').slice(0, 12)}`;
}

function run(argv: string[], input?: string): string {
  try {
    return execFileSync(argv[0], argv.slice(1), { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    const err = (e as { stderr?: string }).stderr?.trim() || (e as Error).message;
    throw new CniError(CODES.DATAPLANE, `${argv.join(' ')} failed: ${err}`);
  }
}

const inNetns = (netns: string, argv: string[], input?: string) => run(['nsenter', `--net=${netns}`, ...argv], input);

export interface LinkInfo { ifindex: number; address: string; mtu: number; operstate: string }

export function hostLink(name: string): LinkInfo | undefined {
  try {
    return JSON.parse(execFileSync('ip', ['-j', 'link', 'show', 'dev', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }))[0];
  } catch {
    return undefined;
  }
}

export interface ContainerSide { ifname: string; address: string; gateway?: string; routes: CniRoute[]; mtu: number; xdpPort: boolean; mac?: string }

/**
 * Creates the pair with the container end made straight into the netns under
 * its final name, configures it there, and returns its MAC. GRO on the
 * container end lets frames that XDP redirects into it (an XDP port, a VXLAN
 * uplink) be received; an XDP port also needs tx checksum offload off there,
 * since a frame that enters XDP loses its partial checksum.
 */
export function createVeth(host: string, netns: string, c: ContainerSide): string {
  if (!existsSync(netns)) throw new CniError(CODES.INVALID_ENV, `CNI_NETNS ${netns} does not exist`);
  run(['ip', 'link', 'add', host, 'mtu', String(c.mtu), 'type', 'veth', 'peer', 'name', c.ifname, ...(c.mac ? ['address', c.mac] : []), 'mtu', String(c.mtu), 'netns', netns]);
  run(['ip', 'link', 'set', host, 'up']);
  const cmds = [`addr add ${c.address} dev ${c.ifname}`, `link set ${c.ifname} up`];
  for (const r of c.routes) cmds.push(`route add ${r.dst} via ${r.gw ?? c.gateway} dev ${c.ifname}`);
  inNetns(netns, ['ip', '-batch', '-'], `${cmds.join('\n')}\n`);
  inNetns(netns, ['ethtool', '-K', c.ifname, 'gro', 'on', ...(c.xdpPort ? ['tx', 'off'] : [])]);
  return (JSON.parse(inNetns(netns, ['ip', '-j', 'link', 'show', 'dev', c.ifname]))[0] as LinkInfo).address;
}

/** Deleting the host end deletes the pair; a missing one is not an error (DEL is idempotent). */
export function deleteVeth(host: string): void {
  if (hostLink(host)) run(['ip', 'link', 'del', host]);
}

/** What CHECK compares: the container interface's MAC and addresses, and its routes. */
export function containerView(netns: string, ifname: string): { mac: string; addrs: string[]; routes: Array<{ dst: string; gateway?: string }> } | undefined {
  if (!existsSync(netns)) return undefined;
  try {
    const [l] = JSON.parse(inNetns(netns, ['ip', '-j', 'addr', 'show', 'dev', ifname])) as Array<{ address: string; addr_info: Array<{ family: string; local: string; prefixlen: number }> }>;
    const routes = JSON.parse(inNetns(netns, ['ip', '-j', '-4', 'route', 'show', 'dev', ifname])) as Array<{ dst: string; gateway?: string }>;
    return { mac: l.address, addrs: l.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`), routes };
  } catch {
    return undefined;
  }
}
