// The L2 bridge's control plane. Its configuration lives in the instance's
// pinned maps, which the datapath reads on every frame (the maps are the
// source of truth; there is no config file):
//   xn_bridges  id → name, MAC, ageing, learned count    xn_ports    ifindex → bridge, PVID, flags
//   xn_vlans    (port, VLAN) → tagged or not             xn_flood    (bridge, VLAN) → member ports (tc floods)
//   xn_fdb      (bridge, VLAN, MAC) → port               xn_tx_ports ifindex → devmap slot + egress program (XDP)
// Every command validates all its input before it writes, so a refused
// command changes nothing.
import { execFileSync } from 'node:child_process';
import { mkdirSync, unlinkSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { XdpnetError, UsageError } from '../errors.js';
import { BRIDGE, DevmapVal, FloodKey, loadBridge, pinBridgeMaps, pinnedFdbSize, Port, PORT_FLAGS, Vlan, VlanKey } from '../objects/bridge.js';
import { u32 } from '../objects/codec.js';
import { BR_CACHE, cachePart, pinnedEntries } from '../objects/memory.js';
import type { InstancePaths } from '../objects/paths.js';
import { BPF_NOEXIST, numPossibleCpus } from '../sys/libbpf.js';
import { ifIndexToName, ifNameToIndex } from '../sys/libc.js';
import { checkVlan, formatMac, randomMac, VLAN_MIN } from './addr.js';
import { ipJson } from './host.js';
import { claimSlot, releaseSlotIfUnused } from './slots.js';
import { deleteLock, lockInfo, readLocks, writeLock, type PortLock, type PortLockInfo } from './port-lock.js';
import {
  bridgeByName, floodMembers, noBridge, overlay, readBridges, readMaps, readPorts, readVlans, setFloodMembers, withMaps, writeBridge,
  type Maps, type PortRec, type VlanMembership,
} from './bridge-maps.js';
import { addLocalEntry, deleteFdb, recountLearned } from './fdb.js';
import {
  attach, findAttachment, listAttachments, primaryAttachments, removeAttachment, removeInstanceIfIdle, resolveIface,
  type Attachment, type Hook, type XdpMode,
} from './attach.js';

export { forwardingChanged } from './bridge-maps.js';
export type { VlanMembership } from './bridge-maps.js';

export const DEFAULT_AGEING_SEC = 300;

export interface BridgeOptions {
  /** Unicast MAC (default: random, locally administered). */
  mac?: Buffer;
  /** CIDR for the bridge's host interface (named after the bridge), like docker0's 172.17.0.1/16. */
  address?: string;
  ageing?: number;
  /** 0: no limit. */
  maxLearned?: number;
  /** Active MAC pairs expected at once: sizes the instance's decision cache when given (see sizeBridgeCache). */
  flows?: number;
  /** Entries the instance's FDB holds (shared by its bridges; set when the first bridge creates it). */
  fdbSize?: number;
  netns?: string;
}

export interface PortOptions {
  hook: Hook;
  mode?: XdpMode;
  /** Untagged VLAN: the access VLAN, or a trunk's native VLAN. Default 1 unless trunk is given. */
  pvid?: number;
  /** Tagged VLANs. */
  trunk?: number[];
  netns?: string;
  /** The caller made iface as a veth with its peer in another namespace (a CNI container's): spares asking `ip`. */
  peerElsewhere?: boolean;
  /** Lock the port to this MAC and these addresses (anti-spoofing, bpf/lib/port_lock.h). */
  lock?: PortLock;
}

export interface PortInfo {
  iface: string | null; // null: the interface is gone
  ifindex: number;
  bridge: string;
  pvid: number | null;
  vlans: VlanMembership[];
  /** The port behind the bridge's host interface. */
  host: boolean;
  /** What the port may send from, when it is locked. */
  lock: PortLockInfo | null;
  hook: Hook | null;
  mode: XdpMode | null;
}

export interface BridgeInfo {
  name: string;
  id: number;
  mac: string;
  /** The host interface (named after the bridge), when it was created with an address. */
  hostIface: string | null;
  addresses: string[];
  ageing: number;
  maxLearned: number;
  learned: number;
  ports: PortInfo[];
}

// ---- bridges --------------------------------------------------------------

const NAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

/** The host side of a bridge's host interface is named after the bridge; its peer, the port, after the id. */
const hostPeerName = (id: number) => `xnp${id}`;

/** Bridge names double as interface names (the host interface), so they follow those rules. */
export function checkBridgeName(name: string): string {
  if (!NAME_RE.test(name) || name === '.' || name === '..') {
    throw new UsageError(`invalid bridge name '${name}': 1 to 15 characters from A-Z a-z 0-9 _ . -`);
  }
  return name;
}

export function addBridge(inst: InstancePaths, name: string, o: BridgeOptions = {}): BridgeInfo {
  checkBridgeName(name);
  const mac = o.mac ?? randomMac();
  const fdbSize = pinnedFdbSize(inst);
  if (o.fdbSize !== undefined && fdbSize !== undefined && o.fdbSize !== fdbSize) {
    // A BPF map cannot be resized, and the FDB is shared by the instance's bridges.
    throw new XdpnetError(`the FDB of ${inst.name} already holds ${fdbSize} entries; its size is set when the first bridge creates it`,
      'delete every bridge of the instance first, or leave out --fdb-size');
  }
  let id = 0;
  try {
    if (o.flows !== undefined) sizeBridgeCache(inst, o.flows, o.fdbSize);
    id = withMaps(inst, (m) => {
      const all = readBridges(m);
      if (all.some((b) => b.name === name)) throw new XdpnetError(`bridge ${name} already exists`, 'see `xdpnet bridge show`');
      const free = Array.from({ length: BRIDGE.limits.bridges }, (_, i) => i + 1).find((i) => !all.some((b) => b.id === i));
      if (!free) throw new XdpnetError(`cannot add bridge ${name}: all ${BRIDGE.limits.bridges} bridges are in use`);
      for (const dev of o.address ? [name, hostPeerName(free)] : []) {
        if (ifNameToIndex(dev)) throw new XdpnetError(`cannot create the host interface: interface ${dev} already exists`, `delete it, or add the bridge without --address`);
      }
      writeBridge(m, {
        id: free, name, mac, flags: 0, ageing_sec: o.ageing ?? DEFAULT_AGEING_SEC, max_learned: o.maxLearned ?? 0, learned: 0,
      }, BPF_NOEXIST);
      return free;
    }, { fdbSize: o.fdbSize })!;
  } catch (e) {
    removeInstanceIfIdle(inst); // the maps were pinned for nothing
    throw e;
  }
  if (o.address) {
    try {
      addHostIface(inst, name, id, mac, o.address, o.netns);
    } catch (e) {
      delBridge(inst, name, { force: true });
      throw e;
    }
  }
  return listBridges(inst).find((b) => b.name === name)!;
}

/**
 * Pins the instance's decision cache sized for `flows` (shared by all its
 * bridges). A BPF map cannot be resized: one of another size is replaced
 * while no port or uplink uses it, and refused otherwise.
 */
export function sizeBridgeCache(inst: InstancePaths, flows: number, fdbSize?: number): void {
  const cpus = numPossibleCpus();
  const want = cachePart(BR_CACHE, flows, cpus);
  const have = pinnedEntries(inst, BR_CACHE.map);
  if (have !== undefined && have !== want * cpus) {
    const users = listAttachments(inst);
    const size = (part: number) => `${part} entries (${(part * BR_CACHE.entryBytes) >> 10} KiB) a CPU`;
    if (users.length) {
      throw new XdpnetError(`the bridges' decision cache holds ${size(have / cpus)} and cannot become ${size(want)} while ports use it (${users.map((a) => a.iface ?? `ifindex ${a.ifindex}`).join(', ')})`,
        'omit --flows to keep its size, or detach every port and uplink of this instance first');
    }
    unlinkSync(join(inst.maps, BR_CACHE.map)); // no program holds it: the next load makes the new size
  }
  mkdirSync(inst.maps, { recursive: true });
  pinBridgeMaps(inst, { flows, fdbSize });
}

function run(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = (e as { stderr?: Buffer }).stderr?.toString().trim() || (e as Error).message;
    throw new XdpnetError(`${cmd} ${args.join(' ')} failed: ${err}`);
  }
}

