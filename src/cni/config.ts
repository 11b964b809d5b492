// Strict parsing of the network configuration (stdin) and the CNI_* environment.
// Everything is checked before anything is changed; an unknown or misspelt
// field is an error naming it, so a typo never silently means "the default".
import { CODES, CniError, checkVersion, type CniResult } from './spec.js';

export interface PortMapping { hostPort: number; containerPort: number; protocol: 'tcp' | 'udp'; hostIP?: string }

export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  bridge: string;
  isGateway: boolean;
  ipMasq: boolean;
  mtu: number;
  hook: 'tc' | 'xdp';
  /** Lock the container's port to its MAC and IPAM addresses (anti-spoofing; default true). */
  portLock: boolean;
  /** Passed to the IPAM plugin as it is: its fields are its business. */
  ipam: { type: string } & Record<string, unknown>;
  /** Set by `"ipam": {"type": "xdpnet-cluster", "network": NAME}`: the local agent of that network allocates, not a CNI_PATH plugin. */
  cluster?: { network: string; socket?: string };
  portMappings: PortMapping[];
  prevResult?: CniResult;
  /** The configuration exactly as read, for delegation to IPAM. */
  raw: Record<string, unknown>;
}

/** The spec's keys and those runtimes inject; then xdpnet's own. */
const SPEC_KEYS = new Set(['cniVersion', 'cniVersions', 'name', 'type', 'args', 'ipMasq', 'ipam', 'dns', 'capabilities',
  'runtimeConfig', 'prevResult', 'disableCheck', 'disableGC', 'cni.dev/valid-attachments']);
const OWN_KEYS = new Set(['bridge', 'isGateway', 'mtu', 'hook', 'portLock']);
const PORT_KEYS = new Set(['hostPort', 'containerPort', 'protocol', 'hostIP']);
const IFNAME_RE = /^(?!\.\.?$)[^/:\s]{1,15}$/;

const bad = (msg: string) => new CniError(CODES.INVALID_CONFIG, msg);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function port(v: unknown, what: string): number {
  if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 65535) throw bad(`${what} must be a port number 1-65535, got ${JSON.stringify(v)}`);
  return v as number;
}

function portMappings(rc: unknown): PortMapping[] {
  if (rc === undefined) return [];
  if (!isObject(rc)) throw bad('runtimeConfig must be an object');
  const list = rc.portMappings;
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw bad('runtimeConfig.portMappings must be an array');
  return list.map((p, i) => {
    const at = `runtimeConfig.portMappings[${i}]`;
    if (!isObject(p)) throw bad(`${at} must be an object`);
    for (const k of Object.keys(p)) if (!PORT_KEYS.has(k)) throw bad(`unknown field ${at}.${k} (known: ${[...PORT_KEYS].join(', ')})`);
    const protocol = String(p.protocol ?? 'tcp').toLowerCase();
    if (protocol !== 'tcp' && protocol !== 'udp') throw bad(`${at}.protocol must be tcp or udp, got ${JSON.stringify(p.protocol)}`);
    const hostIP = p.hostIP === undefined || p.hostIP === '' || p.hostIP === '0.0.0.0' ? undefined : p.hostIP;
    if (hostIP !== undefined && (typeof hostIP !== 'string' || !/^\d+\.\d+\.\d+\.\d+$/.test(hostIP))) {
      throw bad(`${at}.hostIP must be an IPv4 address, got ${JSON.stringify(p.hostIP)}`);
    }
    return { hostPort: port(p.hostPort, `${at}.hostPort`), containerPort: port(p.containerPort, `${at}.containerPort`), protocol, hostIP };
  });
}

