// The L2 bridge's control plane. Its configuration lives in the instance's
// pinned maps, which the datapath reads on every frame (the maps are the
// source of truth; there is no config file):
//   xn_bridges  id → name, MAC, ageing, learned count    xn_ports    ifindex → bridge, PVID, flags
//   xn_vlans    (port, VLAN) → tagged or not             xn_flood    (bridge, VLAN) → member ports (tc floods)
//   xn_fdb      (bridge, VLAN, MAC) → port               xn_tx_ports ifindex → devmap slot + egress program (XDP)
// Every command validates all its input before it writes, so a refused
// command changes nothing.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { XdpnetError, UsageError } from '../errors.js';
import {
  BR_GEN_MAP, Bridge, BRIDGE, invalidateCache, decodeFloodList, DevmapVal, FDB_FLAGS, FdbEntry, FdbKey, FloodKey, floodList, loadBridge,
  pinBridgeMaps, Port, PORT_FLAGS, Vlan, VlanKey,
} from '../objects/bridge.js';
import { cString, u32, numToIpv4 } from '../objects/codec.js';
import type { InstancePaths } from '../objects/paths.js';
import { BPF_NOEXIST, BpfMap } from '../sys/libbpf.js';
import { ifIndexToName, ifNameToIndex } from '../sys/libc.js';
import { checkVlan, formatMac, formatVlanList, parseMac, parseMacInto, randomMac, unicastMacProblem, VLAN_MIN } from './addr.js';
import { ipJson } from './host.js';
import { claimSlot } from './slots.js';
import { overlayVni, remoteFdbTarget, removeBridgeVteps, syncPeers, vtepUplinks } from './vxlan.js';
import {
  attach, findAttachment, primaryAttachments, removeAttachment, removeInstanceIfIdle, resolveIface,
  type Attachment, type Hook, type XdpMode,
} from './attach.js';

export const DEFAULT_AGEING_SEC = 300;
const NS_PER_SEC = 1_000_000_000n;

export interface BridgeOptions {
  /** Unicast MAC (default: random, locally administered). */
  mac?: Buffer;
  /** CIDR for the bridge's host interface (named after the bridge), like docker0's 172.17.0.1/16. */
  address?: string;
  ageing?: number;
  /** 0: no limit. */
  maxLearned?: number;
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
}

export interface VlanMembership {
  vid: number;
  tagged: boolean;
}

