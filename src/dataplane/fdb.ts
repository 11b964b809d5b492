// The FDB (xn_fdb: (bridge, VLAN, MAC) → port or remote VTEP): this module
// alone writes it. The datapath learns into it; the control process adds
// static entries, removes, ages and recounts each bridge's learned entries.
import { readFileSync } from 'node:fs';
import { XdpnetError, UsageError } from '../errors.js';
import { FDB_FLAGS, FdbEntry, FdbKey } from '../objects/bridge.js';
import { u32, numToIpv4 } from '../objects/codec.js';
import type { InstancePaths } from '../objects/paths.js';
import { ifIndexToName } from '../sys/libc.js';
import { checkVlan, formatMac, formatVlanList, parseMac, parseMacInto, unicastMacProblem, VLAN_MIN } from './addr.js';
import { resolveIface } from './attach.js';
import {
  bridgeByName, noBridge, overlay, readBridges, readMaps, readPorts, readVlans, withMaps, writeBridge, type Maps,
} from './bridge-maps.js';

const NS_PER_SEC = 1_000_000_000n;

type FdbKeyRec = ReturnType<typeof FdbKey.decode>;
type FdbEntryRec = ReturnType<typeof FdbEntry.decode>;

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

const isLearned = (e: FdbEntryRec) => !(e.flags & (FDB_FLAGS.STATIC | FDB_FLAGS.LOCAL));
const ageNs = (e: FdbEntryRec, now: bigint) => (now > e.updated_ns ? now - e.updated_ns : 0n);
/** As the datapath decides it: a learned entry counts while now - updated <= ageing. */
const isExpired = (e: FdbEntryRec, ageingSec: number, now: bigint) => isLearned(e) && ageNs(e, now) > BigInt(ageingSec) * NS_PER_SEC;

/** Static entries carry the time they were written (shown nowhere, but a real CLOCK_MONOTONIC time). */
export const staticEntry = (ifindex: number, flags: number = FDB_FLAGS.STATIC, remote = 0) =>
  ({ ifindex, remote, updated_ns: process.hrtime.bigint(), flags, ageing_sec: 0 });

export function deleteFdb(m: Maps, match: (k: FdbKeyRec, e: FdbEntryRec) => boolean): number {
  const keys = m.fdb.entries().filter(([k, v]) => match(FdbKey.decode(k), FdbEntry.decode(v))).map(([k]) => k);
  if (keys.length) m.fdb.deleteBatch(Buffer.concat(keys), keys.length);
  return keys.length;
}

/**
 * Sets each bridge's learned count to what its FDB holds. The datapath only
 * ever adds to it, so the control process recounts after removing entries
 * (a learn racing this write can be missed until the next recount).
 */
export function recountLearned(m: Maps): void {
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


/** A bridge's local entry (its host port's MAC), written with the host port. */
export function addLocalEntry(m: Maps, bridge: number, mac: Buffer, ifindex: number): void {
  m.fdb.update(FdbKey.encode({ bridge, vid: VLAN_MIN, mac }), FdbEntry.encode(staticEntry(ifindex, FDB_FLAGS.STATIC | FDB_FLAGS.LOCAL)));
}

/** A VTEP went: the remote MACs of its (bridge, VLAN) lead nowhere now. */
export function deleteRemoteEntries(inst: InstancePaths, bridge: number, vid: number): number {
  return withMaps(inst, (m) => deleteFdb(m, (k, e) => k.bridge === bridge && k.vid === vid && e.remote !== 0)) ?? 0;
}

/** Static entries behind remote VTEPs: (bridge, VLAN, VTEP address), for the overlay's accepted senders. */
export function staticRemotes(inst: InstancePaths): Array<{ bridge: number; vid: number; remote: number }> {
  return readMaps(inst, (m) => m.fdb.entries().flatMap(([k, v]) => {
    const e = FdbEntry.decode(v);
    const { bridge, vid } = FdbKey.decode(k);
    return e.remote && e.flags & FDB_FLAGS.STATIC ? [{ bridge, vid, remote: e.remote }] : [];
  })) ?? [];
}

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
      t = overlay().remoteFdbTarget(inst, br.id, e.bridge, e.mac, e.remote, e.vlan);
    }
    const key = FdbKey.encode(t.key);
    m.fdb.update(key, FdbEntry.encode(staticEntry(t.ifindex, FDB_FLAGS.STATIC, t.remote)));
    if (t.vni !== undefined) overlay().syncPeers(inst); // decap without learning accepts the VTEP now
    recountLearned(m); // it may have replaced a learned entry
    return fdbRows(m).find((r) => r.key.equals(key))!.row;
  }) ?? noBridge(e.bridge);
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
    overlay().syncPeers(inst);
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
    overlay().syncPeers(inst);
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
