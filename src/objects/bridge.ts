// bpf/bridge.bpf.c: the L2 bridge. Codecs mirror bpf/include/bridge.h
// (checked against BTF by test/bpf/layout.test.ts).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BpfMap, numPossibleCpus, type BpfObject, type BpfProgram } from '../sys/libbpf.js';
import { openPrograms, pinMaps, type BuildSpec, type ProgramSet } from './builds.js';
import { struct, u32 } from './codec.js';
import { BR_CACHE, BRIDGE_FLOWS, sizeCache } from './memory.js';
import type { InstancePaths } from './paths.js';

export const BRIDGE = {
  object: 'bridge',
  programs: { xdp: 'xn_br_xdp', tc: 'xn_br_tc', egress: 'xn_br_egress' },
  maps: {
    bridges: 'xn_bridges',
    ports: 'xn_ports',
    vlans: 'xn_vlans',
    fdb: 'xn_fdb',
    flood: 'xn_flood',
    txPorts: 'xn_tx_ports',
    arp: 'xn_arp',
  },
  limits: { floodMax: 64, ports: 1024, bridges: 64, fdb: 131072, lockIps: 8 },
} as const;

export const PORT_FLAGS = { LEARNING: 1, HOST: 2, ACCESS: 4, PEER: 8, LOCKED: 16 } as const;

/**
 * xn_port_locks: ifindex → the MAC and IPv4 addresses a locked port
 * (PORT_FLAGS.LOCKED) may send from (bpf/lib/port_lock.h). Not in
 * BRIDGE.maps, so instances pinned before it existed still open; every load
 * of the bridge object pins it.
 */
export const PORT_LOCK_MAP = 'xn_port_locks';

/** xn_br_gen: cached forwarding decisions hold while it is unchanged (not in BRIDGE.maps: it is not configuration). */
export const BR_GEN_MAP = 'xn_br_gen';
export const BrGen = struct('xn_br_gen', { ctl: 'u64', data: 'u64' });

/**
 * Invalidates every cached forwarding decision: call after changing any bridge
 * map. Writes CLOCK_MONOTONIC ns, a value no earlier call wrote, so the pair
 * (ctl, data) is new whatever data is: BPF's move counter can restart at 0.
 */
export function invalidateCache(gen: BpfMap): void {
  gen.update(u32(0), BrGen.encode({ ctl: process.hrtime.bigint(), data: 0n }));
}

/** XN_META_* (bpf/include/bridge.h): the note XDP puts in the metadata of a frame it passes to the port's tc program. */
export const XDP_NOTES = { LOCAL: 0x786e4c4f, PUNT: 0x786e5054 } as const;
export const FDB_FLAGS = { STATIC: 1, LOCAL: 2 } as const;

export const Bridge = struct('xn_bridge', {
  mac: { bytes: 6 },
  flags: 'u16',
  ageing_sec: 'u32',
  max_learned: 'u32',
  learned: 'u32',
  name: { bytes: 16 },
});
export const Port = struct('xn_port', { bridge: 'u32', pvid: 'u16', flags: 'u16', slot: 'u32' });
export const VlanKey = struct('xn_vlan_key', { ifindex: 'u32', vid: 'u16', pad: 'u16' });
export const Vlan = struct('xn_vlan', { untagged: 'u32' });
export const FdbKey = struct('xn_fdb_key', { bridge: 'u32', vid: 'u16', mac: { bytes: 6 } });
export const FdbEntry = struct('xn_fdb_entry', {
  ifindex: 'u32',
  remote: 'be32',
  updated_ns: 'u64',
  flags: 'u32',
  ageing_sec: 'u32',
});
export const FloodKey = struct('xn_flood_key', { bridge: 'u32', vid: 'u16', pad: 'u16' });
export const Flood = struct('xn_flood', { count: 'u32', ifindex: { bytes: 4 * BRIDGE.limits.floodMax } });
/** struct bpf_devmap_val: the port and the egress program run for it. */
export const DevmapVal = struct('bpf_devmap_val', { ifindex: 'u32', prog_fd: 'u32' });

/** xn_arp: the bridge answers ARP requests for these addresses itself (bpf/lib/arp.h). */
export const ArpKey = struct('xn_arp_key', { bridge: 'u32', vid: 'u16', pad: 'u16', ip: 'be32' });
export const ArpEntry = struct('xn_arp_entry', { mac: { bytes: 6 }, flags: 'u16' });

/** xn_port_lock: addresses (in ip, network order) unused slots 0. */
export const PortLock = struct('xn_port_lock', { mac: { bytes: 6 }, pad: 'u16', ip: { bytes: 4 * BRIDGE.limits.lockIps } });