export interface PortInfo {
  iface: string | null; // null: the interface is gone
  ifindex: number;
  bridge: string;
  pvid: number | null;
  vlans: VlanMembership[];
  /** The port behind the bridge's host interface. */
  host: boolean;
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

export type FdbType = 'static' | 'learned' | 'local';

export interface FdbRow {
  mac: string;
  bridge: string;
  port: string | null;
  ifindex: number;
  vlan: number;
  type: FdbType;
  /** Seconds since learned or refreshed; null for static and local entries. */
  age: number | null;
  /** A learned entry older than the bridge's ageing: the datapath ignores it until it is relearned or aged out. */
  expired: boolean;
  /** The VTEP the MAC is behind (overlay); null for a local port. */
  remote: string | null;
}

export interface FdbEntryInput {
  mac: Buffer;
  bridge: string;
  /** The local port the MAC is behind; or remote: */
  port?: string;
  /** The remote VTEP (IPv4) the MAC is behind, on an overlay bridge (`fdb add --remote`). */
  remote?: string;
  /** Default: the port's PVID, else 1. */
  vlan?: number;
}

// ---- the maps -------------------------------------------------------------

type Maps = Record<keyof typeof BRIDGE.maps, BpfMap>;
type BridgeRec = Omit<ReturnType<typeof Bridge.decode>, 'name'> & { id: number; name: string };
type PortRec = ReturnType<typeof Port.decode> & { ifindex: number };
type FdbKeyRec = ReturnType<typeof FdbKey.decode>;
type FdbEntryRec = ReturnType<typeof FdbEntry.decode>;

/**
 * Runs fn with the instance's bridge maps; undefined when the instance has
 * none (so reading never creates state). `create` pins them first: the
 * bridge object's maps, loaded without programs.
 */
/** The bridge maps, for reading only. */
function readMaps<T>(inst: InstancePaths, fn: (m: Maps) => T): T | undefined {
  return BpfMap.usePins(inst.maps, BRIDGE.maps, fn);
}

/** The bridge maps, for changing: the datapath's cached decisions are invalidated after (even a failed change). */
function withMaps<T>(inst: InstancePaths, fn: (m: Maps) => T, create = false): T | undefined {
  if (create) {
    mkdirSync(inst.maps, { recursive: true });
    pinBridgeMaps(inst);
  }
  try {
    return readMaps(inst, fn);
  } finally {
    forwardingChanged(inst);
  }
}

/** Invalidates the datapath's cached known-unicast decisions: after any change to the bridge maps. */
export function forwardingChanged(inst: InstancePaths): void {
  BpfMap.usePin(join(inst.maps, BR_GEN_MAP), invalidateCache);
}

function noBridge(name: string): never {
  throw new XdpnetError(`bridge ${name} not found`, 'list bridges with `xdpnet bridge show`; create one with `xdpnet bridge add NAME`');
}

function readBridges(m: Maps): BridgeRec[] {
  return m.bridges.entries()
    .map(([k, v]) => {
      const b = Bridge.decode(v);
      return { ...b, id: k.readUInt32LE(0), name: cString(b.name) };
    })
    .sort((a, b) => a.id - b.id);
}

function bridgeByName(m: Maps, name: string): BridgeRec {
  return readBridges(m).find((b) => b.name === name) ?? noBridge(name);
}

function writeBridge(m: Maps, b: BridgeRec, flags = 0): void {
  m.bridges.update(u32(b.id), Bridge.encode({ ...b, name: Buffer.from(b.name) }), flags);
}

function readPorts(m: Maps): PortRec[] {
  return m.ports.entries().map(([k, v]) => ({ ...Port.decode(v), ifindex: k.readUInt32LE(0) }));
}

/** VLAN memberships by port ifindex, sorted by VLAN. */
function readVlans(m: Maps): Map<number, VlanMembership[]> {
  const out = new Map<number, VlanMembership[]>();
  for (const [k, v] of m.vlans.entries()) {
    const { ifindex, vid } = VlanKey.decode(k);
    const list = out.get(ifindex) ?? out.set(ifindex, []).get(ifindex)!;
    list.push({ vid, tagged: !Vlan.decode(v).untagged });
  }
  for (const list of out.values()) list.sort((a, b) => a.vid - b.vid);
  return out;
}

const floodKey = (bridge: number, vid: number) => FloodKey.encode({ bridge, vid, pad: 0 });

function floodMembers(m: Maps, bridge: number, vid: number): number[] {
  const v = m.flood.lookup(floodKey(bridge, vid));
  return v ? decodeFloodList(v) : [];
}

/** Rewrites one flood list; the datapath sees the old or the new list, never a mix. */
function setFloodMembers(m: Maps, bridge: number, vid: number, members: number[]): void {
  if (members.length) m.flood.update(floodKey(bridge, vid), floodList(members));
  else m.flood.delete(floodKey(bridge, vid));
}

const isLearned = (e: FdbEntryRec) => !(e.flags & (FDB_FLAGS.STATIC | FDB_FLAGS.LOCAL));
const ageNs = (e: FdbEntryRec, now: bigint) => (now > e.updated_ns ? now - e.updated_ns : 0n);
/** As the datapath decides it: a learned entry counts while now - updated <= ageing. */
const isExpired = (e: FdbEntryRec, ageingSec: number, now: bigint) => isLearned(e) && ageNs(e, now) > BigInt(ageingSec) * NS_PER_SEC;

/** Static entries carry the time they were written (shown nowhere, but a real CLOCK_MONOTONIC time). */
const staticEntry = (ifindex: number, flags: number = FDB_FLAGS.STATIC, remote = 0) =>
  ({ ifindex, remote, updated_ns: process.hrtime.bigint(), flags, ageing_sec: 0 });

function deleteFdb(m: Maps, match: (k: FdbKeyRec, e: FdbEntryRec) => boolean): number {
  const keys = m.fdb.entries().filter(([k, v]) => match(FdbKey.decode(k), FdbEntry.decode(v))).map(([k]) => k);
  if (keys.length) m.fdb.deleteBatch(Buffer.concat(keys), keys.length);
  return keys.length;
}

/**
 * Sets each bridge's learned count to what its FDB holds. The datapath only
 * ever adds to it, so the control process recounts after removing entries
 * (a learn racing this write can be missed until the next recount).
 */
function recountLearned(m: Maps): void {
  const counts = new Map<number, number>();
  for (const [k, v] of m.fdb.entries()) {
    const { bridge } = FdbKey.decode(k);
    if (isLearned(FdbEntry.decode(v))) counts.set(bridge, (counts.get(bridge) ?? 0) + 1);
  }
  for (const b of readBridges(m)) {
    const n = counts.get(b.id) ?? 0;
    if (n !== b.learned) writeBridge(m, { ...b, learned: n });
  }
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
  let id = 0;
  try {
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
    }, true)!;
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
  withMaps(inst, (m) => m.fdb.update(FdbKey.encode({ bridge: id, vid: VLAN_MIN, mac }),
    FdbEntry.encode(staticEntry(port.ifindex, FDB_FLAGS.STATIC | FDB_FLAGS.LOCAL))));
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
    removeBridgeVteps(inst, br.id, name, Boolean(o.force)); // refused without --force
    for (const p of ports) {
      const a = findAttachment(inst, p.ifindex);
      if (a) removeAttachment(inst, a);
      forgetPort(m, p.ifindex);
    }
    deleteFdb(m, (k) => k.bridge === br.id);
    for (const k of m.flood.keys()) if (FloodKey.decode(k).bridge === br.id) m.flood.delete(k);
    m.bridges.delete(u32(br.id));
    return { ports: names, id: br.id };
  }) ?? noBridge(name);
  // Deleting the port end deletes the pair; by the name we chose, never an interface we did not make.
  if (ifNameToIndex(hostPeerName(out.id))) run('ip', ['link', 'del', hostPeerName(out.id)]);
  removeInstanceIfIdle(inst);
  return { ports: out.ports };
}