/**
 * The bridge's own interface on the host, like docker0: a veth whose host side
 * carries the bridge's name, MAC and address, and whose peer is a port of the
 * bridge with a local FDB entry for the bridge MAC.
 */
function addHostIface(inst: InstancePaths, name: string, id: number, mac: Buffer, address: string, netns?: string): void {
  const peer = hostPeerName(id);
  run('ip', ['link', 'add', name, 'type', 'veth', 'peer', 'name', peer]);
  run('ip', ['link', 'set', name, 'address', formatMac(mac)]);
  // XDP ports redirect into the peer, and veth drops such frames unless this end runs NAPI (GRO).
  run('ethtool', ['-K', name, 'gro', 'on']);
  run('ip', ['addr', 'add', address, 'dev', name]);
  for (const dev of [peer, name]) run('ip', ['link', 'set', dev, 'up']);
  const { port } = addPort(inst, peer, name, { hook: 'tc', pvid: VLAN_MIN, netns }, PORT_FLAGS.HOST);
  withMaps(inst, (m) => addLocalEntry(m, id, mac, port.ifindex));
}

/**
 * Removes a bridge: refused while it has ports unless forced (then they are
 * detached); its FDB, flood lists and host interface go with it.
 */
export function delBridge(inst: InstancePaths, name: string, o: { force?: boolean } = {}): { ports: string[] } {
  const out = withMaps(inst, (m) => {
    const br = bridgeByName(m, name);
    const ports = readPorts(m).filter((p) => p.bridge === br.id);
    const userPorts = ports.filter((p) => !(p.flags & PORT_FLAGS.HOST));
    const names = userPorts.map((p) => ifIndexToName(p.ifindex) ?? `ifindex ${p.ifindex}`).sort();
    if (userPorts.length && !o.force) {
      throw new XdpnetError(`bridge ${name} still has ports: ${names.join(', ')}`, 'detach them first (xdpnet detach IFACE), or use --force');
    }
    overlay().removeBridgeVteps(inst, br.id, name, Boolean(o.force)); // refused without --force
    for (const p of ports) {
      const a = findAttachment(inst, p.ifindex);
      if (a) removeAttachment(inst, a);
      forgetPort(inst, m, p.ifindex);
    }
    deleteFdb(m, (k) => k.bridge === br.id);
    for (const k of m.flood.keys()) if (FloodKey.decode(k).bridge === br.id) m.flood.delete(k);
    return { ports: names, id: br.id };
  }) ?? noBridge(name);
  // Deleting the port end deletes the pair; by the name we chose, never an interface we did not make.
  const peer = ifNameToIndex(hostPeerName(out.id));
  if (peer) {
    // An `add --address` killed inside addPort can leave the host port's link or counter slot without
    // its port record, which is what the loop above frees them by (found by make crash's 100 trials).
    const a = findAttachment(inst, peer);
    if (a) removeAttachment(inst, a);
    releaseSlotIfUnused(inst, peer);
    run('ip', ['link', 'del', hostPeerName(out.id)]);
  }
  // The record last: a run killed before here still finds the bridge, and running it again finishes
  // (a record deleted first left the host interface behind for good: make test's crash trials).
  withMaps(inst, (m) => m.bridges.delete(u32(out.id)));
  removeInstanceIfIdle(inst);
  return { ports: out.ports };
}

