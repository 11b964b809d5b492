// The VXLAN overlay's control plane (RFC 7348): VTEPs that join one
// (bridge, VLAN) flood domain to one VNI over an uplink. Like the bridge's,
// its configuration lives in the instance's pinned maps (bpf/include/vxlan.h):
//   xn_vteps       VNI → {bridge, VLAN, flags, local address, uplink, UDP port}: the source of truth
//   xn_vx_vlans    (bridge, VLAN) → VNI                  xn_vx_ports  (local, port) → VTEPs using it
//   xn_vx_remotes  VNI → remote VTEPs (BUM copies)        xn_vx_peers  (VNI, VTEP) → 1: senders accepted without learning
// and in the links: xn_vx_uplink (XDP) on each uplink, xn_br_tc next to
// xn_br_xdp on XDP ports of overlay bridges. Every command validates all its
// input before it writes.
import { spawnSync } from 'node:child_process';
import { UsageError, XdpnetError } from '../errors.js';
import {
  decodeRemoteList, FloodKey, loadBridge, loadVxlanUplink, pinBridgeMaps, remoteList, Vtep, VTEP_FLAGS, VXLAN, VxPeerKey, VxPortKey,
} from '../objects/bridge.js';
import { u32, ipv4ToNum, numToIpv4 } from '../objects/codec.js';
import type { InstancePaths } from '../objects/paths.js';
import { BPF_NOEXIST, BpfMap } from '../sys/libbpf.js';
import { ifIndexToName } from '../sys/libc.js';
import { checkVlan, formatMac, VLAN_MIN } from './addr.js';
import { addLink, attach, findAttachment, interfaceAttachments, removeAttachment, removeInstanceIfIdle, removeLink, resolveIface } from './attach.js';
import { forwardingChanged, listBridges, listPorts } from './bridge.js';
import { readBridges, readMaps, registerOverlay } from './bridge-maps.js';
import { deleteRemoteEntries, staticRemotes } from './fdb.js';
import { forwardingNotes, ipJson, routeGet } from './host.js';
import { parsePort, parseUnicastIp } from './inet.js';
import { programName } from './links.js';
import { releaseSlotIfUnused } from './slots.js';

export const VXLAN_PORT = 4789;

export interface VtepOptions {
  bridge: string;
  vni: number;
  /** IPv4 address of the uplink: outer source, and the address decap accepts. */
  local: string;
  /** The uplink interface. */
  dev: string;
  /** UDP destination port (default 4789; Linux's historical default is 8472). */
  port?: number;
  /** The bridge VLAN the VNI carries (default 1). */
  vlan?: number;
  learning?: boolean;
  /** Where decap runs on the uplink: XDP (default) or tc ingress (keeps GSO on a veth underlay). */
  hook?: 'xdp' | 'tc';
  netns?: string;
}

export interface VtepInfo {
  vni: number;
  bridge: string;
  vlan: number;
  local: string;
  dev: string | null; // null: the uplink is gone
  ifindex: number;
  port: number;
  learning: boolean;
  remotes: string[];
  /** Uplink MTU − 50: the largest inner frame payload (the MTU to give containers). */
  innerMtu: number | null;
}

type VtepRec = ReturnType<typeof Vtep.decode>;
type VxMaps = Record<keyof typeof VXLAN.maps, BpfMap>;

/** Runs fn with the instance's overlay maps; undefined when they are not pinned (nothing configured). */
function withVx<T>(inst: InstancePaths, fn: (m: VxMaps) => T): T | undefined {
  return BpfMap.usePins(inst.maps, VXLAN.maps, fn);
}

function readVteps(m: VxMaps): Map<number, VtepRec> {
  return new Map(m.vteps.entries().map(([k, v]) => [k.readUInt32LE(0), Vtep.decode(v)] as const));
}

const vlanKey = (bridge: number, vid: number) => FloodKey.encode({ bridge, vid, pad: 0 });
const portKey = (local: number, port: number) => VxPortKey.encode({ local, port, pad: 0 });

function noVtep(vni: number): never {
  throw new XdpnetError(`no VTEP with VNI ${vni}`, 'list them with `xdpnet vxlan show`');
}

// ---- parsing ---------------------------------------------------------------

