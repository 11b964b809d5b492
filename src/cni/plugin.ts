// ADD, DEL, CHECK, STATUS and GC on top of the dataplane modules (bridge,
// ports, FDB, NAT): the plugin decides what a container needs and asks them for
// it; it has no datapath logic of its own. Every state change runs under the
// same per-instance lock (/run/xdpnet/NAME.lock) as the CLI's commands, so parallel runtime calls and
// CLI commands never interleave their read-modify-writes of the maps.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { addBridge, bridgeMac, bridgeUsers, delBridge, detachInterface, isPort, listBridges, listPorts, addPort, reapVanishedPorts, setPortLock } from '../dataplane/bridge.js';
import { parseLock } from '../dataplane/port-lock.js';
import { addFdb, listFdb } from '../dataplane/fdb.js';
import { enableForwarding, ensureBpffs, lockFile, lockState, requirePrivileges } from '../dataplane/host.js';
import { claimInstance, forgetIfGone, refuseSymlinks } from '../dataplane/hygiene.js';
import { parsePrefix } from '../dataplane/inet.js';
import { addPortmap, addSnat, delPortmap, delSnat, listSnat, portmapTarget, showNat } from '../dataplane/nat.js';
import { defaultDev, hostAddresses } from '../dataplane/nat-host.js';
import { portOverlay } from '../dataplane/vxlan.js';
import { instancePaths, type InstancePaths } from '../objects/paths.js';
import { ifIndexToName, ifNameToIndex } from '../sys/libc.js';
import { XdpnetError } from '../errors.js';
import type { CniEnv, NetConf, PortMapping } from './config.js';
import { delegateIpam, findPlugin, startIpam } from './ipam.js';
import { addressContainer, containerView, createVeth, deleteVeth, hostVethName, type Veth } from './link.js';
import { CODES, CniError, resultFor, type CniResult } from './spec.js';
import { StateStore, type Attachment } from './state.js';

/**
 * The instance whose maps this call changes: the host's, or that of the named
 * network namespace the runtime runs in (a runtime inside `ip netns` gets that
 * namespace's own bridges, as `xdpnet --netns NAME` would).
 */
export function ownInstance(): InstancePaths {
  const self = statSync('/proc/self/ns/net');
  const same = (p: string) => { try { const s = statSync(p); return s.ino === self.ino && s.dev === self.dev; } catch { return false; } };
  if (same('/proc/1/ns/net')) return instancePaths();
  let names: string[] = [];
  try { names = readdirSync('/var/run/netns'); } catch { /* none */ }
  const name = names.find((n) => same(join('/var/run/netns', n)));
  if (!name) throw new CniError(CODES.DATAPLANE, 'the plugin runs in a network namespace with no name', 'run the runtime in the host namespace or in one made with `ip netns add`');
  return instancePaths(name);
}

/** Runs fn with the state lock; a holder that keeps it over a minute makes the runtime try again later (code 11). */
export async function locked<T>(fn: (inst: InstancePaths, store: StateStore) => T | Promise<T>): Promise<T> {
  requirePrivileges();
  const inst = ownInstance();
  ensureBpffs();
  const release = lockState(inst.name, { timeoutMs: 60_000 });
  if (!release) throw new CniError(CODES.TRY_AGAIN_LATER, `another xdpnet command has held ${lockFile(inst.name)} for a minute`);
  try {
    // As every CLI command that changes state: refuse a planted symlink, drop state an earlier
    // namespace of this name left, and record this namespace's identity.
    refuseSymlinks(inst);
    claimInstance(inst);
    return await fn(inst, new StateStore(inst.name));
  } catch (e) {
    if (e instanceof XdpnetError) throw new CniError(CODES.DATAPLANE, e.message, e.hint);
    throw e;
  } finally {
    try {
      forgetIfGone(inst);
    } finally {
      release();
    }
  }
}

function setForwarding(iface: string): void {
  if (enableForwarding(iface) === 'failed') throw new CniError(CODES.DATAPLANE, `cannot set net.ipv4.conf.${iface}.forwarding=1`);
}

export const prefixOf = (cidr: string) => parsePrefix(cidr, 'address').text;