/** A bridge's MAC, undefined when there is no such bridge: what listBridges says of it, without reading every port's link. */
export function bridgeMac(inst: InstancePaths, name: string): string | undefined {
  const mac = readMaps(inst, (m) => readBridges(m).find((b) => b.name === name)?.mac);
  return mac && formatMac(mac);
}

export function listBridges(inst: InstancePaths): BridgeInfo[] {
  return readMaps(inst, (m) => {
    const ports = portInfos(inst, m);
    let ifaces: ReturnType<typeof networkInterfaces> | undefined; // only for host ports: it lists every interface
    return readBridges(m).map((b) => {
      const own = ports.filter((p) => p.bridge === b.name);
      const hostIface = own.some((p) => p.host) ? b.name : null;
      const addresses = (hostIface && (ifaces ??= networkInterfaces())[hostIface]?.filter((a) => !(a.family === 'IPv6' && a.scopeid)).map((a) => a.cidr ?? a.address)) || [];
      return {
        name: b.name, id: b.id, mac: formatMac(b.mac), hostIface, addresses,
        ageing: b.ageing_sec, maxLearned: b.max_learned, learned: b.learned, ports: own,
      };
    });
  }) ?? [];
}

/** Each bridge's counts without naming its ports (metrics: a scrape of 1000 ports paid for the names). */
export function bridgeCounts(inst: InstancePaths): Array<{ name: string; learned: number; maxLearned: number; ports: number }> {
  return readMaps(inst, (m) => {
    const ports = readPorts(m);
    return readBridges(m).map((b) => ({
      name: b.name, learned: b.learned, maxLearned: b.max_learned, ports: ports.filter((p) => p.bridge === b.id).length,
    }));
  }) ?? [];
}