export function parseVni(s: string): number {
  const n = Number(s);
  if (!/^\d+$/.test(s) || n < VXLAN.limits.vniMin || n > VXLAN.limits.vniMax) {
    throw new UsageError(`invalid VNI '${s}': expected a number from ${VXLAN.limits.vniMin} to ${VXLAN.limits.vniMax}`);
  }
  return n;
}

/** The VXLAN UDP port (--udp-port). */
export function parseUdpPort(s: string): number {
  return parsePort(s, '--udp-port', 'expected 1 to 65535 (4789 is VXLAN\'s, 8472 Linux\'s old default)');
}

// ---- host state --------------------------------------------------------------

type IpRows = Array<Record<string, unknown>>;

/** The interface's MTU (read with ip(8): /sys shows the host's namespace after setns). */
export function linkMtu(dev: string): number | null {
  const l = ipJson<IpRows>(['link', 'show', 'dev', dev], [])[0];
  return typeof l?.mtu === 'number' ? l.mtu : null;
}

export const innerMtuOf = (mtu: number | null) => (mtu === null ? null : mtu - VXLAN.headerLen);

/**
 * Keeps the next hops towards remote VTEPs resolved (managed neighbour
 * entries, which the kernel refreshes), so flood copies, which cannot wait for
 * ARP, are not dropped as vxlan-no-neighbour. Best effort: returns notes.
 */
function keepNeighbours(dev: string, local: string, remotes: string[]): string[] {
  const notes: string[] = [];
  const hops = new Set<string>();
  for (const remote of remotes) {
    const r = routeGet(remote, { from: local, oif: dev });
    if (!r) notes.push(`no route to VTEP ${remote} through ${dev}: encapsulated frames to it are dropped (vxlan-no-route)`);
    else hops.add(typeof r.gateway === 'string' ? r.gateway : remote);
  }
  // One `ip` run for every next hop (a run each cost ~40 ms: 64 remotes were 2.5 s of an agent's join).
  // -force goes on past a line that fails: the entry exists already (kept resolved by whoever made it),
  // or this kernel has no managed entries.
  if (hops.size) spawnSync('ip', ['-force', '-batch', '-'], { input: [...hops].map((nh) => `neigh add ${nh} dev ${dev} managed\n`).join(''), stdio: ['pipe', 'ignore', 'ignore'] });
  return notes;
}

// ---- what other modules ask --------------------------------------------------

/** A VNI of the bridge, when it is an overlay bridge. */
export function overlayVni(inst: InstancePaths, bridge: number): number | undefined {
  return withVx(inst, (m) => [...readVteps(m)].find(([, v]) => v.bridge === bridge)?.[0]);
}

/** Uplink ifindex → the VNIs it carries. */
export function vtepUplinks(inst: InstancePaths): Map<number, number[]> {
  const out = new Map<number, number[]>();
  withVx(inst, (m) => {
    for (const [vni, v] of [...readVteps(m)].sort((a, b) => a[0] - b[0])) (out.get(v.ifindex) ?? out.set(v.ifindex, []).get(v.ifindex)!).push(vni);
  });
  return out;
}

/** The overlay a bridge port joined: its VNIs and the MTU its container should use. */
export function portOverlay(inst: InstancePaths, bridge: string): { vnis: number[]; innerMtu: number | null } | undefined {
  const vteps = listVteps(inst).filter((v) => v.bridge === bridge);
  if (!vteps.length) return undefined;
  const mtus = vteps.map((v) => v.innerMtu).filter((x): x is number => x !== null);
  return { vnis: vteps.map((v) => v.vni), innerMtu: mtus.length ? Math.min(...mtus) : null };
}

/** The FDB entry of a MAC behind a remote VTEP: key and value fields (`fdb add --remote`). */
export function remoteFdbTarget(inst: InstancePaths, bridge: number, name: string, mac: Buffer, remote: string, vlan?: number) {
  const vid = vlan === undefined ? VLAN_MIN : checkVlan(vlan);
  const addr = ipv4ToNum(parseUnicastIp(remote, 'remote VTEP'));
  const found = withVx(inst, (m) => {
    const n = m.vlans.lookup(vlanKey(bridge, vid));
    const vni = n?.readUInt32LE(0);
    const v = vni === undefined ? undefined : m.vteps.lookup(u32(vni));
    return v && { vni: vni!, vtep: Vtep.decode(v) };
  });
  if (!found) {
    throw new XdpnetError(`bridge ${name} VLAN ${vid} has no VTEP, so no MAC can be behind a remote one`,
      `add one first: xdpnet vxlan add --bridge ${name} --vni N --local IP --dev UPLINK${vid === VLAN_MIN ? '' : ` --vlan ${vid}`}`);
  }
  if (addr === found.vtep.local) throw new XdpnetError(`${remote} is VNI ${found.vni}'s own address`, 'name the remote VTEP the MAC is behind');
  if (formatMac(mac) === '00:00:00:00:00:00') throw new UsageError('MAC address 00:00:00:00:00:00 is not a valid address');
  return { key: { bridge, vid, mac }, ifindex: found.vtep.ifindex, remote: addr, vni: found.vni };
}

