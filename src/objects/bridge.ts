// bpf/bridge.bpf.c: the L2 bridge. Codecs mirror bpf/include/bridge.h
// (checked against BTF by test/bpf/layout.test.ts).
import { BpfObject, BpfProgram } from '../sys/libbpf.js';
import { struct } from './codec.js';
import { objectPath, type InstancePaths } from './paths.js';

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
  },
  limits: { floodMax: 64, ports: 1024, bridges: 64, fdb: 131072 },
} as const;

export const PORT_FLAGS = { LEARNING: 1, HOST: 2 } as const;
export const FDB_FLAGS = { STATIC: 1, LOCAL: 2 } as const;

export const Bridge = struct('xn_bridge', {
  mac: { bytes: 6 },
  flags: 'u16',
  ageing_sec: 'u32',
  max_learned: 'u32',
  learned: 'u32',
  name: { bytes: 16 },
});
export const Port = struct('xn_port', { bridge: 'u32', pvid: 'u16', flags: 'u16' });
export const VlanKey = struct('xn_vlan_key', { ifindex: 'u32', vid: 'u16', pad: 'u16' });
export const Vlan = struct('xn_vlan', { untagged: 'u32' });
export const FdbKey = struct('xn_fdb_key', { bridge: 'u32', vid: 'u16', mac: { bytes: 6 } });
export const FdbEntry = struct('xn_fdb_entry', {
  ifindex: 'u32',
  remote: 'be32',
  updated_ns: 'u64',
  flags: 'u32',
  pad: 'u32',
});
export const FloodKey = struct('xn_flood_key', { bridge: 'u32', vid: 'u16', pad: 'u16' });
export const Flood = struct('xn_flood', { count: 'u32', ifindex: { bytes: 4 * BRIDGE.limits.floodMax } });
/** struct bpf_devmap_val: the port and the egress program run for it. */
export const DevmapVal = struct('bpf_devmap_val', { ifindex: 'u32', prog_fd: 'u32' });

export const BRIDGE_CODECS = [Bridge, Port, VlanKey, Vlan, FdbKey, FdbEntry, FloodKey, Flood];

/** Encodes a flood list (ifindexes) into struct xn_flood. */
export function floodList(ifindexes: number[]): Buffer {
  const ids = Buffer.alloc(4 * BRIDGE.limits.floodMax);
  ifindexes.forEach((x, i) => ids.writeUInt32LE(x, i * 4));
  return Flood.encode({ count: ifindexes.length, ifindex: ids });
}

/**
 * Loads the bridge object, adopting the instance's pinned maps. Returns the
 * ingress program for the hook and the devmap egress program; the object (and
 * their fds) stay open until close().
 */
export function loadBridge(inst: InstancePaths, hook: 'xdp' | 'tc'): { prog: BpfProgram; egress: BpfProgram; close(): void } {
  const ingress = BRIDGE.programs[hook];
  const obj = BpfObject.open(objectPath(BRIDGE.object), { pinRoot: inst.maps, programs: [ingress, BRIDGE.programs.egress] });
  try {
    obj.load();
    return { prog: obj.program(ingress), egress: obj.program(BRIDGE.programs.egress), close: () => obj.close() };
  } catch (e) {
    obj.close();
    throw e;
  }
}