/** The interface that owns hostIP, for a mapping restricted to it (`hostIP`). */
function ifaceOf(hostIP: string): string {
  const ifindex = hostAddresses().byAddr.get(parsePrefix(hostIP, 'hostIP').addr);
  const name = ifindex && ifIndexToName(ifindex);
  if (!name) throw new CniError(CODES.INVALID_CONFIG, `hostIP ${hostIP} is not an address of this host`);
  return name;
}

const mappingArgs = (p: PortMapping) => ({ proto: p.protocol, port: String(p.hostPort), on: p.hostIP ? ifaceOf(p.hostIP) : undefined });

export function cmdAdd(conf: NetConf, env: CniEnv): Promise<CniResult> {
  return locked(async (inst, store) => {
    if (store.attachment(conf.name, env.containerId, env.ifname)) {
      throw new CniError(CODES.DATAPLANE, `container ${env.containerId} already has ${env.ifname} on network ${conf.name}`, 'DEL it first');
    }
    const a: Attachment = {
      network: conf.name, containerId: env.containerId, ifname: env.ifname, netns: env.netns, bridge: conf.bridge,
      hostIface: hostVethName(env.containerId, env.ifname), ifindex: 0, mac: '', address: '', subnet: '', portMappings: [],
    };
    // The IPAM plugin is a process start of its own: it runs while what needs no address (veth, port, FDB entry) is made.
    const allocation = startIpam('ADD', conf, env);
    let veth: Veth | undefined;
    let ipam: CniResult;
    try {
      if (bridgeMac(inst, conf.bridge)) veth = plugIn(inst, conf, a);
      ipam = (await allocation)!;
    } catch (e) {
      const allocated = await allocation.then(() => true, () => false);
      unwire(inst, store, a);
      if (allocated) delegateIpam('DEL', conf, env);
      throw e;
    }
    const ip = ipam.ips?.find((i) => !i.address.includes(':'));
    try {
      if (!ip) throw new CniError(CODES.IPAM, `IPAM ${conf.ipam.type} returned no IPv4 address`);
      a.address = ip.address;
      a.subnet = prefixOf(ip.address);
      if (!veth) {
        addOwnBridge(store, inst, conf, a, ip.gateway);
        veth = plugIn(inst, conf, a);
      }
      wire(inst, store, conf, a, ip.gateway, ipam);
    } catch (e) {
      unwire(inst, store, a);
      delegateIpam('DEL', conf, env);
      throw e;
    }
    store.saveAttachment(a);
    return addResult(inst, conf, a, ip!.gateway, ipam, veth.hostMac);
  });
}

/** ADD's answer: the bridge, the host end and the container end, and the address on the last. */
export function addResult(inst: InstancePaths, conf: NetConf, a: Attachment, gateway: string | undefined,
  ipam: Pick<CniResult, 'routes' | 'dns'>, hostMac: string): CniResult {
  const prev = conf.prevResult?.interfaces ?? [];
  return resultFor(conf.cniVersion, {
    interfaces: [...prev, { name: conf.bridge, mac: bridgeMac(inst, conf.bridge) }, { name: a.hostIface, mac: hostMac },
      { name: a.ifname, mac: a.mac, sandbox: a.netns }],
    ips: [...(conf.prevResult?.ips ?? []), { address: a.address, gateway, interface: prev.length + 2 }],
    routes: ipam.routes ?? [],
    dns: ipam.dns ?? conf.prevResult?.dns ?? {},
  });
}

/** The first ADD on a bridge that does not exist makes it, with the IPAM gateway on its host interface. */
function addOwnBridge(store: StateStore, inst: InstancePaths, conf: NetConf, a: Attachment, gateway: string | undefined): void {
  if (conf.isGateway && !gateway) throw new CniError(CODES.IPAM, `IPAM ${conf.ipam.type} gave no gateway, and isGateway needs one`);
  addBridge(inst, conf.bridge, { address: conf.isGateway ? `${gateway}/${a.address.split('/')[1]}` : undefined });
  store.saveBridge({ bridge: conf.bridge });
}

/**
 * ADD's changes, in order; each is recorded in `a` as it is made so that
 * unwire() undoes exactly what was done. plugIn: what needs no address (the
 * veth, the port on the bridge, the static FDB entry).
 */
