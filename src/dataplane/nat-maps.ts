// NAT's pinned maps (rules, host addresses, conntrack table and its
// counters and timeouts): opened here, the conntrack table sized here.
import { existsSync, mkdirSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { XdpnetError } from '../errors.js';
import { mapCounter } from '../objects/mapcount.js';
import { NAT_HOT } from '../objects/memory.js';
import { forgetBuilds } from '../objects/builds.js';
import { ctEntriesFor, ctFlowsOf, NAT, pinNatMaps, pinnedCtEntries } from '../objects/nat.js';
import type { InstancePaths } from '../objects/paths.js';
import { BpfMap } from '../sys/libbpf.js';
import { natLinks } from './nat-links.js';

export type NatMaps = Record<keyof typeof NAT.maps, BpfMap>;

/** Runs fn with the instance's NAT maps; undefined when there are none (reading never creates state). `create` pins them. */
export function withNatMaps<T>(inst: InstancePaths, fn: (m: NatMaps) => T, create = false): T | undefined {
  if (create) ensureNatTable(inst);
  return BpfMap.usePins(inst.maps, NAT.maps, fn);
}

export interface CtTable {
  maxFlows: number;
  maxEntries: number;
  /** Set when a table of another size was replaced (possible only with no NAT program attached). */
  replaced?: { maxFlows: number; entries: number };
}

/**
 * Creates the instance's NAT maps if missing, the conntrack table sized for
 * `flows` (default CT_FLOWS.default). A BPF map cannot be resized: a table of
 * another size is refused while NAT programs use it, and replaced (its
 * entries dropped) when none does. Without `flows` an existing table stays.
 */
export function ensureNatTable(inst: InstancePaths, flows?: number): CtTable {
  const have = pinnedCtEntries(inst);
  let replaced: CtTable['replaced'];
  if (flows !== undefined && have !== undefined && have !== ctEntriesFor(flows)) {
    const links = natLinks(inst);
    if (links.length) {
      throw new XdpnetError(`the conntrack table holds up to ${ctFlowsOf(have)} flows and cannot be resized while NAT runs (on ${links.map((l) => l.iface ?? `ifindex ${l.ifindex}`).join(', ')})`,
        `omit --conntrack-max to keep ${ctFlowsOf(have)}, or remove every NAT rule first (xdpnet nat flush; tracked flows are lost) and add it again with --conntrack-max ${flows}`);
    }
    const pin = join(inst.maps, NAT.maps.ct);
    replaced = { maxFlows: ctFlowsOf(have), entries: BpfMap.usePin(pin, (m) => mapCounter().entries(m)) ?? 0 };
    unlinkSync(pin); // no program holds it any more: the next load creates the new size
    rmSync(join(inst.maps, NAT_HOT.map), { force: true }); // and hot copies sized for it
    forgetBuilds(inst, NAT.object); // pinned programs hold the old maps
  }
  if (!existsSync(join(inst.maps, NAT.maps.ct))) {
    mkdirSync(inst.maps, { recursive: true });
    pinNatMaps(inst, { ctFlows: flows });
  }
  const maxEntries = pinnedCtEntries(inst)!;
  return { maxFlows: ctFlowsOf(maxEntries), maxEntries, replaced };
}

/** The conntrack table's size and fill, if the instance has one. */
export function ctTable(inst: InstancePaths): (CtTable & { entries: number }) | undefined {
  return BpfMap.usePin(join(inst.maps, NAT.maps.ct), (m) => ({ maxFlows: ctFlowsOf(m.info.maxEntries), maxEntries: m.info.maxEntries, entries: mapCounter().entries(m) }));
}