// ---- ports ----------------------------------------------------------------

function portInfos(inst: InstancePaths, m: Maps): PortInfo[] {
  const names = new Map(readBridges(m).map((b) => [b.id, b.name]));
  const vlans = readVlans(m);
  const links = primaryAttachments(inst);
  const locks = readLocks(inst);
  return readPorts(m)
    .map((p) => ({
      iface: ifIndexToName(p.ifindex) ?? null,
      ifindex: p.ifindex,
      bridge: names.get(p.bridge) ?? `#${p.bridge}`,
      pvid: p.pvid || null,
      vlans: vlans.get(p.ifindex) ?? [],
      host: Boolean(p.flags & PORT_FLAGS.HOST),
      lock: p.flags & PORT_FLAGS.LOCKED && locks.has(p.ifindex) ? lockInfo(locks.get(p.ifindex)!) : null,
      hook: links.get(p.ifindex)?.hook ?? null,
      mode: links.get(p.ifindex)?.mode ?? null,
    }))
    .sort((a, b) => a.bridge.localeCompare(b.bridge) || Number(a.host) - Number(b.host) || a.ifindex - b.ifindex);
}

export function listPorts(inst: InstancePaths): PortInfo[] {
  return readMaps(inst, (m) => portInfos(inst, m)) ?? [];
}

/** Whether the interface is a bridge port: one lookup, where listPorts names every port and reads every link. */
export function isPort(inst: InstancePaths, ifindex: number): boolean {
  return readMaps(inst, (m) => m.ports.lookup(u32(ifindex)) !== undefined) ?? false;
}

/** How many ports of a bridge are not its host port (one read of the ports map, no names, no links). */
export function bridgeUsers(inst: InstancePaths, bridge: string): number {
  return readMaps(inst, (m) => {
    const id = readBridges(m).find((b) => b.name === bridge)?.id;
    return readPorts(m).filter((p) => p.bridge === id && !(p.flags & PORT_FLAGS.HOST)).length;
  }) ?? 0;
}

/** The port's VLANs: untagged PVID (default 1 unless it is a trunk), then tagged trunk VLANs. */
function portVlans(o: PortOptions): { pvid: number; vlans: VlanMembership[] } {
  const pvid = o.pvid !== undefined ? checkVlan(o.pvid, 'PVID') : o.trunk ? 0 : VLAN_MIN;
  const tagged = [...new Set(o.trunk ?? [])].map((v) => checkVlan(v)).filter((v) => v !== pvid);
  const vlans = [...(pvid ? [{ vid: pvid, tagged: false }] : []), ...tagged.sort((a, b) => a - b).map((vid) => ({ vid, tagged: true }))];
  if (!vlans.length) throw new UsageError('a trunk port needs at least one VLAN', 'e.g. --trunk 10,20,30-40');
  return { pvid, vlans };
}

/**
 * Makes an interface a port of a bridge: validates everything, writes the
 * port's configuration with the egress program the attach loaded, then links
 * the ingress program (the configuration is undone if that fails).
 */