export function plugIn(inst: InstancePaths, conf: NetConf, a: Attachment): Veth {
  const mtu = portOverlay(inst, conf.bridge)?.innerMtu ?? conf.mtu;
  const veth = createVeth(a.hostIface, a.netns, { ifname: a.ifname, mtu, xdpPort: conf.hook === 'xdp', mac: a.mac || undefined });
  a.mac = veth.mac;
  a.ifindex = veth.ifindex;
  addPort(inst, a.hostIface, conf.bridge, { hook: conf.hook, peerElsewhere: true });
  addFdb(inst, { mac: Buffer.from(a.mac.split(':').map((x) => parseInt(x, 16))), bridge: conf.bridge, port: a.hostIface });
  return veth;
}

/** Then what needs the address: forwarding, masquerade, the container's address and routes, the port mappings. */
export function wire(inst: InstancePaths, store: StateStore, conf: NetConf, a: Attachment, gateway: string | undefined, ipam: Pick<CniResult, 'routes'>): void {
  const owned = store.ownedBridge(conf.bridge);
  // before the container has its address: it never sends from another
  if (conf.portLock) setPortLock(inst, a.hostIface, parseLock(a.mac, a.address.split('/')[0], 'IPAM address'));
  if (conf.isGateway) setForwarding(conf.bridge);
  if (conf.ipMasq) {
    const out = defaultDev();
    if (!out) throw new CniError(CODES.DATAPLANE, 'ipMasq needs a default route: there is none to masquerade out of');
    if (!listSnat(inst).some((r) => r.src === a.subnet && r.out === out)) {
      addSnat(inst, 'masquerade', { src: a.subnet, out, in: conf.bridge });
      if (owned) store.saveBridge({ ...owned, masquerade: { src: a.subnet, out } });
    }
    setForwarding(out);
  }
  addressContainer(a.netns, { ifname: a.ifname, address: a.address, gateway, routes: (ipam.routes ?? []).filter((r) => !r.dst.includes(':')) });
  const ip = a.address.split('/')[0];
  for (const p of conf.portMappings) {
    addPortmap(inst, { ...mappingArgs(p), to: `${ip}:${p.containerPort}` });
    a.portMappings.push(p);
  }
}

/** Undoes an attachment; whatever is already gone is skipped (DEL is idempotent, and this also rolls back a failed ADD). */
export function unwire(inst: InstancePaths, store: StateStore, a: Attachment): void {
  const ip = a.address.split('/')[0];
  for (const p of a.portMappings) {
    const args = mappingArgs(p);
    // only while it still leads to this container: the port may have been mapped again since
    if (portmapTarget(inst, args) === `${ip}:${p.containerPort}`) delPortmap(inst, args);
  }
  const ifindex = ifNameToIndex(a.hostIface);
  if (ifindex) {
    if (isPort(inst, ifindex)) detachInterface(inst, a.hostIface);
    deleteVeth(a.hostIface);
  } else if (a.ifindex) {
    reapVanishedPorts(inst, a.ifindex); // the netns went first and took the pair along
  }
  const owned = store.ownedBridge(a.bridge);
  if (owned && !bridgeUsers(inst, a.bridge) && bridgeMac(inst, a.bridge)) {
    // the last container left a bridge the plugin made: nothing of the network stays behind
    if (owned.masquerade && listSnat(inst).some((r) => r.src === owned.masquerade!.src && r.out === owned.masquerade!.out)) {
      delSnat(inst, 'masquerade', owned.masquerade);
    }
    delBridge(inst, a.bridge);
    store.dropBridge(a.bridge);
  }
}

export function cmdDel(conf: NetConf, env: CniEnv): Promise<void> {
  return locked((inst, store) => {
    const a = store.attachment(conf.name, env.containerId, env.ifname) ?? {
      // no record (ADD failed or never ran, or /run was wiped): remove what the names say
      network: conf.name, containerId: env.containerId, ifname: env.ifname, netns: env.netns, bridge: conf.bridge,
      hostIface: hostVethName(env.containerId, env.ifname), ifindex: 0, mac: '', address: '0.0.0.0/32', subnet: '', portMappings: [],
    };
    unwire(inst, store, a);
    delegateIpam('DEL', conf, env);
    store.dropAttachment(conf.name, env.containerId, env.ifname);
  });
}