/**
 * Rewrites xn_vx_peers from what should be there: for every VNI, its remote
 * VTEPs and the VTEPs its static FDB entries point at.
 */
export function syncPeers(inst: InstancePaths): void {
  withVx(inst, (m) => {
    const vteps = readVteps(m);
    const want = new Set<string>();
    const key = (vni: number, addr: number) => `${vni}/${addr}`;
    for (const [k, v] of m.remotes.entries()) for (const a of decodeRemoteList(v)) want.add(key(k.readUInt32LE(0), a));
    const vniOf = new Map([...vteps].map(([vni, v]) => [`${v.bridge}/${v.vid}`, vni]));
    for (const e of staticRemotes(inst)) {
      const vni = vniOf.get(`${e.bridge}/${e.vid}`);
      if (vni !== undefined) want.add(key(vni, e.remote));
    }
    const have = new Set([...m.peers.keys()].map((k) => { const p = VxPeerKey.decode(k); return key(p.vni, p.addr); }));
    for (const w of want) {
      if (have.has(w)) continue;
      const [vni, addr] = w.split('/').map(Number);
      m.peers.update(VxPeerKey.encode({ vni, addr }), u32(1));
    }
    for (const h of have) {
      if (want.has(h)) continue;
      const [vni, addr] = h.split('/').map(Number);
      m.peers.delete(VxPeerKey.encode({ vni, addr }));
    }
  });
  forwardingChanged(inst); // cached decap decisions were made with the old senders
}

// ---- VTEPs -------------------------------------------------------------------

/** XDP ports of a bridge: they need xn_br_tc next to xn_br_xdp once the bridge is an overlay bridge. */
function xdpPorts(inst: InstancePaths, bridge: string): number[] {
  return listPorts(inst).filter((p) => p.bridge === bridge && p.hook === 'xdp').map((p) => p.ifindex);
}

export interface AddVtepResult {
  vtep: VtepInfo;
  /** What the user should know: forwarding turned on, the inner MTU, ports given a tc slow path. */
  notes: string[];
}