export const BRIDGE_CODECS = [Bridge, Port, VlanKey, Vlan, FdbKey, FdbEntry, FloodKey, Flood, BrGen, ArpKey, ArpEntry, PortLock];

/**
 * The VXLAN overlay (bpf/include/vxlan.h): maps and the uplink program of the
 * same object. Its maps stay out of BRIDGE.maps so instances pinned before the
 * overlay existed still open; pinBridgeMaps() creates them with the rest.
 *
 * What the control process writes (all hash maps, values replaced whole):
 *   xn_vteps       VNI → Vtep {bridge, vid, flags, local, ifindex (uplink), port}: the source of truth
 *   xn_vx_vlans    FloodKey {bridge, vid} → u32 VNI (encap side; one VNI per bridge VLAN)
 *   xn_vx_ports    VxPortKey {local, port} → u32 number of VTEPs using it (> 0)
 *   xn_vx_remotes  VNI → VxRemotes (remoteList()): BUM head-end replication list
 *   xn_vx_peers    VxPeerKey {vni, addr} → u32 1: senders decap accepts when the VTEP does not learn
 *   xn_fdb         FdbEntry {ifindex: uplink, remote: VTEP address} for MACs behind a remote VTEP
 * and it attaches xn_vx_uplink (XDP) to the uplink, and xn_br_tc next to
 * xn_br_xdp on XDP ports of overlay bridges (their slow path: BUM frames that
 * need copies per remote VTEP, next hops the kernel must resolve).
 */
export const VXLAN = {
  programs: { uplink: 'xn_vx_uplink', uplinkTc: 'xn_vx_uplink_tc' },
  maps: {
    vteps: 'xn_vteps',
    vlans: 'xn_vx_vlans',
    ports: 'xn_vx_ports',
    remotes: 'xn_vx_remotes',
    peers: 'xn_vx_peers',
  },
  limits: { vteps: 4096, remotesMax: 64, peers: 65536, vniMin: 1, vniMax: 0xffffff },
  /** Outer Ethernet + IPv4 + UDP + VXLAN: inner MTU = uplink MTU - 50. */
  headerLen: 50,
  /** Outer UDP source ports are spread over this range by a hash of the inner flow. */
  sourcePorts: { min: 49152, max: 65535 },
} as const;

export const VTEP_FLAGS = { LEARNING: 1 } as const;

/** Addresses and ports are numbers in host order (the codec converts to network order). */
export const Vtep = struct('xn_vtep', {
  bridge: 'u32',
  vid: 'u16',
  flags: 'u16',
  local: 'be32',
  ifindex: 'u32',
  port: 'be16',
  pad: 'u16',
});
export const VxPortKey = struct('xn_vx_port_key', { local: 'be32', port: 'be16', pad: 'u16' });
export const VxRemotes = struct('xn_vx_remotes', { count: 'u32', addr: { bytes: 4 * VXLAN.limits.remotesMax } });
export const VxPeerKey = struct('xn_vx_peer_key', { vni: 'u32', addr: 'be32' });

export const VXLAN_CODECS = [Vtep, VxPortKey, VxRemotes, VxPeerKey];

/** Encodes remote VTEP addresses (numbers, see ipv4ToNum) into struct xn_vx_remotes. */
export function remoteList(addrs: number[]): Buffer {
  if (addrs.length > VXLAN.limits.remotesMax) throw new Error(`at most ${VXLAN.limits.remotesMax} remote VTEPs per VNI`);
  const buf = Buffer.alloc(4 * VXLAN.limits.remotesMax);
  addrs.forEach((a, i) => buf.writeUInt32BE(a, i * 4));
  return VxRemotes.encode({ count: addrs.length, addr: buf });
}

export function decodeRemoteList(buf: Buffer): number[] {
  const r = VxRemotes.decode(buf);
  return Array.from({ length: Math.min(r.count, VXLAN.limits.remotesMax) }, (_, i) => r.addr.readUInt32BE(i * 4));
}

/** Encodes a port's lock: its MAC and IPv4 addresses (numbers, see ipv4ToNum; at most BRIDGE.limits.lockIps, none 0). */
export function portLock(mac: Buffer, ips: number[]): Buffer {
  if (ips.length > BRIDGE.limits.lockIps) throw new Error(`at most ${BRIDGE.limits.lockIps} addresses per port lock`);
  const buf = Buffer.alloc(4 * BRIDGE.limits.lockIps);
  ips.forEach((a, i) => buf.writeUInt32BE(a, i * 4));
  return PortLock.encode({ mac, pad: 0, ip: buf });
}