export function addPort(
  inst: InstancePaths, iface: string, bridge: string, o: PortOptions, flags: number = PORT_FLAGS.LEARNING,
): { port: PortInfo; attachment: Attachment } {
  const ifindex = resolveIface(iface, o.netns);
  const { pvid, vlans } = portVlans(o);
  // A port record without its link is what an attach killed between the two leaves: it forwards nothing, and
  // we hold the lock, so no attach is under way. It goes, and this attach does the work again.
  // Ports are looked up by ifindex, never listed: an attach costs the same beside ten ports as beside a thousand.
  if (!findAttachment(inst, ifindex)) withMaps(inst, (m) => (m.ports.lookup(u32(ifindex)) ? forgetPort(inst, m, ifindex) : undefined));
  const br = readMaps(inst, (m) => {
    const b = bridgeByName(m, bridge);
    const v = m.ports.lookup(u32(ifindex));
    if (v) {
      const owner = Port.decode(v);
      const of = readBridges(m).find((x) => x.id === owner.bridge)?.name ?? `#${owner.bridge}`;
      throw new XdpnetError(`${iface} is already attached to bridge ${of}`, `detach it first: xdpnet detach ${iface}`);
    }
    for (const { vid } of vlans) {
      if (floodMembers(m, b.id, vid).length >= BRIDGE.limits.floodMax) {
        throw new XdpnetError(`VLAN ${vid} of bridge ${bridge} already has ${BRIDGE.limits.floodMax} ports, the most one flood domain holds`,
          'put further ports in another VLAN or on another bridge');
      }
    }
    return b;
  }) ?? noBridge(bridge);

  let written = false;
  let attachment: Attachment;
  try {
    attachment = attach(inst, iface, {
      hook: o.hook, mode: o.mode, netns: o.netns,
      load: (i, hook) => {
        // XDP ports of overlay bridges hand floods to remote VTEPs and unresolved next hops to tc
        const slowPath = hook === 'xdp' && overlay().overlayVni(i, br.id) !== undefined;
        const loaded = loadBridge(i, hook, { slowPath });
        try {
          const slot = claimSlot(i, ifindex, { reset: true });
          const peer = (o.peerElsewhere ?? vethPeerElsewhere(iface)) ? PORT_FLAGS.PEER : 0;
          if (o.lock) writeLock(i, ifindex, o.lock); // before the flag: a locked port without its addresses passes nothing
          const locked = o.lock ? PORT_FLAGS.LOCKED : 0;
          withMaps(i, (m) => writePort(m, { ifindex, bridge: br.id, pvid, flags: flags | peer | locked, slot }, vlans, loaded.egress.fd));
          written = true;
          return { ...loaded, also: loaded.tc ? [{ hook: 'tc' as const, prog: loaded.tc }] : undefined };
        } catch (e) {
          loaded.close();
          throw e;
        }
      },
    });
  } catch (e) {
    if (written) withMaps(inst, (m) => forgetPort(inst, m, ifindex));
    deleteLock(inst, ifindex);
    throw e;
  }
  const port: PortInfo = {
    iface, ifindex, bridge, pvid: pvid || null, vlans: [...vlans].sort((a, b) => a.vid - b.vid), host: Boolean(flags & PORT_FLAGS.HOST), lock: o.lock ? lockInfo(o.lock) : null,
    hook: attachment.hook, mode: attachment.mode,
  };
  return { port, attachment };
}

/**
 * Locks a port to a MAC and addresses (null: unlocks it). The addresses are
 * written before the flag is set and deleted after it is cleared, so the
 * datapath never sees a locked port without them.
 */
export function setPortLock(inst: InstancePaths, iface: string, lock: PortLock | null, netns?: string): void {
  const ifindex = resolveIface(iface, netns);
  const port = readMaps(inst, (m) => readPorts(m).find((p) => p.ifindex === ifindex));
  if (!port) throw new XdpnetError(`${iface} is not a bridge port`, `attach it first: xdpnet attach ${iface} --bridge NAME`);
  if (port.flags & PORT_FLAGS.HOST) throw new XdpnetError(`${iface} is the host port of its bridge: it sends for the host and is never locked`);
  const { ifindex: _, ...rec } = port;
  if (lock) writeLock(inst, ifindex, lock);
  withMaps(inst, (m) => m.ports.update(u32(ifindex), Port.encode({ ...rec, flags: lock ? rec.flags | PORT_FLAGS.LOCKED : rec.flags & ~PORT_FLAGS.LOCKED })));
  if (!lock) deleteLock(inst, ifindex);
}

/** A veth whose peer is in another namespace (a container's): tc may deliver into the peer directly (XN_PORT_PEER). */
function vethPeerElsewhere(iface: string): boolean {
  const [l] = ipJson<Array<{ link_netnsid?: number; linkinfo?: { info_kind?: string } }>>(['-d', 'link', 'show', 'dev', iface], []);
  return l?.linkinfo?.info_kind === 'veth' && l.link_netnsid !== undefined;
}

function writePort(m: Maps, p: PortRec, vlans: VlanMembership[], egressFd: number): void {
  // A pure access port (its PVID only, untagged) spares the datapath a VLAN lookup per untagged frame.
  if (vlans.length === 1 && vlans[0].vid === p.pvid && !vlans[0].tagged) p = { ...p, flags: p.flags | PORT_FLAGS.ACCESS };
  for (const v of vlans) m.vlans.update(VlanKey.encode({ ifindex: p.ifindex, vid: v.vid, pad: 0 }), Vlan.encode({ untagged: v.tagged ? 0 : 1 }));
  m.ports.update(u32(p.ifindex), Port.encode(p));
  // Every port is in the devmap, whatever its hook: XDP ports forward and flood to all of them.
  m.txPorts.update(u32(p.ifindex), DevmapVal.encode({ ifindex: p.ifindex, prog_fd: egressFd }));
  for (const v of vlans) setFloodMembers(m, p.bridge, v.vid, [...floodMembers(m, p.bridge, v.vid).filter((x) => x !== p.ifindex), p.ifindex]);
}