export function addVtep(inst: InstancePaths, o: VtepOptions): AddVtepResult {
  if (o.vni < VXLAN.limits.vniMin || o.vni > VXLAN.limits.vniMax || !Number.isInteger(o.vni)) parseVni(String(o.vni));
  const local = parseUnicastIp(o.local, '--local');
  const port = o.port ?? VXLAN_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) parseUdpPort(String(port));
  const vid = o.vlan === undefined ? VLAN_MIN : checkVlan(o.vlan);
  // validate everything before any write
  const br = listBridges(inst).find((b) => b.name === o.bridge);
  if (!br) throw new XdpnetError(`bridge ${o.bridge} not found`, 'list bridges with `xdpnet bridge show`; create one with `xdpnet bridge add NAME`');
  const ifindex = resolveIface(o.dev, o.netns);
  const port0 = listPorts(inst).find((p) => p.ifindex === ifindex);
  if (port0) throw new XdpnetError(`${o.dev} is a port of bridge ${port0.bridge}, it cannot be an uplink`, `detach it first: xdpnet detach ${o.dev}`);
  // From ip, not os.networkInterfaces(): libuv lists only interfaces whose carrier is up, which
  // a just-created veth reaches only when linkwatch gets to it (up to a second later).
  const addrs = ipJson<Array<{ addr_info?: Array<{ local: string }> }>>(['-4', 'addr', 'show', 'dev', o.dev], [])
    .flatMap((l) => l.addr_info ?? []).map((a) => a.local);
  if (!addrs.includes(local)) {
    throw new XdpnetError(`${o.dev} does not have the address ${local}${addrs.length ? ` (it has ${addrs.join(', ')})` : ''}`,
      `give it the address first: ip addr add ${local}/24 dev ${o.dev}; --local must be an address of --dev`);
  }
  pinBridgeMaps(inst); // adopts the pinned maps, creates overlay maps an older instance lacks
  const uplinks = vtepUplinks(inst);
  let attached = findAttachment(inst, ifindex);
  if (attached && !uplinks.has(ifindex) && orphanUplink(inst, ifindex)) {
    removeAttachment(inst, attached);
    attached = undefined;
  }
  if (attached && !uplinks.has(ifindex)) {
    throw new XdpnetError(`${o.dev} is already attached (${attached.hook}${attached.mode ? ` ${attached.mode}` : ''}, program ${attached.progId})`,
      `detach it first: xdpnet detach ${o.dev}`);
  }
  if (attached && o.hook && attached.hook !== o.hook) {
    throw new XdpnetError(`uplink ${o.dev} already decapsulates at ${attached.hook}, not ${o.hook}`, `omit --hook, or delete its VTEPs (VNI ${uplinks.get(ifindex)!.join(', ')}) first`);
  }
  withVx(inst, (m) => {
    if (m.vteps.lookup(u32(o.vni))) {
      const v = Vtep.decode(m.vteps.lookup(u32(o.vni))!);
      const on = listBridges(inst).find((b) => b.id === v.bridge)?.name ?? `#${v.bridge}`;
      throw new XdpnetError(`VNI ${o.vni} already exists (bridge ${on} VLAN ${v.vid})`, `one VTEP per VNI; delete it first: xdpnet vxlan del --vni ${o.vni}`);
    }
    const other = m.vlans.lookup(vlanKey(br.id, vid));
    if (other) {
      throw new XdpnetError(`bridge ${o.bridge} VLAN ${vid} already has a VTEP (VNI ${other.readUInt32LE(0)})`,
        'one VTEP per bridge VLAN: use another --vlan, or delete that VTEP first');
    }
    if (m.vteps.entries().length >= VXLAN.limits.vteps) throw new XdpnetError(`all ${VXLAN.limits.vteps} VTEPs are in use`);
    return true;
  }) ?? (() => { throw new XdpnetError('this instance has no overlay maps', 'rebuild (make bpf): the bridge object lacks them'); })();

  const notes: string[] = [];
  let linked = false;
  if (!attached) {
    const hook = o.hook ?? 'xdp';
    attach(inst, o.dev, { hook, netns: o.netns, load: (i) => loadVxlanUplink(i, hook) });
    linked = true;
  }
  try {
    withVx(inst, (m) => {
      // the VTEP and its decap index first, the encap index last: frames are only sent once decap works
      m.vteps.update(u32(o.vni), Vtep.encode({
        bridge: br.id, vid, flags: o.learning ? VTEP_FLAGS.LEARNING : 0, local: ipv4ToNum(local), ifindex, port, pad: 0,
      }), BPF_NOEXIST);
      const pk = portKey(ipv4ToNum(local), port);
      m.ports.update(pk, u32((m.ports.lookup(pk)?.readUInt32LE(0) ?? 0) + 1));
      m.vlans.update(vlanKey(br.id, vid), u32(o.vni));
    });
    forwardingChanged(inst); // XDP's cached encapsulations hold only while nothing changed
    const slow = xdpPorts(inst, br.name);
    for (const p of slow) addLink(inst, p, 'tc', () => bridgeTc(inst));
    if (slow.length) notes.push(`XDP ports ${slow.map((p) => ifIndexToName(p) ?? p).join(', ')} got the tc slow path (floods to remote VTEPs, unresolved next hops)`);
  } catch (e) {
    try {
      delVtep(inst, o.vni);
    } catch {
      if (linked) {
        const a = findAttachment(inst, ifindex);
        if (a) removeAttachment(inst, a);
      }
    }
    throw e;
  }
  // bpf_fib_lookup returns FWD_DISABLED (every encap dropped as vxlan-no-route) unless the uplink forwards
  notes.push(...forwardingNotes(o.dev, "the datapath's route lookups need it", 'every encapsulated frame is dropped (vxlan-no-route)'));
  const vtep = listVteps(inst).find((v) => v.vni === o.vni)!;
  if (vtep.innerMtu !== null) notes.push(`inner MTU ${vtep.innerMtu} (${o.dev} MTU ${vtep.innerMtu + VXLAN.headerLen} − ${VXLAN.headerLen}): give the containers of bridge ${o.bridge} this MTU`);
  return { vtep, notes };
}

