// bpf/nat.bpf.c: NAT with connection tracking. Codecs mirror bpf/include/nat.h
// (checked against BTF by test/bpf/layout.test.ts). Addresses and ports are
// network order in the maps: codecs give them as numbers (be32/be16).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BpfMap, BpfProgram, numPossibleCpus, type BpfObject } from '../sys/libbpf.js';
import { openPrograms, pinMaps, type BuildSpec, type ProgramSet } from './builds.js';
import { struct, ipv4ToNum, u32 } from './codec.js';
import { NAT_HOT, sizeCache } from './memory.js';
import type { InstancePaths } from './paths.js';

export const NAT = {
  object: 'nat',
  programs: { xdp: 'xn_nat_xdp', tc: 'xn_nat_tc' },
  maps: {
    ct: 'xn_ct',
    ctStats: 'xn_ct_stats',
    config: 'xn_nat_config',
    snat: 'xn_snat',
    portmap: 'xn_portmap',
    addrs: 'xn_nat_addrs',
    /** XDP's cache of steady flows holds while this is unchanged: written after flows are deleted. */
    gen: 'xn_nat_gen',
  },
  limits: { snatRules: 1024, portmaps: 4096, addrs: 256 },
  /** Source ports of hairpin flows (no rule gives a range). */
  hairpinPorts: [1024, 65535],
} as const;

/**
 * Conntrack capacity in flows (two entries each), as `--conntrack-max` takes it.
 * The 256 entries a CPU on top were an LRU hash's headroom (it evicts before
 * it is full); the table is a plain hash now (bpf/lib/ct.h says why) and
 * keeps them: the size of pinned tables, and so their flow counts, stay as they were.
 */
export const CT_FLOWS = { default: 131072, min: 1024, max: 16_777_216 } as const;
const ctLruSlack = (cpus: number) => 256 * cpus;
export const ctEntriesFor = (flows: number, cpus = numPossibleCpus()): number => 2 * flows + ctLruSlack(cpus);
export const ctFlowsOf = (entries: number, cpus = numPossibleCpus()): number => Math.max(0, Math.floor((entries - ctLruSlack(cpus)) / 2));

/** Makes XDP forget its cached copies of flows (nat_hot, held while xn_nat_gen is unchanged): call after deleting flows. */
export function flowsDeleted(gen: BpfMap): void {
  const g = Buffer.alloc(8);
  g.writeBigUInt64LE(process.hrtime.bigint()); // a value never written before
  gen.update(u32(0), g);
}

export const IPPROTO = { ICMP: 1, TCP: 6, UDP: 17 } as const;

/** enum xn_ct_state */
export const CT_STATE = {
  NONE: 0, SYN_SENT: 1, SYN_RECV: 2, ESTABLISHED: 3, FIN_WAIT: 4, TIME_WAIT: 5, CLOSE: 6, UDP: 7, UDP_REPLIED: 8, ICMP: 9,
} as const;
export const CT_STATE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(CT_STATE).map(([k, v]) => [v, k.toLowerCase().replace(/_/g, '-')]),
);
/** enum xn_ct_flags */
export const CT_FLAGS = { REPLY: 1, FIN_ORIG: 2, FIN_REPLY: 4 } as const;
/** enum xn_snat_flags */
export const SNAT_FLAGS = { MASQUERADE: 1 } as const;

export const CtKey = struct('xn_ct_key', { src: 'be32', dst: 'be32', sport: 'be16', dport: 'be16', proto: 'u8', pad: { bytes: 3 } });
export const CtEntry = struct('xn_ct_entry', {
  last_seen_ns: 'u64',
  to_src: 'be32',
  to_dst: 'be32',
  to_sport: 'be16',
  to_dport: 'be16',
  state: 'u8',
  flags: 'u8',
  pad: 'u16',
  fib_ifindex: 'u32',
  fib_time: 'u32',
  fib_dmac: { bytes: 6 },
  fib_smac: { bytes: 6 },
  fib_mtu: 'u16',
  pad2: 'u16',
});
export const CtStats = struct('xn_ct_stats', {
  created: 'u64',
  insert_failed: 'u64',
  port_exhausted: 'u64',
  port_retries: 'u64',
  expired: 'u64',
  restored: 'u64',
});
export const NatConfig = struct('xn_nat_config', {
  tcp_syn_sent: 'u32',
  tcp_syn_recv: 'u32',
  tcp_established: 'u32',
  tcp_fin_wait: 'u32',
  tcp_time_wait: 'u32',
  tcp_close: 'u32',
  udp: 'u32',
  udp_replied: 'u32',
  icmp: 'u32',
});
export const SnatKey = struct('xn_snat_key', { prefixlen: 'u32', ifindex: 'u32', src: 'be32' });
export const SnatRule = struct('xn_snat_rule', { addr_min: 'be32', addr_max: 'be32', port_min: 'u16', port_max: 'u16', flags: 'u32' });
export const PortmapKey = struct('xn_portmap_key', { ifindex: 'u32', port: 'be16', proto: 'u8', pad: 'u8' });
export const Portmap = struct('xn_portmap', { to_addr: 'be32', to_port: 'be16', pad: 'u16' });

