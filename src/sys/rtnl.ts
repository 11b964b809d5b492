// rtnetlink (NETLINK_ROUTE) requests the control path makes instead of running
// `ip`: route lookups (`ip route get`), the IPv4 address dump (`ip -4 addr
// show`), and the link, address and route changes a container's veth needs
// (`ip link add ... type veth peer ... netns`, `ip addr add`, `ip link set up`,
// `ip route add`, `ip link del`). Each call opens a socket in the calling
// thread's network namespace (after a setns, that one). The request builders
// and answer parsers are exported for the byte-exact unit tests.
import { isIPv4 } from 'node:net';
import { constants } from 'node:os';
import { NetlinkError } from '../errors.js';
import { MalformedNetlink, NLM_F, attr, attrString, attrU32, nestAttr, parseAttrs, strAttr, u32Attr, withNetlink, type NetlinkSocket } from './netlink.js';

const NETLINK_ROUTE = 0;
const AF_INET = 2;

export const RTM = { NEWLINK: 16, DELLINK: 17, NEWADDR: 20, GETADDR: 22, NEWROUTE: 24, GETROUTE: 26 } as const;
const IFLA = { ADDRESS: 1, IFNAME: 3, MTU: 4, LINKINFO: 18, NET_NS_FD: 28 } as const;
const IFLA_INFO = { KIND: 1, DATA: 2 } as const;
const VETH_INFO_PEER = 1;
const IFF_UP = 0x1;
const IFA = { ADDRESS: 1, LOCAL: 2, LABEL: 3, FLAGS: 8 } as const;
const IFA_F_SECONDARY = 0x01;
const RTA = { DST: 1, SRC: 2, OIF: 4, GATEWAY: 5, PREFSRC: 7 } as const;
const RT_TABLE_MAIN = 254;
const RTPROT_BOOT = 3; // what `ip route add` marks its routes with
const RT_SCOPE = { UNIVERSE: 0, LINK: 253 } as const;
const RTN_UNICAST = 1;
/** rtm_type's names, as `ip route` prints them. */
export const ROUTE_TYPES = ['unspec', 'unicast', 'local', 'broadcast', 'anycast', 'multicast', 'blackhole', 'unreachable', 'prohibit', 'throw', 'nat', 'xresolve'];

function ipv4(addr: string, what: string): Buffer {
  if (!isIPv4(addr)) throw new RangeError(`${what}: '${addr}' is not an IPv4 address`);
  return Buffer.from(addr.split('.').map(Number));
}

const ipv4Text = (b: Buffer, what: string): string => {
  if (b.length !== 4) throw new MalformedNetlink(`${what} of ${b.length} bytes where an IPv4 address was expected`);
  return [...b].join('.');
};

function macBytes(mac: string): Buffer {
  const b = Buffer.from(mac.split(':').map((x) => parseInt(x, 16)));
  if (b.length !== 6 || !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac)) throw new RangeError(`'${mac}' is not a MAC address`);
  return b;
}

const rtnl = <T>(fn: (s: NetlinkSocket) => T): T => withNetlink(NETLINK_ROUTE, fn);

// ---- links ----------------------------------------------------------------------

/** struct ifinfomsg (16 bytes): family, type, index, flags and the mask of flags to change. */
export function ifinfomsg(o: { index?: number; flags?: number; change?: number } = {}): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32LE(o.index ?? 0, 4);
  b.writeUInt32LE(o.flags ?? 0, 8);
  b.writeUInt32LE(o.change ?? 0, 12);
  return b;
}

export interface LinkSpec {
  name: string;
  mtu?: number;
  mac?: string;
  up?: boolean;
  /** Made in the network namespace this fd refers to (an open nsfs file, e.g. /run/netns/NAME). */
  netnsFd?: number;
}

function linkBody(l: LinkSpec, more: Buffer[] = []): Buffer {
  return Buffer.concat([
    ifinfomsg(l.up ? { flags: IFF_UP, change: IFF_UP } : {}),
    strAttr(IFLA.IFNAME, l.name),
    ...(l.mtu !== undefined ? [u32Attr(IFLA.MTU, l.mtu)] : []),
    ...(l.mac !== undefined ? [attr(IFLA.ADDRESS, macBytes(l.mac))] : []),
    ...(l.netnsFd !== undefined ? [u32Attr(IFLA.NET_NS_FD, l.netnsFd)] : []),
    ...more,
  ]);
}

