// The container's end: the veth pair, and what goes inside CNI_NETNS (address,
// routes, MTU, offloads), made over rtnetlink and with an ethtool ioctl from
// inside the netns (setns on this thread: the host's mounts stay, so pins stay
// on the host's bpffs). No process is run: each `ip` run cost an ADD
// milliseconds, a netlink request costs microseconds.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { formatMac, randomMac } from '../dataplane/addr.js';
import { parsePrefix } from '../dataplane/inet.js';
import { errnoName } from '../errors.js';
import { CLONE_NEWNET, close, ifNameToIndex, openRead, setns, setOffload } from '../sys/libc.js';
import { addAddress, addRoute, addVeth, deleteLink, setLinkUp } from '../sys/rtnl.js';
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

/** mac: the container end's MAC when the caller chose it already (a cluster endpoint is published before the veth exists). */
export interface ContainerEnd { ifname: string; mtu: number; xdpPort: boolean; mac?: string }
export interface ContainerAddress { ifname: string; address: string; gateway?: string; routes: CniRoute[] }

/** What createVeth made: both ends' MACs (chosen here, so nothing has to be asked afterwards) and the host end's ifindex. */
export interface Veth { mac: string; hostMac: string; ifindex: number }

/**
 * Creates the pair with the container end made straight into the netns under
 * its final name, sets its offloads there, and returns what it made. GRO on the
 * container end lets frames that XDP redirects into it (an XDP port, a VXLAN
 * uplink) be received; an XDP port also needs tx checksum offload off there,
 * since a frame that enters XDP loses its partial checksum.
 * One RTM_NEWLINK: both MACs are chosen here as the kernel would (random,
 * locally administered), the host end comes up with the pair, the peer is
 * made in the netns by its fd; the offloads are set by ioctl from inside it.
 */
export function createVeth(host: string, netns: string, c: ContainerEnd): Veth {
  if (!existsSync(netns)) throw new CniError(CODES.INVALID_ENV, `CNI_NETNS ${netns} does not exist`);
  const mac = c.mac ?? formatMac(randomMac());
  const hostMac = formatMac(randomMac());
  const nsFd = openNetns(netns);
  try {
    addVeth({ name: host, mtu: c.mtu, mac: hostMac, up: true }, { name: c.ifname, mtu: c.mtu, mac, netnsFd: nsFd });
  } finally {
    close(nsFd);
  }
  const ifindex = ifNameToIndex(host);
  inContainer(netns, () => {
    offload(c.ifname, 'gro', true);
    if (c.xdpPort) offload(c.ifname, 'tx', false);
  });
  return { mac, hostMac, ifindex };
}

/** The container end's address, up, then its routes (as `ip addr add`, `ip link set up`, `ip route add`), from inside the netns. */
export function addressContainer(netns: string, c: ContainerAddress): void {
  const addr = parsePrefix(c.address, 'address');
  inContainer(netns, () => {
    const ifindex = ifNameToIndex(c.ifname);
    if (!ifindex) throw new CniError(CODES.DATAPLANE, `interface ${c.ifname} vanished from ${netns}`);
    addAddress(ifindex, c.address.split('/')[0], addr.len, c.ifname);
    setLinkUp(ifindex, c.ifname);
    for (const r of c.routes) {
      const dst = parsePrefix(r.dst, 'route');
      addRoute({ dst: r.dst.split('/')[0], dstLen: dst.len, gateway: r.gw ?? c.gateway, oif: ifindex }, c.ifname);
    }
  });
}

function offload(ifname: string, feature: 'gro' | 'tx', on: boolean): void {
  const ret = setOffload(ifname, feature, on);
  if (ret < 0) throw new CniError(CODES.DATAPLANE, `ethtool -K ${ifname} ${feature} ${on ? 'on' : 'off'} failed: ${errnoName(-ret)}`);
}

function openNetns(path: string): number {
  const fd = openRead(path);
  if (fd < 0) throw new CniError(CODES.INVALID_ENV, `CNI_NETNS ${path} cannot be opened: ${errnoName(-fd)}`);
  return fd;
}

/** Runs fn with this thread in the netns at path (CNI_NETNS: any nsfs path, not only a named one), then comes back. */
function inContainer<T>(path: string, fn: () => T): T {
  const home = openRead('/proc/thread-self/ns/net');
  if (home < 0) throw new CniError(CODES.DATAPLANE, `cannot open this thread's network namespace: ${errnoName(-home)}`);
  try {
    const fd = openNetns(path);
    const ret = setns(fd, CLONE_NEWNET);
    close(fd);
    if (ret < 0) throw new CniError(CODES.INVALID_ENV, `CNI_NETNS ${path} cannot be entered: ${errnoName(-ret)}`);
    try {
      return fn();
    } finally {
      if (setns(home, CLONE_NEWNET) < 0) throw new CniError(CODES.DATAPLANE, 'cannot return to the plugin\'s own network namespace');
    }
  } finally {
    close(home);
  }
}

/** Deleting the host end deletes the pair; a missing one is not an error (DEL is idempotent). */
export function deleteVeth(host: string): void {
  const ifindex = ifNameToIndex(host);
  if (ifindex) deleteLink(ifindex, host);
}

/** What CHECK compares: the container interface's MAC and addresses, and its routes. */
export function containerView(netns: string, ifname: string): { mac: string; addrs: string[]; routes: Array<{ dst: string; gateway?: string }> } | undefined {
  if (!existsSync(netns)) return undefined;
  try {
    const [l, routes] = inContainer(netns, () => [
      JSON.parse(run(['ip', '-j', 'addr', 'show', 'dev', ifname])) as Array<{ address: string; addr_info: Array<{ family: string; local: string; prefixlen: number }> }>,
      JSON.parse(run(['ip', '-j', '-4', 'route', 'show', 'dev', ifname])) as Array<{ dst: string; gateway?: string }>,
    ] as const);
    return { mac: l[0].address, addrs: l[0].addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`), routes };
  } catch {
    return undefined;
  }
}