/** Parses stdin's text into a checked configuration (codes 6, 1, 7). */
export function parseNetConf(text: string): NetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CniError(CODES.DECODING_FAILURE, `cannot decode the network configuration: ${(e as Error).message}`);
  }
  if (!isObject(raw)) throw new CniError(CODES.DECODING_FAILURE, 'the network configuration must be a JSON object');
  const cniVersion = checkVersion(raw.cniVersion); // first: an unknown version's fields may well be unknown
  for (const k of Object.keys(raw)) {
    if (!SPEC_KEYS.has(k) && !OWN_KEYS.has(k)) throw bad(`unknown field "${k}" in the network configuration (xdpnet knows: ${[...OWN_KEYS].join(', ')})`);
  }
  const str = (k: string, re: RegExp, what: string): string => {
    if (typeof raw[k] !== 'string' || !re.test(raw[k] as string)) throw bad(`${k} must be ${what}, got ${JSON.stringify(raw[k])}`);
    return raw[k] as string;
  };
  const name = str('name', /^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'a network name (letters, digits, _ . -)');
  const type = str('type', /^xdpnet$/, '"xdpnet"');
  const bridge = raw.bridge === undefined ? 'xn0' : str('bridge', /^[A-Za-z0-9_.-]{1,15}$/, 'an interface name of 1-15 characters');
  const bool = (k: string, dflt: boolean): boolean => {
    if (raw[k] === undefined) return dflt;
    if (typeof raw[k] !== 'boolean') throw bad(`${k} must be true or false, got ${JSON.stringify(raw[k])}`);
    return raw[k] as boolean;
  };
  const mtu = raw.mtu === undefined ? 1500 : raw.mtu;
  if (!Number.isInteger(mtu) || (mtu as number) < 576 || (mtu as number) > 65535) throw bad(`mtu must be an integer 576-65535, got ${JSON.stringify(raw.mtu)}`);
  const hook = raw.hook === undefined ? 'tc' : raw.hook;
  if (hook !== 'tc' && hook !== 'xdp') throw bad(`hook must be "tc" or "xdp", got ${JSON.stringify(raw.hook)}`);
  if (!isObject(raw.ipam) || typeof raw.ipam.type !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(raw.ipam.type)) {
    throw bad('ipam must be an object naming an IPAM plugin, e.g. {"type":"host-local","ranges":[[{"subnet":"10.89.0.0/24"}]]}');
  }
  if (raw.prevResult !== undefined && !isObject(raw.prevResult)) throw bad('prevResult must be an object');
  const cluster = raw.ipam.type === CLUSTER_IPAM ? clusterIpam(raw.ipam, raw.bridge) : undefined;
  return {
    cluster,
    cniVersion, name, type, bridge, mtu: mtu as number, hook,
    isGateway: bool('isGateway', true), ipMasq: bool('ipMasq', false), portLock: bool('portLock', true),
    ipam: raw.ipam as NetConf['ipam'], portMappings: portMappings(raw.runtimeConfig),
    prevResult: raw.prevResult as CniResult | undefined, raw,
  };
}

/** xdpnet's own IPAM: addresses of a cluster network (docs/cluster.md), from this host's agent. */
export const CLUSTER_IPAM = 'xdpnet-cluster';

function clusterIpam(ipam: Record<string, unknown>, bridge: unknown): NetConf['cluster'] {
  for (const k of Object.keys(ipam)) {
    if (!['type', 'network', 'socket'].includes(k)) throw bad(`unknown field ipam.${k} for ${CLUSTER_IPAM} (known: network, socket)`);
  }
  if (typeof ipam.network !== 'string' || !/^[a-z0-9][a-z0-9_.-]{0,31}$/.test(ipam.network)) {
    throw bad(`ipam.network must name a cluster network (see \`xdpnet network create\`), got ${JSON.stringify(ipam.network)}`);
  }
  if (ipam.socket !== undefined && (typeof ipam.socket !== 'string' || !ipam.socket.startsWith('/'))) {
    throw bad(`ipam.socket must be an absolute path, got ${JSON.stringify(ipam.socket)}`);
  }
  if (bridge !== undefined) throw bad(`bridge must be left out with ${CLUSTER_IPAM}: the network's bridge is the agent's (xnb<VNI>)`);
  return { network: ipam.network, socket: ipam.socket as string | undefined };
}

export type Command = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';

export interface CniEnv { command: Command; containerId: string; netns: string; ifname: string; args: string; path: string[] }

/** The CNI_* variables each command needs (code 4 naming the first one missing or malformed). */
export function parseEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = env.CNI_COMMAND;
  if (!command) throw new CniError(CODES.INVALID_ENV, 'CNI_COMMAND is not set (ADD, DEL, CHECK, VERSION, STATUS or GC)');
  if (!['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'].includes(command)) {
    throw new CniError(CODES.INVALID_ENV, `unknown CNI_COMMAND ${JSON.stringify(command)} (ADD, DEL, CHECK, VERSION, STATUS or GC)`);
  }
  const attachment = command === 'ADD' || command === 'DEL' || command === 'CHECK';
  // Only what the command uses is checked: runtimes fill the rest with anything (libcni validates with CNI_NETNS=dummy).
  const need = (k: string, when: boolean, re?: RegExp, what?: string): string => {
    const v = env[k] ?? '';
    if (when && !v) throw new CniError(CODES.INVALID_ENV, `${k} is not set: ${command} needs it`);
    if (v && re && attachment && !re.test(v)) throw new CniError(CODES.INVALID_ENV, `${k} ${JSON.stringify(v)} is not ${what}`);
    return v;
  };
  return {
    command: command as Command,
    containerId: need('CNI_CONTAINERID', attachment, /^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'a container id (letters, digits, _ . -)'),
    netns: need('CNI_NETNS', command === 'ADD' || command === 'CHECK', /^\//, 'an absolute path'),
    ifname: need('CNI_IFNAME', attachment, IFNAME_RE, 'an interface name (1-15 characters, no / : or space)'),
    args: env.CNI_ARGS ?? '',
    path: need('CNI_PATH', command !== 'VERSION', undefined).split(':').filter(Boolean),
  };
}