export function decodePortLock(buf: Buffer): { mac: Buffer; ips: number[] } {
  const l = PortLock.decode(buf);
  const ips = Array.from({ length: BRIDGE.limits.lockIps }, (_, i) => l.ip.readUInt32BE(i * 4)).filter((a) => a !== 0);
  return { mac: l.mac, ips };
}

/** Encodes a flood list (ifindexes) into struct xn_flood. */
export function floodList(ifindexes: number[]): Buffer {
  const ids = Buffer.alloc(4 * BRIDGE.limits.floodMax);
  ifindexes.forEach((x, i) => ids.writeUInt32LE(x, i * 4));
  return Flood.encode({ count: ifindexes.length, ifindex: ids });
}

/** The ifindexes of a struct xn_flood. */
export function decodeFloodList(buf: Buffer): number[] {
  const f = Flood.decode(buf);
  return Array.from({ length: Math.min(f.count, BRIDGE.limits.floodMax) }, (_, i) => f.ifindex.readUInt32LE(i * 4));
}

/** FDB sizes `bridge add --fdb-size` accepts (one FDB per instance, shared by its bridges). */
export const FDB_SIZE = { default: BRIDGE.limits.fdb, min: 1024, max: 16_777_216 } as const;

/** max_entries of the instance's pinned FDB, if there is one. */
export function pinnedFdbSize(inst: InstancePaths): number | undefined {
  const pin = join(inst.maps, BRIDGE.maps.fdb);
  return existsSync(pin) ? BpfMap.usePin(pin, (m) => m.info.maxEntries) : undefined;
}

/** Sizes of maps made at the first load; pinned maps keep theirs (libbpf adopts a pin only if max_entries matches). */
export interface BridgeSizes {
  /** Active MAC pairs expected at once: sizes a new decision cache. */
  flows?: number;
  /** Entries of a new FDB. */
  fdbSize?: number;
}

/** Sizes the bridge object's maps before load: as pinned, else as asked (or the defaults). */
const configureBridge = (inst: InstancePaths, o: BridgeSizes = {}) => (obj: BpfObject) => {
  sizeCache(obj, inst, BR_CACHE, o.flows ?? BRIDGE_FLOWS.default, numPossibleCpus());
  obj.setMaxEntries(BRIDGE.maps.fdb, pinnedFdbSize(inst) ?? o.fdbSize ?? FDB_SIZE.default);
};

/** Creates (or adopts) the instance's pinned maps without loading any program: bridges exist before ports. */
export function pinBridgeMaps(inst: InstancePaths, o: BridgeSizes = {}): void {
  pinMaps(inst, BRIDGE.object, configureBridge(inst, o));
}

/** The bridge object's programs in the instance (loaded once, then from their pins: objects/builds.ts). */
export function bridgePrograms(inst: InstancePaths, o: { upgrade?: boolean } = {}): ProgramSet {
  return openPrograms(inst, BRIDGE.object, configureBridge(inst), o);
}

export const BRIDGE_BUILD: BuildSpec = {
  object: BRIDGE.object, programs: [...Object.values(BRIDGE.programs), ...Object.values(VXLAN.programs)], configure: (inst) => configureBridge(inst),
};

/**
 * The bridge's ingress program for the hook and the devmap egress program
 * (and, with slowPath on XDP, xn_br_tc, linked next to xn_br_xdp on XDP ports
 * of overlay bridges); their fds are valid until close().
 */
export function loadBridge(inst: InstancePaths, hook: 'xdp' | 'tc', o: { slowPath?: boolean } = {}): {
  prog: BpfProgram; egress: BpfProgram; tc?: BpfProgram; close(): void;
} {
  const set = bridgePrograms(inst);
  return {
    prog: set.program(BRIDGE.programs[hook]), egress: set.program(BRIDGE.programs.egress),
    tc: o.slowPath && hook === 'xdp' ? set.program(BRIDGE.programs.tc) : undefined, close: () => set.close(),
  };
}

/** The uplink's decapsulation program (XDP, or tc); its fd is valid until close(). */
export function loadVxlanUplink(inst: InstancePaths, hook: 'xdp' | 'tc' = 'xdp'): { prog: BpfProgram; close(): void } {
  const set = bridgePrograms(inst);
  return { prog: set.program(hook === 'tc' ? VXLAN.programs.uplinkTc : VXLAN.programs.uplink), close: () => set.close() };
}