export function listBridges(inst: InstancePaths): BridgeInfo[] {
  return readMaps(inst, (m) => {
    const ports = portInfos(inst, m);
    const ifaces = networkInterfaces();
    return readBridges(m).map((b) => {
      const own = ports.filter((p) => p.bridge === b.name);
      const hostIface = own.some((p) => p.host) ? b.name : null;
      const addresses = (hostIface && ifaces[hostIface]?.filter((a) => !(a.family === 'IPv6' && a.scopeid)).map((a) => a.cidr ?? a.address)) || [];
      return {
        name: b.name, id: b.id, mac: formatMac(b.mac), hostIface, addresses,
        ageing: b.ageing_sec, maxLearned: b.max_learned, learned: b.learned, ports: own,
      };
    });
  }) ?? [];
}

// ---- ports ----------------------------------------------------------------

function portInfos(inst: InstancePaths, m: Maps): PortInfo[] {
  const names = new Map(readBridges(m).map((b) => [b.id, b.name]));
  const vlans = readVlans(m);
  const links = primaryAttachments(inst);
  return readPorts(m)
    .map((p) => ({
      iface: ifIndexToName(p.ifindex) ?? null,
      ifindex: p.ifindex,
      bridge: names.get(p.bridge) ?? `#${p.bridge}`,
      pvid: p.pvid || null,
      vlans: vlans.get(p.ifindex) ?? [],
      host: Boolean(p.flags & PORT_FLAGS.HOST),
      hook: links.get(p.ifindex)?.hook ?? null,
      mode: links.get(p.ifindex)?.mode ?? null,
    }))
    .sort((a, b) => a.bridge.localeCompare(b.bridge) || Number(a.host) - Number(b.host) || a.ifindex - b.ifindex);
}