/** RTM_NEWLINK's body for a veth pair: the first end here, the peer's own ifinfomsg and attributes nested in VETH_INFO_PEER. */
export function vethBody(end: LinkSpec, peer: LinkSpec): Buffer {
  return linkBody(end, [nestAttr(IFLA.LINKINFO, [strAttr(IFLA_INFO.KIND, 'veth'), nestAttr(IFLA_INFO.DATA, [attr(VETH_INFO_PEER, linkBody(peer))])])]);
}

/** `ip link add END ... type veth peer name PEER ... [netns NS]`: both ends made at once, each under its final name. */
export function addVeth(end: LinkSpec, peer: LinkSpec): void {
  rtnl((s) => s.request({ op: 'create veth', target: `${end.name}/${peer.name}` }, RTM.NEWLINK, NLM_F.CREATE | NLM_F.EXCL, vethBody(end, peer)));
}

/** `ip link set IFACE up`. */
export function setLinkUp(ifindex: number, name = `ifindex ${ifindex}`): void {
  rtnl((s) => s.request({ op: 'set link up', target: name }, RTM.NEWLINK, 0, ifinfomsg({ index: ifindex, flags: IFF_UP, change: IFF_UP })));
}

/** `ip link del IFACE` (a veth takes its peer along). */
export function deleteLink(ifindex: number, name = `ifindex ${ifindex}`): void {
  rtnl((s) => s.request({ op: 'delete link', target: name }, RTM.DELLINK, 0, ifinfomsg({ index: ifindex })));
}

// ---- addresses ------------------------------------------------------------------

/** struct ifaddrmsg (8 bytes): family, prefix length, flags, scope, interface index. */
export function ifaddrmsg(o: { prefixlen?: number; index?: number } = {}): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(AF_INET, 0);
  b.writeUInt8(o.prefixlen ?? 0, 1);
  b.writeUInt32LE(o.index ?? 0, 4);
  return b;
}

/** RTM_NEWADDR's body for `ip addr add A/LEN dev IFACE`: local and address both A (no peer), universe scope. */
export function addressBody(ifindex: number, address: string, prefixlen: number): Buffer {
  if (!Number.isInteger(prefixlen) || prefixlen < 0 || prefixlen > 32) throw new RangeError(`prefix length ${prefixlen}: expected 0 to 32`);
  const a = ipv4(address, 'address');
  return Buffer.concat([ifaddrmsg({ prefixlen, index: ifindex }), attr(IFA.LOCAL, a), attr(IFA.ADDRESS, a)]);
}

export function addAddress(ifindex: number, address: string, prefixlen: number, name = `ifindex ${ifindex}`): void {
  rtnl((s) => s.request({ op: 'add address', target: `${address}/${prefixlen} to ${name}` }, RTM.NEWADDR, NLM_F.CREATE | NLM_F.EXCL, addressBody(ifindex, address, prefixlen)));
}

export interface AddressInfo { ifindex: number; address: string; prefixlen: number; secondary: boolean; label?: string }

/** One RTM_NEWADDR of a dump; undefined for a family other than IPv4. The local address, as `ip` shows it (else the address). */
export function parseAddress(body: Buffer): AddressInfo | undefined {
  if (body.length < 8) throw new MalformedNetlink(`RTM_NEWADDR of ${body.length} bytes`);
  if (body.readUInt8(0) !== AF_INET) return undefined;
  const a = parseAttrs(body.subarray(8));
  const local = a.get(IFA.LOCAL) ?? a.get(IFA.ADDRESS);
  if (!local) throw new MalformedNetlink('RTM_NEWADDR without an address');
  const flags = attrU32(a.get(IFA.FLAGS), 'IFA_FLAGS') ?? body.readUInt8(2); // IFA_FLAGS holds all 32 bits when present
  const label = a.get(IFA.LABEL);
  return {
    ifindex: body.readUInt32LE(4), address: ipv4Text(local, 'IFA_LOCAL'), prefixlen: body.readUInt8(1),
    secondary: Boolean(flags & IFA_F_SECONDARY), ...(label ? { label: attrString(label) } : {}),
  };
}

/** Every IPv4 address of the namespace, in the kernel's order (by interface; primaries before secondaries), as `ip -4 addr show`. */
export function dumpAddresses(): AddressInfo[] {
  const msgs = rtnl((s) => s.request({ op: 'list addresses', target: 'IPv4' }, RTM.GETADDR, NLM_F.DUMP, ifaddrmsg()));
  return msgs.filter((m) => m.type === RTM.NEWADDR).flatMap((m) => parseAddress(m.body) ?? []);
}

