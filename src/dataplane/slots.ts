// Interface slots: every interface an xdpnet program runs on gets an index
// into the per-CPU counters array (xn_if_slots: ifindex → slot). BPF reaches
// an array entry without a call, where each hash lookup costs one; a bridge
// port's slot is in its port record, so its counters cost no lookup at all.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { XdpnetError } from '../errors.js';
import { BpfMap } from '../sys/libbpf.js';
import { ifIndexToName } from '../sys/libc.js';
import { sumPerCpu, u32 } from '../objects/codec.js';
import { IfStats, STATS_MAPS } from '../objects/stats.js';
import type { InstancePaths } from '../objects/paths.js';

type Counters = ReturnType<typeof IfStats.decode>;

function readSlots(m: BpfMap): Map<number, number> {
  return new Map(m.entries().map(([k, v]) => [k.readUInt32LE(0), v.readUInt32LE(0)] as const));
}

function zero(stats: BpfMap, slot: number): void {
  stats.update(u32(slot), Buffer.alloc(stats.valueBufSize));
}

/**
 * The interface's slot, given one (with zeroed counters) if it has none;
 * reset also zeroes an existing slot's counters (a new attachment starts
 * from 0). Call after an object of the instance is loaded: its maps exist.
 * Commands that change state run one at a time (the state lock), so the
 * lowest free slot stays free until it is written.
 */
export function claimSlot(inst: InstancePaths, ifindex: number, o: { reset?: boolean } = {}): number {
  return BpfMap.usePins(inst.maps, { slots: STATS_MAPS.ifSlots, stats: STATS_MAPS.ifStats }, ({ slots, stats }) => {
    const mine = slots.lookup(u32(ifindex))?.readUInt32LE(0); // looked up: only a new interface reads them all
    if (mine !== undefined) {
      if (o.reset) zero(stats, mine);
      return mine;
    }
    const slot = freeSlot(slots, readSlots(slots), stats.info.maxEntries);
    zero(stats, slot);
    slots.update(u32(ifindex), u32(slot));
    return slot;
  }) ?? (() => { throw new XdpnetError(`the instance's ${STATS_MAPS.ifSlots} map is missing`); })();
}

/** The lowest free slot (0 means none, so slots start at 1); slots of interfaces that no longer exist are reclaimed. */
function freeSlot(slots: BpfMap, have: Map<number, number>, max: number): number {
  const used = new Set(have.values());
  for (let s = 1; s < max; s++) if (!used.has(s)) return s;
  for (const [ifindex, s] of have) {
    if (ifIndexToName(ifindex) === undefined) {
      slots.delete(u32(ifindex));
      return s;
    }
  }
  throw new XdpnetError(`every counters slot is taken (${max - 1} interfaces)`, 'detach interfaces xdpnet no longer needs');
}

/** Gives the interface's slot back once none of its links is left (bridge, counter or NAT). */
export function releaseSlotIfUnused(inst: InstancePaths, ifindex: number): void {
  const re = new RegExp(`^(?:nat-)?${ifindex}-`);
  if (existsSync(inst.links) && readdirSync(inst.links).some((f) => re.test(f))) return;
  BpfMap.usePin(join(inst.maps, STATS_MAPS.ifSlots), (m) => m.delete(u32(ifindex)));
}

/** Counters of every interface with a slot, summed over CPUs, by ifindex. */
export function readCounters(slots: BpfMap, stats: BpfMap): Map<number, Counters> {
  const out = new Map<number, Counters>();
  for (const [ifindex, slot] of readSlots(slots)) {
    const v = stats.lookup(u32(slot));
    if (v) out.set(ifindex, sumPerCpu(IfStats, v));
  }
  return out;
}