/**
 * Uplink programs with no VTEP on the interface: what a `vxlan add` killed between linking the uplink
 * and writing the VTEP leaves. Nothing else runs these programs, so they go.
 */
function orphanUplink(inst: InstancePaths, ifindex: number): boolean {
  const uplink = Object.values(VXLAN.programs) as string[];
  return interfaceAttachments(inst, ifindex).every((a) => uplink.includes(programName(a.progId) ?? ''));
}

function bridgeTc(inst: InstancePaths) {
  const l = loadBridge(inst, 'tc');
  return { prog: l.prog, close: l.close };
}

/**
 * Removes a VTEP; its uplink link goes with the last VTEP on it, XDP ports' tc slow paths with the bridge's
 * last VTEP. The VTEP's record goes last: a run killed before it leaves the VTEP listed, and running the
 * command again finishes the work (every step before is idempotent; the port count is recomputed, not
 * decremented), so nothing is left that no command would find.
 */
export function delVtep(inst: InstancePaths, vni: number): VtepInfo {
  const info = listVteps(inst).find((v) => v.vni === vni) ?? noVtep(vni);
  const { v, uplinkUsed, bridgeUsed, sharing } = withVx(inst, (m) => {
    const all = readVteps(m);
    const v = all.get(vni)!;
    all.delete(vni);
    const others = [...all.values()];
    // the encap index first: nothing is sent to the overlay any more
    const vk = vlanKey(v.bridge, v.vid);
    if (m.vlans.lookup(vk)?.readUInt32LE(0) === vni) m.vlans.delete(vk);
    forwardingChanged(inst);
    return {
      v, uplinkUsed: others.some((x) => x.ifindex === v.ifindex), bridgeUsed: others.some((x) => x.bridge === v.bridge),
      sharing: others.filter((x) => x.local === v.local && x.port === v.port).length,
    };
  })!;
  if (!bridgeUsed) for (const p of xdpPorts(inst, info.bridge)) removeLink(inst, p, 'tc');
  if (!uplinkUsed) {
    const a = findAttachment(inst, v.ifindex);
    if (a) removeAttachment(inst, a);
    else releaseSlotIfUnused(inst, v.ifindex); // a run killed inside removeAttachment
  }
  deleteRemoteEntries(inst, v.bridge, v.vid); // remote MACs of that VLAN lead nowhere now
  withVx(inst, (m) => {
    m.remotes.delete(u32(vni));
    const pk = portKey(v.local, v.port);
    if (sharing) m.ports.update(pk, u32(sharing));
    else m.ports.delete(pk);
  });
  syncPeers(inst); // drops the VNI's senders (its remotes and static entries are gone)
  withVx(inst, (m) => m.vteps.delete(u32(vni)));
  forwardingChanged(inst);
  removeInstanceIfIdle(inst);
  return info;
}

/** bridge del: its VTEPs go with it when forced; refused otherwise. */
export function removeBridgeVteps(inst: InstancePaths, bridge: number, name: string, force: boolean): void {
  const vnis = withVx(inst, (m) => [...readVteps(m)].filter(([, v]) => v.bridge === bridge).map(([vni]) => vni)) ?? [];
  if (!vnis.length) return;
  if (!force) throw new XdpnetError(`bridge ${name} still has VTEPs: VNI ${vnis.join(', ')}`, 'delete them first (xdpnet vxlan del --vni N), or use --force');
  for (const vni of vnis) delVtep(inst, vni);
}

export function listVteps(inst: InstancePaths): VtepInfo[] {
  // the bridges' names only: listBridges would also list every port (a scrape of 1000 ports paid for it)
  const names = new Map((readMaps(inst, readBridges) ?? []).map((b) => [b.id, b.name]));
  const mtus = new Map<number, number | null>();
  return (withVx(inst, (m) => [...readVteps(m)].map(([vni, v]) => {
    const dev = ifIndexToName(v.ifindex) ?? null;
    if (dev && !mtus.has(v.ifindex)) mtus.set(v.ifindex, linkMtu(dev));
    const r = m.remotes.lookup(u32(vni));
    return {
      vni, bridge: names.get(v.bridge) ?? `#${v.bridge}`, vlan: v.vid, local: numToIpv4(v.local), dev, ifindex: v.ifindex, port: v.port,
      learning: Boolean(v.flags & VTEP_FLAGS.LEARNING), remotes: r ? decodeRemoteList(r).map(numToIpv4) : [],
      innerMtu: innerMtuOf(mtus.get(v.ifindex) ?? null),
    };
  })) ?? []).sort((a, b) => a.vni - b.vni);
}