export function listPorts(inst: InstancePaths): PortInfo[] {
  return readMaps(inst, (m) => portInfos(inst, m)) ?? [];
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
  const br = readMaps(inst, (m) => {
    const b = bridgeByName(m, bridge);
    const owner = readPorts(m).find((p) => p.ifindex === ifindex);
    if (owner) {
      const of = readBridges(m).find((x) => x.id === owner.bridge)?.name ?? `#${owner.bridge}`;
      throw new XdpnetError(`${iface} is already a port of bridge ${of}`, `detach it first: xdpnet detach ${iface}`);
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
        const overlay = hook === 'xdp' && overlayVni(i, br.id) !== undefined;
        const loaded = loadBridge(i, hook, { slowPath: overlay });
        try {
          const slot = claimSlot(i, ifindex, { reset: true });
          const peer = vethPeerElsewhere(iface) ? PORT_FLAGS.PEER : 0;
          withMaps(i, (m) => writePort(m, { ifindex, bridge: br.id, pvid, flags: flags | peer, slot }, vlans, loaded.egress.fd));
          written = true;
          return { ...loaded, also: loaded.tc ? [{ hook: 'tc' as const, prog: loaded.tc }] : undefined };
        } catch (e) {
          loaded.close();
          throw e;
        }
      },
    });
  } catch (e) {
    if (written) withMaps(inst, (m) => forgetPort(m, ifindex));
    throw e;
  }
  return { port: listPorts(inst).find((p) => p.ifindex === ifindex)!, attachment };
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

/** Undoes writePort and drops the FDB entries that lead to the port (a static entry to a non-port is meaningless; a
 * remote MAC's ifindex only names the uplink, so those stay). */
function forgetPort(m: Maps, ifindex: number): void {
  const v = m.ports.lookup(u32(ifindex));
  if (!v) return;
  const { bridge } = Port.decode(v);
  const vids = (readVlans(m).get(ifindex) ?? []).map((x) => x.vid);
  // Nothing is sent to the port any more, then it stops being one.
  for (const vid of vids) setFloodMembers(m, bridge, vid, floodMembers(m, bridge, vid).filter((x) => x !== ifindex));
  m.txPorts.delete(u32(ifindex));
  m.ports.delete(u32(ifindex));
  for (const vid of vids) m.vlans.delete(VlanKey.encode({ ifindex, vid, pad: 0 }));
  deleteFdb(m, (_, e) => e.ifindex === ifindex && !e.remote);
}

/**
 * `xdpnet detach IFACE`: removes the link, and a bridge port leaves its
 * bridge. A bridge's host port goes only with its bridge.
 */
export function detachInterface(inst: InstancePaths, iface: string, netns?: string): { attachment?: Attachment; bridge?: string } {
  const ifindex = resolveIface(iface, netns);
  const port = listPorts(inst).find((p) => p.ifindex === ifindex);
  if (port?.host) throw new XdpnetError(`${iface} is the host port of bridge ${port.bridge}`, `it goes with the bridge: xdpnet bridge del ${port.bridge}`);
  const vnis = vtepUplinks(inst).get(ifindex);
  if (vnis) throw new XdpnetError(`${iface} is the uplink of VTEP VNI ${vnis.join(', ')}`, `it goes with the VTEP: xdpnet vxlan del --vni ${vnis[0]}`);
  const attachment = findAttachment(inst, ifindex);
  if (!attachment && !port) throw new XdpnetError(`${iface} is not attached`, 'see what is attached with `xdpnet status`');
  leave(inst, ifindex, attachment);
  return { attachment, bridge: port?.bridge };
}

/** `xdpnet detach --all`: every interface but the bridges' host ports (they go with `bridge del`). */
export function detachAll(inst: InstancePaths): Attachment[] {
  const hostPorts = new Set(listPorts(inst).filter((p) => p.host).map((p) => p.ifindex));
  const uplinks = vtepUplinks(inst); // they go with their VTEPs (`vxlan del`, `bridge del`)
  const gone = [...primaryAttachments(inst).values()].filter((a) => !hostPorts.has(a.ifindex) && !uplinks.has(a.ifindex));
  for (const a of gone) leave(inst, a.ifindex, a);
  return gone;
}