export const NAT_CODECS = [CtKey, CtEntry, CtStats, NatConfig, SnatKey, SnatRule, PortmapKey, Portmap];

export type CtKeyT = ReturnType<typeof CtKey.decode>;
export type CtEntryT = ReturnType<typeof CtEntry.decode>;
export type NatConfigT = ReturnType<typeof NatConfig.decode>;

/** The datapath's timeouts (seconds) where xn_nat_config holds 0: XN_CT_DEF_* (nf_conntrack's defaults). */
export const DEFAULT_TIMEOUTS: NatConfigT = {
  tcp_syn_sent: 120,
  tcp_syn_recv: 60,
  tcp_established: 432000,
  tcp_fin_wait: 120,
  tcp_time_wait: 120,
  tcp_close: 10,
  udp: 30,
  udp_replied: 120,
  icmp: 30,
};

const STATE_TIMEOUT: Record<number, keyof NatConfigT> = {
  [CT_STATE.SYN_SENT]: 'tcp_syn_sent',
  [CT_STATE.SYN_RECV]: 'tcp_syn_recv',
  [CT_STATE.ESTABLISHED]: 'tcp_established',
  [CT_STATE.FIN_WAIT]: 'tcp_fin_wait',
  [CT_STATE.TIME_WAIT]: 'tcp_time_wait',
  [CT_STATE.UDP]: 'udp',
  [CT_STATE.UDP_REPLIED]: 'udp_replied',
  [CT_STATE.ICMP]: 'icmp',
};

/** A state's idle timeout in seconds, as ct_timeout_ns() computes it (anything else counts as close). */
export function timeoutSec(config: NatConfigT, state: number): number {
  const field = STATE_TIMEOUT[state] ?? 'tcp_close';
  return config[field] || DEFAULT_TIMEOUTS[field];
}

/** The LPM key of a source rule: (egress ifindex, "a.b.c.d/len"). */
export function snatKey(ifindex: number, cidr: string): Buffer {
  const [addr, len = '32'] = cidr.split('/');
  const bits = Number(len);
  if (!Number.isInteger(bits) || bits < 0 || bits > 32) throw new Error(`malformed prefix: ${cidr}`);
  const mask = bits ? (0xffffffff << (32 - bits)) >>> 0 : 0;
  return SnatKey.encode({ prefixlen: 32 + bits, ifindex, src: (ipv4ToNum(addr) & mask) >>> 0 });
}

/** max_entries of the instance's pinned conntrack table, if there is one. */
export function pinnedCtEntries(inst: InstancePaths): number | undefined {
  const pin = join(inst.maps, NAT.maps.ct);
  return existsSync(pin) ? BpfMap.usePin(pin, (m) => m.info.maxEntries) : undefined;
}

/**
 * Sizes NAT's maps before load. A pinned conntrack table keeps its size
 * (libbpf adopts a pin only if max_entries matches); ctFlows sizes a new one
 * (default CT_FLOWS.default), and so new hot copies.
 */
const configureNat = (inst: InstancePaths, ctFlows?: number) => (o: BpfObject) => {
  const ct = pinnedCtEntries(inst) ?? ctEntriesFor(ctFlows ?? CT_FLOWS.default);
  o.setMaxEntries(NAT.maps.ct, ct);
  sizeCache(o, inst, NAT_HOT, ctFlowsOf(ct), numPossibleCpus()); // hot copies scale with the flows
};

/** Creates (or adopts) NAT's pinned maps without loading a program. */
export function pinNatMaps(inst: InstancePaths, opts: { ctFlows?: number } = {}): void {
  pinMaps(inst, NAT.object, configureNat(inst, opts.ctFlows));
}

/** NAT's programs in the instance (loaded once, then from their pins: objects/builds.ts). */
export function natPrograms(inst: InstancePaths, o: { upgrade?: boolean } = {}): ProgramSet {
  return openPrograms(inst, NAT.object, configureNat(inst), o);
}

export const NAT_BUILD: BuildSpec = { object: NAT.object, programs: Object.values(NAT.programs), configure: (inst) => configureNat(inst) };

/** NAT's program for the hook; its fd is valid until close(). */
export function loadNat(inst: InstancePaths, hook: 'xdp' | 'tc'): { prog: BpfProgram; close(): void } {
  const set = natPrograms(inst);
  return { prog: set.program(NAT.programs[hook]), close: () => set.close() };
}