/** Undoes writePort (and a lock) and drops the FDB entries that lead to the port (a static entry to a non-port is meaningless; a
 * remote MAC's ifindex only names the uplink, so those stay). */
function forgetPort(inst: InstancePaths, m: Maps, ifindex: number): void {
  const v = m.ports.lookup(u32(ifindex));
  if (!v) return;
  const { bridge } = Port.decode(v);
  const vids = (readVlans(m).get(ifindex) ?? []).map((x) => x.vid);
  // Nothing is sent to the port any more, then it stops being one.
  for (const vid of vids) setFloodMembers(m, bridge, vid, floodMembers(m, bridge, vid).filter((x) => x !== ifindex));
  m.txPorts.delete(u32(ifindex));
  m.ports.delete(u32(ifindex));
  deleteLock(inst, ifindex);
  for (const vid of vids) m.vlans.delete(VlanKey.encode({ ifindex, vid, pad: 0 }));
  deleteFdb(m, (_, e) => e.ifindex === ifindex && !e.remote);
}

/**
 * `xdpnet detach IFACE`: removes the link, and a bridge port leaves its
 * bridge. A bridge's host port goes only with its bridge.
 */
export function detachInterface(inst: InstancePaths, iface: string, netns?: string): { attachment?: Attachment; bridge?: string } {
  const ifindex = resolveIface(iface, netns);
  const port = readMaps(inst, (m) => {
    const v = m.ports.lookup(u32(ifindex));
    if (!v) return undefined;
    const p = Port.decode(v);
    return { host: Boolean(p.flags & PORT_FLAGS.HOST), bridge: readBridges(m).find((b) => b.id === p.bridge)?.name ?? `#${p.bridge}` };
  });
  if (port?.host) throw new XdpnetError(`${iface} is the host port of bridge ${port.bridge}`, `it goes with the bridge: xdpnet bridge del ${port.bridge}`);
  const vnis = overlay().vtepUplinks(inst).get(ifindex);
  if (vnis) throw new XdpnetError(`${iface} is the uplink of VTEP VNI ${vnis.join(', ')}`, `it goes with the VTEP: xdpnet vxlan del --vni ${vnis[0]}`);
  const attachment = findAttachment(inst, ifindex);
  if (!attachment && !port) throw new XdpnetError(`${iface} is not attached`, 'see what is attached with `xdpnet status`');
  leave(inst, ifindex, attachment);
  return { attachment, bridge: port?.bridge };
}

/** `xdpnet detach --all`: every interface but the bridges' host ports (they go with `bridge del`). */
export function detachAll(inst: InstancePaths): Attachment[] {
  const hostPorts = new Set(listPorts(inst).filter((p) => p.host).map((p) => p.ifindex));
  const uplinks = overlay().vtepUplinks(inst); // they go with their VTEPs (`vxlan del`, `bridge del`)
  const gone = [...primaryAttachments(inst).values()].filter((a) => !hostPorts.has(a.ifindex) && !uplinks.has(a.ifindex));
  for (const a of gone) leave(inst, a.ifindex, a);
  return gone;
}

/**
 * Ports and links whose interface is gone (a container's netns deleted without
 * a CNI DEL takes its veth pair along): `xdpnet daemon` reaps them, and
 * `xdpnet detach IFINDEX` removes one by hand. Returns the ifindexes removed.
 */
export function reapVanishedPorts(inst: InstancePaths, only?: number): number[] {
  const gone = new Set<number>();
  for (const a of primaryAttachments(inst).values()) if (a.iface === null) gone.add(a.ifindex);
  for (const p of listPorts(inst)) if (p.iface === null && !p.host) gone.add(p.ifindex);
  const hostPorts = new Set(listPorts(inst).filter((p) => p.host).map((p) => p.ifindex));
  const uplinks = overlay().vtepUplinks(inst);
  const reaped = [...gone].filter((i) => (only === undefined || i === only) && !hostPorts.has(i) && !uplinks.has(i));
  for (const i of reaped) leave(inst, i, findAttachment(inst, i));
  return reaped;
}

function leave(inst: InstancePaths, ifindex: number, a?: Attachment): void {
  if (a) removeAttachment(inst, a);
  withMaps(inst, (m) => {
    forgetPort(inst, m, ifindex);
    recountLearned(m);
  });
}