function leave(inst: InstancePaths, ifindex: number, a?: Attachment): void {
  if (a) removeAttachment(inst, a);
  withMaps(inst, (m) => {
    forgetPort(m, ifindex);
    recountLearned(m);
  });
}

// ---- the FDB --------------------------------------------------------------

/**
 * Validates FDB rows against the bridges, ports and VLANs as they are now
 * (read once, so a bulk load checks every row cheaply) and returns the key.
 */
/** Resolves entries' (bridge, port, VLAN); checks the MAC unless it is left out (`fdb load` checks it in place). */
function fdbTargets(m: Maps, netns?: string): (e: Omit<FdbEntryInput, 'mac'> & { mac?: Buffer }) => { key: FdbKeyRec; ifindex: number; bridgeMac: Buffer } {
  const bridges = new Map(readBridges(m).map((b) => [b.name, b]));
  const ports = new Map(readPorts(m).map((p) => [p.ifindex, p]));
  const vlans = readVlans(m);
  const ifindexes = new Map<string, number>();
  return (e) => {
    const br = bridges.get(e.bridge) ?? noBridge(e.bridge);
    if (e.port === undefined) throw new UsageError('an FDB entry needs a port (--port) or a remote VTEP (--remote)');
    const ifindex = ifindexes.get(e.port) ?? ifindexes.set(e.port, resolveIface(e.port, netns)).get(e.port)!;
    const port = ports.get(ifindex);
    if (port?.bridge !== br.id) throw new XdpnetError(`${e.port} is not a port of bridge ${e.bridge}`, `make it one: xdpnet attach ${e.port} --bridge ${e.bridge}`);
    const vid = e.vlan === undefined ? port.pvid || VLAN_MIN : checkVlan(e.vlan);
    const member = vlans.get(ifindex) ?? [];
    if (!member.some((v) => v.vid === vid)) {
      throw new XdpnetError(`${e.port} is not in VLAN ${vid}`, `its VLANs: ${formatVlanList(member.map((v) => v.vid))}; name one with --vlan`);
    }
    if (e.mac) checkNotBridgeMac(e.mac, br.mac, e.bridge);
    return { key: { bridge: br.id, vid, mac: e.mac ?? Buffer.alloc(6) }, ifindex, bridgeMac: br.mac };
  };
}

function checkNotBridgeMac(mac: Buffer, bridgeMac: Buffer, bridge: string): void {
  if (mac.equals(bridgeMac)) throw new XdpnetError(`${formatMac(mac)} is bridge ${bridge}'s own MAC address`, 'its local entry goes with the bridge');
}

/** Adds (or replaces) a static entry: never aged, never moved by learning. */
export function addFdb(inst: InstancePaths, e: FdbEntryInput, netns?: string): FdbRow {
  return withMaps(inst, (m) => {
    let t: { key: FdbKeyRec; ifindex: number; remote?: number; vni?: number };
    if (e.remote === undefined) t = fdbTargets(m, netns)(e);
    else {
      const br = bridgeByName(m, e.bridge);
      if (e.mac.equals(br.mac)) throw new XdpnetError(`${formatMac(e.mac)} is bridge ${e.bridge}'s own MAC address`, 'its local entry goes with the bridge');
      t = remoteFdbTarget(inst, br.id, e.bridge, e.mac, e.remote, e.vlan);
    }
    const key = FdbKey.encode(t.key);
    m.fdb.update(key, FdbEntry.encode(staticEntry(t.ifindex, FDB_FLAGS.STATIC, t.remote)));
    if (t.vni !== undefined) syncPeers(inst); // decap without learning accepts the VTEP now
    recountLearned(m); // it may have replaced a learned entry
    return fdbRows(m).find((r) => r.key.equals(key))!.row;
  }) ?? noBridge(e.bridge);
}

/**
 * Makes a bridge VLAN's static entries behind remote VTEPs exactly `want`
 * (MAC string -> VTEP address as a number), in one pass over the FDB: the
 * cluster agent's bulk write. uplink is the VTEP's uplink ifindex (shown only).
 * Returns what changed; the caller syncs the VNI's accepted peers.
 */