export function cmdCheck(conf: NetConf, env: CniEnv): Promise<void> {
  return locked((inst, store) => {
    const fail = (msg: string) => { throw new CniError(CODES.CHECK_FAILED, msg); };
    const a = store.attachment(conf.name, env.containerId, env.ifname);
    if (!a) throw new CniError(CODES.UNKNOWN_CONTAINER, `container ${env.containerId} has no ${env.ifname} on network ${conf.name}`);
    delegateIpam('CHECK', conf, env);
    if (!ifNameToIndex(a.hostIface)) fail(`host interface ${a.hostIface} is missing`);
    const port = listPorts(inst).find((p) => p.iface === a.hostIface);
    if (!port || port.bridge !== a.bridge) fail(`${a.hostIface} is not a port of bridge ${a.bridge}`);
    if (!port!.hook) fail(`${a.hostIface} is a port of ${a.bridge} but no program is attached to it`);
    const ip = a.address.split('/')[0];
    if (conf.portLock && (port!.lock?.mac !== a.mac || port!.lock.ips.join() !== ip)) fail(`${a.hostIface} is not locked to ${a.mac} ${ip}`);
    if (!listFdb(inst, { bridge: a.bridge, port: a.hostIface }).some((r) => r.mac === a.mac && r.type === 'static')) {
      fail(`the static FDB entry for ${a.mac} on ${a.hostIface} is missing`);
    }
    const c = containerView(env.netns, env.ifname);
    if (!c) fail(`interface ${env.ifname} is missing in ${env.netns}`);
    if (c!.mac !== a.mac) fail(`${env.ifname} has MAC ${c!.mac}, not ${a.mac}`);
    if (!c!.addrs.includes(a.address)) fail(`${env.ifname} lacks its address ${a.address}`);
    const gw = listBridges(inst).find((b) => b.name === a.bridge)?.addresses.find((x) => !x.includes(':'))?.split('/')[0];
    if (gw && !c!.routes.some((r) => r.dst === 'default' && r.gateway === gw)) fail(`${env.ifname} has no default route via ${gw}`);
    if (conf.ipMasq && !showNat(inst).snat.some((r) => r.kind === 'masquerade' && r.src === a.subnet)) fail(`no masquerade rule for ${a.subnet}`);
    const mapped = showNat(inst).portmaps;
    for (const p of a.portMappings) {
      if (!mapped.some((m) => m.proto === p.protocol && m.port === p.hostPort && m.to === `${ip}:${p.containerPort}`)) {
        fail(`port mapping ${p.protocol} ${p.hostPort} -> ${ip}:${p.containerPort} is missing`);
      }
    }
  });
}

/** STATUS (1.1): ready when the IPAM plugin is there and the host can run the dataplane. */
export function cmdStatus(conf: NetConf, env: CniEnv): void {
  try {
    if (!conf.cluster) findPlugin(conf.ipam.type, env.path); // a cluster's agent is checked by cni/cluster.ts
    requirePrivileges();
    ensureBpffs();
  } catch (e) {
    throw new CniError(CODES.NOT_AVAILABLE, `xdpnet cannot add containers now: ${(e as Error).message}`);
  }
}

/** GC (1.1): removes this network's attachments that the runtime no longer lists, and their IPAM allocations. */
export function cmdGc(conf: NetConf, env: CniEnv): Promise<void> {
  const valid = conf.raw['cni.dev/valid-attachments'];
  if (!Array.isArray(valid)) throw new CniError(CODES.INVALID_CONFIG, 'GC needs cni.dev/valid-attachments (a list of {containerID, ifname})');
  const keep = new Set(valid.map((v: { containerID?: string; ifname?: string }) => `${v.containerID}/${v.ifname}`));
  return locked((inst, store) => {
    for (const a of store.attachments(conf.name)) {
      if (keep.has(`${a.containerId}/${a.ifname}`)) continue;
      unwire(inst, store, a);
      delegateIpam('DEL', conf, { ...env, containerId: a.containerId, ifname: a.ifname }, undefined);
      store.dropAttachment(conf.name, a.containerId, a.ifname);
    }
  });
}

