// The bridge's pinned maps, read and changed by the bridge (ports, bridges)
// and the FDB modules; nothing else writes them:
//   xn_bridges  id → name, MAC, ageing, learned count    xn_ports    ifindex → bridge, PVID, flags
//   xn_vlans    (port, VLAN) → tagged or not             xn_flood    (bridge, VLAN) → member ports (tc floods)
//   xn_fdb      (bridge, VLAN, MAC) → port (fdb.ts alone writes it)   xn_tx_ports ifindex → devmap slot + egress program (XDP)
// The overlay (vxlan.ts) uses the bridge, never the reverse: what the bridge
// must ask of it comes through the hooks vxlan.ts registers here.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { XdpnetError } from '../errors.js';
import {
  BR_GEN_MAP, Bridge, BRIDGE, DevmapVal, invalidateCache, decodeFloodList, FloodKey, floodList, pinBridgeMaps, Port, Vlan, VlanKey,
} from '../objects/bridge.js';
import { cString, u32 } from '../objects/codec.js';
import type { InstancePaths } from '../objects/paths.js';
import { BpfMap, type BpfProgram } from '../sys/libbpf.js';

export interface VlanMembership {
  vid: number;
  tagged: boolean;
}


export type Maps = Record<keyof typeof BRIDGE.maps, BpfMap>;
export type BridgeRec = Omit<ReturnType<typeof Bridge.decode>, 'name'> & { id: number; name: string };
export type PortRec = ReturnType<typeof Port.decode> & { ifindex: number };

/**
 * Runs fn with the instance's bridge maps; undefined when the instance has
 * none (so reading never creates state). `create` pins them first: the
 * bridge object's maps, loaded without programs.
 */
/** The bridge maps, for reading only. */
export function readMaps<T>(inst: InstancePaths, fn: (m: Maps) => T): T | undefined {
  return BpfMap.usePins(inst.maps, BRIDGE.maps, fn);
}

/** The bridge maps, for changing: the datapath's cached decisions are invalidated after (even a failed change). */
export function withMaps<T>(inst: InstancePaths, fn: (m: Maps) => T, create: boolean | { fdbSize?: number } = false): T | undefined {
  if (create) {
    mkdirSync(inst.maps, { recursive: true });
    pinBridgeMaps(inst, create === true ? {} : create);
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

/**
 * Points every devmap entry at this egress program (an upgrade): each entry
 * is replaced whole, so a frame sees the old program or the new one. Returns
 * the entries changed, with the program id each had.
 */
export function repointEgress(inst: InstancePaths, egress: BpfProgram, egressId: number): Array<{ ifindex: number; from: number }> {
  return BpfMap.usePin(join(inst.maps, BRIDGE.maps.txPorts), (m) => m.entries().flatMap(([k, v]) => {
    const { ifindex, prog_fd: from } = DevmapVal.decode(v); // a lookup gives the program's id
    if (from === egressId || from === 0) return []; // 0: an entry without an egress program stays so
    m.update(k, DevmapVal.encode({ ifindex, prog_fd: egress.fd }));
    return [{ ifindex, from }];
  })) ?? [];
}

export function noBridge(name: string): never {
  throw new XdpnetError(`bridge ${name} not found`, 'list bridges with `xdpnet bridge show`; create one with `xdpnet bridge add NAME`');
}

export function readBridges(m: Maps): BridgeRec[] {
  return m.bridges.entries()
    .map(([k, v]) => {
      const b = Bridge.decode(v);
      return { ...b, id: k.readUInt32LE(0), name: cString(b.name) };
    })
    .sort((a, b) => a.id - b.id);
}

export function bridgeByName(m: Maps, name: string): BridgeRec {
  return readBridges(m).find((b) => b.name === name) ?? noBridge(name);
}

export function writeBridge(m: Maps, b: BridgeRec, flags = 0): void {
  m.bridges.update(u32(b.id), Bridge.encode({ ...b, name: Buffer.from(b.name) }), flags);
}

export function readPorts(m: Maps): PortRec[] {
  return m.ports.entries().map(([k, v]) => ({ ...Port.decode(v), ifindex: k.readUInt32LE(0) }));
}

/** VLAN memberships by port ifindex, sorted by VLAN. */
export function readVlans(m: Maps): Map<number, VlanMembership[]> {
  const out = new Map<number, VlanMembership[]>();
  for (const [k, v] of m.vlans.entries()) {
    const { ifindex, vid } = VlanKey.decode(k);
    const list = out.get(ifindex) ?? out.set(ifindex, []).get(ifindex)!;
    list.push({ vid, tagged: !Vlan.decode(v).untagged });
  }
  for (const list of out.values()) list.sort((a, b) => a.vid - b.vid);
  return out;
}

export const floodKey = (bridge: number, vid: number) => FloodKey.encode({ bridge, vid, pad: 0 });

export function floodMembers(m: Maps, bridge: number, vid: number): number[] {
  const v = m.flood.lookup(floodKey(bridge, vid));
  return v ? decodeFloodList(v) : [];
}

/** Rewrites one flood list; the datapath sees the old or the new list, never a mix. */
export function setFloodMembers(m: Maps, bridge: number, vid: number, members: number[]): void {
  if (members.length) m.flood.update(floodKey(bridge, vid), floodList(members));
  else m.flood.delete(floodKey(bridge, vid));
}

/** What the bridge and the FDB ask of the overlay (registered by vxlan.ts; none: no overlay). */
export interface OverlayHooks {
  /** A VNI of the bridge, when it is an overlay bridge. */
  overlayVni(inst: InstancePaths, bridge: number): number | undefined;
  /** Uplink ifindex → the VNIs it carries. */
  vtepUplinks(inst: InstancePaths): Map<number, number[]>;
  /** bridge del: removes the bridge's VTEPs when forced, refuses otherwise. */
  removeBridgeVteps(inst: InstancePaths, bridge: number, name: string, force: boolean): void;
  /** The FDB entry of a MAC behind a remote VTEP (`fdb add --remote`). */
  remoteFdbTarget(inst: InstancePaths, bridge: number, name: string, mac: Buffer, remote: string, vlan?: number):
    { key: { bridge: number; vid: number; mac: Buffer }; ifindex: number; remote: number; vni: number };
  /** After the FDB's remote entries changed: the senders decap accepts follow them. */
  syncPeers(inst: InstancePaths): void;
}

const NO_OVERLAY: OverlayHooks = {
  overlayVni: () => undefined,
  vtepUplinks: () => new Map(),
  removeBridgeVteps: () => undefined,
  remoteFdbTarget: (_i, _b, name) => { throw new XdpnetError(`bridge ${name} has no VTEP`, 'add one first: xdpnet vxlan add'); },
  syncPeers: () => undefined,
};

let hooks = NO_OVERLAY;
export function registerOverlay(h: OverlayHooks): void {
  hooks = h;
}
export const overlay = (): OverlayHooks => hooks;