export function syncRemoteFdb(inst: InstancePaths, bridge: number, vid: number, uplink: number, want: Map<string, number>): { added: number; removed: number } {
  return withMaps(inst, (m) => {
    const have = new Map<string, number>();
    for (const [k, v] of m.fdb.entries()) {
      const key = FdbKey.decode(k);
      const e = FdbEntry.decode(v);
      if (key.bridge === bridge && key.vid === vid && e.remote && e.flags & FDB_FLAGS.STATIC) have.set(formatMac(key.mac), e.remote);
    }
    let added = 0;
    let removed = 0;
    for (const [mac, remote] of want) {
      if (have.get(mac) === remote) continue;
      m.fdb.update(FdbKey.encode({ bridge, vid, mac: parseMac(mac) }), FdbEntry.encode(staticEntry(uplink, FDB_FLAGS.STATIC, remote)));
      added++;
    }
    for (const mac of have.keys()) {
      if (want.has(mac)) continue;
      m.fdb.delete(FdbKey.encode({ bridge, vid, mac: parseMac(mac) }));
      removed++;
    }
    if (added) recountLearned(m); // a static entry may have replaced a learned one
    return { added, removed };
  }) ?? { added: 0, removed: 0 };
}

/** Sets (remote: a VTEP address as a number) or removes (null) one MAC behind a remote VTEP: the agent's live write. */
export function setRemoteFdb(inst: InstancePaths, bridge: number, vid: number, uplink: number, mac: string, remote: number | null): void {
  withMaps(inst, (m) => {
    const k = FdbKey.encode({ bridge, vid, mac: parseMac(mac) });
    if (remote !== null) m.fdb.update(k, FdbEntry.encode(staticEntry(uplink, FDB_FLAGS.STATIC, remote)));
    else {
      const v = m.fdb.lookup(k);
      if (v && FdbEntry.decode(v).remote) m.fdb.delete(k); // never a local port's entry
    }
  });
}

/** Local endpoints as the maps know them: static entries to a port (not the bridge's own MAC), by MAC string -> port ifindex. */
export function localStaticMacs(inst: InstancePaths, bridge: number, vid: number): Map<string, number> {
  return readMaps(inst, (m) => {
    const out = new Map<string, number>();
    for (const [k, v] of m.fdb.entries()) {
      const key = FdbKey.decode(k);
      const e = FdbEntry.decode(v);
      if (key.bridge === bridge && key.vid === vid && !e.remote && e.flags === FDB_FLAGS.STATIC) out.set(formatMac(key.mac), e.ifindex);
    }
    return out;
  }) ?? new Map();
}

/** Removes a MAC's entry in one VLAN, or in all VLANs of the bridge. Returns how many went. */
export function delFdb(inst: InstancePaths, mac: Buffer, bridge: string, vlan?: number): number {
  return withMaps(inst, (m) => {
    const br = bridgeByName(m, bridge);
    const match = (k: FdbKeyRec) => k.bridge === br.id && k.mac.equals(mac) && (vlan === undefined || k.vid === vlan);
    const rows = fdbRows(m).filter((r) => match(FdbKey.decode(r.key)));
    const where = `${formatMac(mac)} on bridge ${bridge}${vlan === undefined ? '' : ` VLAN ${vlan}`}`;
    if (!rows.length) throw new XdpnetError(`no FDB entry for ${where}`, `see \`xdpnet fdb show --bridge ${bridge}\``);
    if (rows.some((r) => r.row.type === 'local')) throw new XdpnetError(`the entry for ${where} is the bridge's own (local)`, 'it goes with the bridge');
    const n = deleteFdb(m, match);
    recountLearned(m);
    syncPeers(inst);
    return n;
  }) ?? noBridge(bridge);
}

export interface FdbFilter {
  bridge?: string;
  /** Entries leading to this port. */
  port?: string;
  /** Learned entries only (else static ones too; local entries always stay). */
  learned?: boolean;
  /** fdb show: include expired learned entries. */
  all?: boolean;
}