// ---- routes ---------------------------------------------------------------------

/** struct rtmsg (12 bytes). */
export function rtmsg(o: { dstLen?: number; srcLen?: number; table?: number; protocol?: number; scope?: number; type?: number } = {}): Buffer {
  return Buffer.from([AF_INET, o.dstLen ?? 0, o.srcLen ?? 0, 0, o.table ?? 0, o.protocol ?? 0, o.scope ?? 0, o.type ?? 0, 0, 0, 0, 0]);
}

/** RTM_GETROUTE's body for `ip route get DST [from SRC] [oif IFINDEX]`. */
export function routeGetBody(dst: string, o: { from?: string; oif?: number } = {}): Buffer {
  return Buffer.concat([
    rtmsg({ dstLen: 32, srcLen: o.from ? 32 : 0 }),
    attr(RTA.DST, ipv4(dst, 'destination')),
    ...(o.from ? [attr(RTA.SRC, ipv4(o.from, 'source'))] : []),
    ...(o.oif ? [u32Attr(RTA.OIF, o.oif)] : []),
  ]);
}

export interface RouteAnswer { type: string; oif?: number; gateway?: string; prefsrc?: string }

export function parseRoute(body: Buffer): RouteAnswer {
  if (body.length < 12) throw new MalformedNetlink(`RTM_NEWROUTE of ${body.length} bytes`);
  const a = parseAttrs(body.subarray(12));
  const gw = a.get(RTA.GATEWAY);
  const src = a.get(RTA.PREFSRC);
  const oif = attrU32(a.get(RTA.OIF), 'RTA_OIF');
  return {
    type: ROUTE_TYPES[body.readUInt8(7)] ?? `type ${body.readUInt8(7)}`,
    ...(oif !== undefined ? { oif } : {}),
    ...(gw ? { gateway: ipv4Text(gw, 'RTA_GATEWAY') } : {}),
    ...(src ? { prefsrc: ipv4Text(src, 'RTA_PREFSRC') } : {}),
  };
}

/** The kernel's answers that mean "no route there" (unreachable, prohibit, a source that is not ours): undefined, not an error. */
const NO_ROUTE = new Set(['ENETUNREACH', 'EHOSTUNREACH', 'EACCES', 'EINVAL', 'ENODEV'].map((n) => constants.errno[n as keyof typeof constants.errno]));

/** The kernel's route to dst (`ip route get`); undefined when there is none. */
export function getRoute(dst: string, o: { from?: string; oif?: number } = {}): RouteAnswer | undefined {
  const body = routeGetBody(dst, o);
  try {
    const [m] = rtnl((s) => s.request({ op: 'route get', target: dst }, RTM.GETROUTE, 0, body));
    return m && m.type === RTM.NEWROUTE ? parseRoute(m.body) : undefined;
  } catch (e) {
    if (e instanceof NetlinkError && NO_ROUTE.has(e.errno)) return undefined;
    throw e;
  }
}

export interface RouteSpec { dst: string; dstLen: number; gateway?: string; oif: number }

/** RTM_NEWROUTE's body for `ip route add DST/LEN [via GW] dev IFACE` in the main table (link scope without a gateway). */
export function routeAddBody(r: RouteSpec): Buffer {
  if (!Number.isInteger(r.dstLen) || r.dstLen < 0 || r.dstLen > 32) throw new RangeError(`prefix length ${r.dstLen}: expected 0 to 32`);
  return Buffer.concat([
    rtmsg({ dstLen: r.dstLen, table: RT_TABLE_MAIN, protocol: RTPROT_BOOT, scope: r.gateway ? RT_SCOPE.UNIVERSE : RT_SCOPE.LINK, type: RTN_UNICAST }),
    ...(r.dstLen ? [attr(RTA.DST, ipv4(r.dst, 'destination'))] : []),
    ...(r.gateway ? [attr(RTA.GATEWAY, ipv4(r.gateway, 'gateway'))] : []),
    u32Attr(RTA.OIF, r.oif),
  ]);
}

export function addRoute(r: RouteSpec, name = `ifindex ${r.oif}`): void {
  rtnl((s) => s.request({ op: 'add route', target: `${r.dst}/${r.dstLen}${r.gateway ? ` via ${r.gateway}` : ''} dev ${name}` },
    RTM.NEWROUTE, NLM_F.CREATE | NLM_F.EXCL, routeAddBody(r)));
}
