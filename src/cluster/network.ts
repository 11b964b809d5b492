// One overlay network as etcd holds it: the key layout, the network's config,
// and the address arithmetic of its blocks. Pure: no etcd, no maps.
import { UsageError, XdpnetError } from '../errors.js';
import { ipv4ToNum, numToIpv4 } from '../objects/codec.js';

export const ROOT = '/xdpnet/networks/';

/** Keys of network NAME. hosts/ and endpoints/ carry their host's lease; config and blocks stay. */
export const keys = (name: string) => {
  const base = `${ROOT}${name}/`;
  return {
    base,
    config: `${base}config`,
    hosts: `${base}hosts/`,
    host: (node: string) => `${base}hosts/${node}`,
    blocks: `${base}blocks/`,
    block: (cidr: string) => `${base}blocks/${cidr.replace('/', '-')}`,
    endpoints: `${base}endpoints/`,
    endpoint: (ip: string) => `${base}endpoints/${ip}`,
  };
};

export interface NetworkConfig {
  name: string;
  vni: number;
  /** The cluster CIDR, e.g. 10.90.0.0/16: one flat subnet across hosts. */
  cidr: string;
  /** Prefix length of the blocks hosts claim (e.g. 26: 64 addresses). */
  block: number;
  /** The distributed gateway: the same address and MAC on every host. */
  gateway: string;
  gatewayMac: string;
  /** VXLAN UDP port. */
  port: number;
}

export interface HostRecord {
  node: string;
  underlay: string;
  port: number;
}

export interface EndpointRecord {
  ip: string;
  mac: string;
  node: string;
}

const NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,31}$/;
export function checkNetworkName(s: string): string {
  if (!NAME_RE.test(s)) throw new UsageError(`invalid network name '${s}': 1-32 of a-z 0-9 _ . - starting with a letter or digit`);
  return s;
}
export function checkNodeName(s: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(s)) throw new UsageError(`invalid node name '${s}': letters, digits, _ . - (at most 63)`);
  return s;
}

export function parseNetCidr(s: string): { base: number; len: number } {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(s);
  const len = m ? Number(m[2]) : -1;
  if (!m || len < 8 || len > 30 || m[1].split('.').some((o) => Number(o) > 255)) {
    throw new UsageError(`invalid cluster CIDR '${s}': expected an IPv4 network like 10.90.0.0/16 (prefix 8 to 30)`);
  }
  const base = ipv4ToNum(m[1]);
  const mask = len === 0 ? 0 : (~0 << (32 - len)) >>> 0;
  if ((base & mask) >>> 0 !== base) throw new UsageError(`${s} has host bits set: did you mean ${numToIpv4((base & mask) >>> 0)}/${len}?`);
  return { base, len };
}

/** The network's MAC for its gateway: locally administered, from the VNI, the same on every host. */
export const gatewayMacOf = (vni: number) =>
  ['02', '78', '6e', (vni >>> 16) & 255, (vni >>> 8) & 255, vni & 255].map((x) => (typeof x === 'string' ? x : x.toString(16).padStart(2, '0'))).join(':');

export function makeConfig(name: string, vni: number, cidr: string, block: number, port = 4789): NetworkConfig {
  checkNetworkName(name);
  if (!Number.isInteger(vni) || vni < 1 || vni > 0xffffff) throw new UsageError(`invalid VNI ${vni}: 1 to 16777215`);
  const { base, len } = parseNetCidr(cidr);
  if (!Number.isInteger(block) || block < len || block > 30) throw new UsageError(`invalid block size /${block}: between the CIDR's /${len} and /30`);
  return { name, vni, cidr, block, gateway: numToIpv4(base + 1), gatewayMac: gatewayMacOf(vni), port };
}

export function parseConfig(name: string, raw: string | null): NetworkConfig {
  if (raw === null) throw new XdpnetError(`network ${name} not found in etcd`, `create it once: xdpnet network create ${name} --vni N --cidr 10.90.0.0/16`);
  return JSON.parse(raw) as NetworkConfig;
}

/** Every block of the network, in order: the CIDR strings hosts claim. */
export function* blocksOf(c: NetworkConfig): Generator<string> {
  const { base, len } = parseNetCidr(c.cidr);
  const n = 2 ** (c.block - len);
  for (let i = 0; i < n; i++) yield `${numToIpv4(base + i * 2 ** (32 - c.block))}/${c.block}`;
}

/** The addresses of a block that endpoints may take: not the cluster's network, broadcast or gateway address. */
export function* addressesOf(c: NetworkConfig, block: string): Generator<string> {
  const { base: net, len } = parseNetCidr(c.cidr);
  const [b] = block.split('/');
  const start = ipv4ToNum(b);
  const last = (net + 2 ** (32 - len) - 1) >>> 0;
  const gw = ipv4ToNum(c.gateway);
  for (let a = start; a < start + 2 ** (32 - c.block); a++) if (a !== net && a !== last && a !== gw) yield numToIpv4(a);
}

export const prefixLen = (c: NetworkConfig) => parseNetCidr(c.cidr).len;

/** The network's bridge on every host (a bridge name is an interface name: 15 characters at most). */
export const bridgeNameOf = (cfg: NetworkConfig) => `xnb${cfg.vni}`;

/**
 * Where the agent of instance INST (`host`, `ns-NAME`) for network NAME takes
 * requests from the CNI plugin. A path, not a port: it is reachable from any
 * network namespace that shares the mount namespace, as the plugin's is.
 */
export const agentSocketPath = (instance: string, network: string) => `/run/xdpnet/agent/${instance}/${network}.sock`;

/** The plugin's request to the agent (one JSON line per connection) and the agent's answer. */
export type AgentRequest = { op: 'add'; mac: string } | { op: 'del'; ip: string };
export type AgentReply =
  | { ok: true; ip: string; prefix: number; gateway: string; bridge: string }
  | { ok: true; released: boolean }
  | { ok: false; error: string; hint?: string };