function fdbRows(m: Maps, now = process.hrtime.bigint()): Array<{ key: Buffer; row: FdbRow }> {
  const bridges = new Map(readBridges(m).map((b) => [b.id, b]));
  const ifnames = new Map<number, string | null>();
  const ifname = (i: number) => (ifnames.has(i) ? ifnames.get(i)! : ifnames.set(i, ifIndexToName(i) ?? null).get(i)!);
  return m.fdb.entries().map(([key, v]) => {
    const k = FdbKey.decode(key);
    const e = FdbEntry.decode(v);
    const br = bridges.get(k.bridge);
    const type: FdbType = e.flags & FDB_FLAGS.LOCAL ? 'local' : e.flags & FDB_FLAGS.STATIC ? 'static' : 'learned';
    return {
      key,
      row: {
        mac: formatMac(k.mac), bridge: br?.name ?? `#${k.bridge}`, port: ifname(e.ifindex), ifindex: e.ifindex, vlan: k.vid, type,
        age: type === 'learned' ? Number(ageNs(e, now) / NS_PER_SEC) : null,
        expired: isExpired(e, br?.ageing_sec ?? 0, now),
        remote: e.remote ? numToIpv4(e.remote) : null,
      },
    };
  });
}

export function listFdb(inst: InstancePaths, f: Omit<FdbFilter, 'learned'> = {}, netns?: string): FdbRow[] {
  const ifindex = f.port === undefined ? undefined : resolveIface(f.port, netns);
  const rows = readMaps(inst, (m) => {
    if (f.bridge) bridgeByName(m, f.bridge);
    return fdbRows(m).map((r) => r.row);
  }) ?? (f.bridge ? noBridge(f.bridge) : []);
  return rows
    .filter((r) => (!f.bridge || r.bridge === f.bridge) && (ifindex === undefined || r.ifindex === ifindex) && (f.all || !r.expired))
    .sort((a, b) => a.bridge.localeCompare(b.bridge) || a.vlan - b.vlan || a.mac.localeCompare(b.mac));
}

/** Removes entries by bridge, port and kind; local entries stay (they go with their bridge). */
export function flushFdb(inst: InstancePaths, f: Omit<FdbFilter, 'all'> = {}, netns?: string): number {
  const ifindex = f.port === undefined ? undefined : resolveIface(f.port, netns);
  return withMaps(inst, (m) => {
    const id = f.bridge === undefined ? undefined : bridgeByName(m, f.bridge).id;
    if (ifindex !== undefined && !m.ports.lookup(u32(ifindex))) throw new XdpnetError(`${f.port} is not a bridge port`, 'see `xdpnet bridge show`');
    const n = deleteFdb(m, (k, e) => !(e.flags & FDB_FLAGS.LOCAL) && (id === undefined || k.bridge === id) &&
      (ifindex === undefined || e.ifindex === ifindex) && (!f.learned || isLearned(e)));
    recountLearned(m);
    syncPeers(inst);
    return n;
  }) ?? (f.bridge ? noBridge(f.bridge) : 0);
}

const ROW_FIELDS = ['mac', 'bridge', 'port', 'vlan'];

/** One row of an `fdb load` file, {"mac", "bridge", "port", "vlan"?}, checked but for the MAC (parsed in place). */
function checkFdbRow(r: unknown): { mac: string; bridge: string; port: string; vlan?: number } {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new UsageError('expected an object like {"mac": "02:42:ac:11:00:02", "bridge": "br0", "port": "veth1"}');
  const o = r as Record<string, unknown>;
  for (const k in o) if (!ROW_FIELDS.includes(k)) throw new UsageError(`unknown field '${k}' (fields: ${ROW_FIELDS.join(', ')})`);
  for (const k of ['mac', 'bridge', 'port']) if (typeof o[k] !== 'string') throw new UsageError(`'${k}' must be a string`);
  return { mac: o.mac as string, bridge: o.bridge as string, port: o.port as string, vlan: o.vlan === undefined ? undefined : checkVlan(o.vlan) };
}