// ---- remote VTEPs (head-end replication) ---------------------------------------

/** Adds a remote VTEP to a VNI: it gets a copy of every flood, and decap accepts it without learning. */
export function addRemote(inst: InstancePaths, vni: number, remote: string): { vtep: VtepInfo; notes: string[] } {
  const addr = ipv4ToNum(parseUnicastIp(remote, 'remote VTEP'));
  const v = listVteps(inst).find((x) => x.vni === vni) ?? noVtep(vni);
  if (remote === v.local) throw new XdpnetError(`${remote} is VNI ${vni}'s own address`, 'name the other host\'s VTEP address');
  if (v.remotes.includes(remote)) throw new XdpnetError(`${remote} is already a remote VTEP of VNI ${vni}`, 'see `xdpnet vxlan show`');
  if (v.remotes.length >= VXLAN.limits.remotesMax) throw new XdpnetError(`VNI ${vni} already has ${VXLAN.limits.remotesMax} remote VTEPs, the most it replicates to`);
  withVx(inst, (m) => m.remotes.update(u32(vni), remoteList([...v.remotes.map(ipv4ToNum), addr])));
  syncPeers(inst);
  const notes: string[] = [];
  const warn = v.dev ? keepNeighbours(v.dev, v.local, [remote])[0] : `the uplink of VNI ${vni} is gone`;
  if (warn) notes.push(warn);
  return { vtep: listVteps(inst).find((x) => x.vni === vni)!, notes };
}

export function delRemote(inst: InstancePaths, vni: number, remote: string): VtepInfo {
  const addr = ipv4ToNum(parseUnicastIp(remote, 'remote VTEP'));
  const v = listVteps(inst).find((x) => x.vni === vni) ?? noVtep(vni);
  if (!v.remotes.includes(remote)) throw new XdpnetError(`${remote} is not a remote VTEP of VNI ${vni}`, 'see `xdpnet vxlan show`');
  const rest = v.remotes.map(ipv4ToNum).filter((a) => a !== addr);
  withVx(inst, (m) => (rest.length ? m.remotes.update(u32(vni), remoteList(rest)) : m.remotes.delete(u32(vni))));
  syncPeers(inst);
  return listVteps(inst).find((x) => x.vni === vni)!;
}

/**
 * Makes a VNI's remote VTEPs exactly `want` (the cluster agent's write): one
 * map update, then the accepted peers; new remotes get a managed neighbour
 * entry. Returns the notes of those that could not get one.
 */
export function setRemotes(inst: InstancePaths, vni: number, want: string[]): { added: string[]; removed: string[]; notes: string[] } {
  const v = listVteps(inst).find((x) => x.vni === vni) ?? noVtep(vni);
  const list = [...new Set(want)].filter((a) => a !== v.local);
  if (list.length > VXLAN.limits.remotesMax) throw new XdpnetError(`VNI ${vni} would have ${list.length} remote VTEPs; it replicates to at most ${VXLAN.limits.remotesMax}`);
  const added = list.filter((a) => !v.remotes.includes(a));
  const removed = v.remotes.filter((a) => !list.includes(a));
  if (!added.length && !removed.length) return { added, removed, notes: [] };
  withVx(inst, (m) => (list.length ? m.remotes.update(u32(vni), remoteList(list.map(ipv4ToNum))) : m.remotes.delete(u32(vni))));
  syncPeers(inst);
  const notes = v.dev ? keepNeighbours(v.dev, v.local, added) : [];
  return { added, removed, notes };
}

/** For `fdb add --remote`: keeps the next hop of a VTEP that static entries point at resolved. */
export function keepRemoteResolved(inst: InstancePaths, vni: number, remote: string): string | undefined {
  const v = listVteps(inst).find((x) => x.vni === vni);
  return v?.dev ? keepNeighbours(v.dev, v.local, [remote])[0] : undefined;
}

// The bridge and the FDB reach the overlay only through these (vxlan uses the bridge, not the reverse).
registerOverlay({ overlayVni, vtepUplinks, removeBridgeVteps, remoteFdbTarget, syncPeers });