/**
 * Adds or replaces static entries from a JSON file in one batch update. Every
 * row is checked first; a bad one is reported by its index and nothing is
 * written. Built for bulk: rows share few (bridge, port, VLAN) targets, each
 * resolved and encoded once; MACs are parsed straight into the key buffer.
 */
export function loadFdb(inst: InstancePaths, file: string, netns?: string): number {
  let rows: unknown;
  try {
    rows = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new XdpnetError(`cannot read ${file}: ${(e as Error).message}`);
  }
  if (!Array.isArray(rows)) throw new UsageError(`${file}: expected a JSON array of {"mac", "bridge", "port", "vlan"?} objects`);
  if (!rows.length) return 0;
  const list = rows as unknown[];
  return withMaps(inst, (m) => {
    const resolve = fdbTargets(m, netns);
    const targets = new Map<string, { key: Buffer; value: Buffer; bridgeMac: Buffer }>();
    const macOff = FdbKey.fields.find((f) => f.name === 'mac')!.offset;
    const keys = Buffer.alloc(list.length * FdbKey.size);
    const values = Buffer.alloc(list.length * FdbEntry.size);
    for (let i = 0; i < list.length; i++) {
      try {
        const r = checkFdbRow(list[i]);
        const id = `${r.bridge}\n${r.port}\n${r.vlan ?? ''}`;
        let t = targets.get(id);
        if (!t) {
          const x = resolve({ bridge: r.bridge, port: r.port, vlan: r.vlan });
          t = { key: FdbKey.encode(x.key), value: FdbEntry.encode(staticEntry(x.ifindex)), bridgeMac: x.bridgeMac };
          targets.set(id, t);
        }
        const off = i * FdbKey.size;
        t.key.copy(keys, off);
        const at = off + macOff;
        if (!parseMacInto(r.mac, keys, at)) parseMac(r.mac); // throws the usual error
        const problem = unicastMacProblem(keys, at);
        if (problem) throw problem;
        if (keys.readUInt32LE(at) === t.bridgeMac.readUInt32LE(0) && keys.readUInt16LE(at + 4) === t.bridgeMac.readUInt16LE(4)) {
          checkNotBridgeMac(keys.subarray(at, at + 6), t.bridgeMac, r.bridge);
        }
        t.value.copy(values, i * FdbEntry.size);
      } catch (e) {
        if (e instanceof XdpnetError) e.message = `${file}[${i}]: ${e.message}`;
        throw e;
      }
    }
    m.fdb.updateBatch(keys, values, list.length);
    // Rows that replaced learned entries leave the learned count high until the next ageing pass recounts
    // (as bridge.h says); only a learning limit makes it matter now, and a full recount would cost more than the load.
    if (readBridges(m).some((b) => b.max_learned)) recountLearned(m);
    return list.length;
  }) ?? noBridge(String((list[0] as { bridge?: unknown })?.bridge));
}

/**
 * One ageing pass: deletes learned entries older than their bridge's ageing
 * and recounts. The datapath already ignores them; this frees their slots
 * (and the learning limit).
 */
export function ageFdb(inst: InstancePaths): { removed: number; remaining: number } {
  // No invalidation: it removes only entries the datapath already ignores, and a
  // cached decision never outlives its entry's ageing.
  return readMaps(inst, (m) => {
    const now = process.hrtime.bigint();
    const ageing = new Map(readBridges(m).map((b) => [b.id, b.ageing_sec]));
    const stale = (k: Buffer, v: Buffer) => isExpired(FdbEntry.decode(v), ageing.get(FdbKey.decode(k).bridge) ?? 0, now);
    let removed = 0;
    for (const [k, v] of m.fdb.entries()) {
      if (!stale(k, v)) continue;
      const cur = m.fdb.lookup(k); // the datapath may have refreshed it since the batch read
      if (cur && stale(k, cur) && m.fdb.delete(k)) removed++;
    }
    recountLearned(m);
    return { removed, remaining: m.fdb.entries().length };
  }) ?? { removed: 0, remaining: 0 };
}
