// The FDB (xn_fdb: (bridge, VLAN, MAC) → port or remote VTEP): this module
// alone writes it. The datapath learns into it; the control process adds
// static entries, removes, ages and recounts each bridge's learned entries.
// Over 500 lines because it is the FDB's one writer (test/unit/structure.test.ts holds that):
// static entries, learning limits, ageing, load/flush and the agent's remote entries all write here.
import { readFileSync } from 'node:fs';
import { XdpnetError, UsageError } from '../errors.js';
import { FDB_FLAGS, FdbEntry, FdbKey, Port, VlanKey } from '../objects/bridge.js';
import { u32, numToIpv4 } from '../objects/codec.js';
import type { InstancePaths } from '../objects/paths.js';
import type { BpfMap } from '../sys/libbpf.js';
import { ifIndexToName } from '../sys/libc.js';
import { checkVlan, formatMac, formatVlanList, parseMac, parseMacInto, unicastMacProblem, VLAN_MIN } from './addr.js';
import { resolveIface } from './attach.js';
import {
  bridgeByName, noBridge, overlay, readBridges, readMaps, readPorts, readVlans, withMaps, writeBridge, type BridgeRec, type Maps, type PortRec,
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

/** What checking an entry's port asks of the bridge maps. */
interface PortView { port(ifindex: number): PortRec | undefined; inVlan(ifindex: number, vid: number): boolean; vlans(ifindex: number): number[] }

/** Every port and VLAN read once: a bulk load checks each row without a syscall. */
function portsRead(m: Maps): PortView {
  const ports = new Map(readPorts(m).map((p) => [p.ifindex, p]));
  const vlans = readVlans(m);
  return { port: (i) => ports.get(i), inVlan: (i, vid) => (vlans.get(i) ?? []).some((v) => v.vid === vid), vlans: (i) => (vlans.get(i) ?? []).map((v) => v.vid) };
}

/** Looked up per entry: one entry costs the same beside ten ports as beside a thousand (the maps are hashes of many buckets). */
function portsLookedUp(m: Maps): PortView {
  return {
    port: (i) => { const v = m.ports.lookup(u32(i)); return v && { ...Port.decode(v), ifindex: i }; },
    inVlan: (i, vid) => m.vlans.lookup(VlanKey.encode({ ifindex: i, vid, pad: 0 })) !== undefined,
    vlans: (i) => (readVlans(m).get(i) ?? []).map((v) => v.vid), // for the error message only
  };
}

/**
 * Validates FDB rows against the bridges, ports and VLANs as they are now and
 * returns the key. Resolves entries' (bridge, port, VLAN); checks the MAC
 * unless it is left out (`fdb load` checks it in place).
 */
function fdbTargets(m: Maps, netns?: string, view: PortView = portsRead(m)): (e: Omit<FdbEntryInput, 'mac'> & { mac?: Buffer }) => { key: FdbKeyRec; ifindex: number; bridgeMac: Buffer } {
  const bridges = new Map(readBridges(m).map((b) => [b.name, b]));
  const ifindexes = new Map<string, number>();
  return (e) => {
    const br = bridges.get(e.bridge) ?? noBridge(e.bridge);
    if (e.port === undefined) throw new UsageError('an FDB entry needs a port (--port) or a remote VTEP (--remote)');
    const ifindex = ifindexes.get(e.port) ?? ifindexes.set(e.port, resolveIface(e.port, netns)).get(e.port)!;
    const port = view.port(ifindex);
    if (port?.bridge !== br.id) throw new XdpnetError(`${e.port} is not a port of bridge ${e.bridge}`, `make it one: xdpnet attach ${e.port} --bridge ${e.bridge}`);
    const vid = e.vlan === undefined ? port.pvid || VLAN_MIN : checkVlan(e.vlan);
    if (!view.inVlan(ifindex, vid)) {
      const err = new XdpnetError(`${e.port} is not in VLAN ${vid}`, `its VLANs: ${formatVlanList(view.vlans(ifindex))}; name one with --vlan`);
      throw e.vlan === undefined ? err : tagged('vlan', err);
    }
    if (e.mac) checkNotBridgeMac(e.mac, br.mac, e.bridge);
    return { key: { bridge: br.id, vid, mac: e.mac ?? Buffer.alloc(6) }, ifindex, bridgeMac: br.mac };
  };
}

function checkNotBridgeMac(mac: Buffer, bridgeMac: Buffer, bridge: string): void {
  if (mac.equals(bridgeMac)) throw new XdpnetError(`${formatMac(mac)} is bridge ${bridge}'s own MAC address`, 'its local entry goes with the bridge');
}

/**
 * Adds (or replaces) a static entry: never aged, never moved by learning. One
 * entry is looked up, never the whole FDB (131072 buckets a scan): a CNI ADD
 * adds one per container.
 */
export function addFdb(inst: InstancePaths, e: FdbEntryInput, netns?: string): FdbRow {
  return withMaps(inst, (m) => {
    let t: { key: FdbKeyRec; ifindex: number; remote?: number; vni?: number };
    if (e.remote === undefined) t = fdbTargets(m, netns, portsLookedUp(m))(e);
    else {
      const br = bridgeByName(m, e.bridge);
      if (e.mac.equals(br.mac)) throw new XdpnetError(`${formatMac(e.mac)} is bridge ${e.bridge}'s own MAC address`, 'its local entry goes with the bridge');
      t = overlay().remoteFdbTarget(inst, br.id, e.bridge, e.mac, e.remote, e.vlan);
    }
    const key = FdbKey.encode(t.key);
    const old = m.fdb.lookup(key);
    const entry = staticEntry(t.ifindex, FDB_FLAGS.STATIC, t.remote);
    m.fdb.update(key, FdbEntry.encode(entry));
    if (t.vni !== undefined) overlay().syncPeers(inst); // decap without learning accepts the VTEP now
    if (old && isLearned(FdbEntry.decode(old))) recountLearned(m); // it replaced a learned entry
    const br = readBridges(m).find((b) => b.id === t.key.bridge);
    return fdbRow(t.key, entry, br, ifIndexToName(t.ifindex) ?? null);
  }) ?? noBridge(e.bridge);
}

/** Deletes the entries match picks; returns them as `fdb show` rows. */
function removeRows(m: Maps, match: (k: FdbKeyRec, e: FdbEntryRec) => boolean): FdbRow[] {
  const gone = fdbRows(m).filter((r) => match(FdbKey.decode(r.key), r.entry));
  if (gone.length) m.fdb.deleteBatch(Buffer.concat(gone.map((r) => r.key)), gone.length);
  return gone.map((r) => r.row);
}

/** Removes a MAC's entry in one VLAN, or in all VLANs of the bridge. Returns the entries removed. */
export function delFdb(inst: InstancePaths, mac: Buffer, bridge: string, vlan?: number): FdbRow[] {
  return withMaps(inst, (m) => {
    const br = bridgeByName(m, bridge);
    const match = (k: FdbKeyRec) => k.bridge === br.id && k.mac.equals(mac) && (vlan === undefined || k.vid === vlan);
    const rows = fdbRows(m).filter((r) => match(FdbKey.decode(r.key)));
    const where = `${formatMac(mac)} on bridge ${bridge}${vlan === undefined ? '' : ` VLAN ${vlan}`}`;
    if (!rows.length) throw new XdpnetError(`no FDB entry for ${where}`, `see \`xdpnet fdb show --bridge ${bridge}\``);
    if (rows.some((r) => r.row.type === 'local')) throw new XdpnetError(`the entry for ${where} is the bridge's own (local)`, 'it goes with the bridge');
    const gone = removeRows(m, match);
    recountLearned(m);
    overlay().syncPeers(inst);
    return gone;
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

/** What turns an entry into an `fdb show` row (bridge names and interface names looked up once each). */
function rowMaker(m: Maps, now: bigint): (key: Buffer, e: FdbEntryRec) => FdbRow {
  const bridges = new Map(readBridges(m).map((b) => [b.id, b]));
  const ifnames = new Map<number, string | null>();
  const ifname = (i: number) => (ifnames.has(i) ? ifnames.get(i)! : ifnames.set(i, ifIndexToName(i) ?? null).get(i)!);
  return (key, e) => {
    const k = FdbKey.decode(key);
    return fdbRow(k, e, bridges.get(k.bridge), ifname(e.ifindex), now);
  };
}

function fdbRow(k: FdbKeyRec, e: FdbEntryRec, br: BridgeRec | undefined, port: string | null, now = process.hrtime.bigint()): FdbRow {
  const type: FdbType = e.flags & FDB_FLAGS.LOCAL ? 'local' : e.flags & FDB_FLAGS.STATIC ? 'static' : 'learned';
  return {
    mac: formatMac(k.mac), bridge: br?.name ?? `#${k.bridge}`, port, ifindex: e.ifindex, vlan: k.vid, type,
    age: type === 'learned' ? Number(ageNs(e, now) / NS_PER_SEC) : null,
    expired: isExpired(e, br?.ageing_sec ?? 0, now),
    remote: e.remote ? numToIpv4(e.remote) : null,
  };
}

function fdbRows(m: Maps, now = process.hrtime.bigint()): Array<{ key: Buffer; entry: FdbEntryRec; row: FdbRow }> {
  const row = rowMaker(m, now);
  return m.fdb.entries().map(([key, v]) => {
    const entry = FdbEntry.decode(v);
    return { key, entry, row: row(key, entry) };
  });
}

/** Field offsets of the FDB key and entry, from the codecs test/bpf/layout.test.ts checks against BTF. */
const at = (c: { fields: Array<{ name: string; offset: number }> }, f: string) => c.fields.find((x) => x.name === f)!.offset;
const FDB_KEY_BRIDGE = at(FdbKey, 'bridge');
const FDB_ENTRY_FLAGS = at(FdbEntry, 'flags');

/**
 * Entries by bridge and type, expired ones included: one batched pass over
 * the raw table reading two fields an entry, no row objects, names or sort
 * (what a metrics scrape needs of a table of up to 131k entries).
 */
export function fdbCounts(inst: InstancePaths): Map<string, Record<FdbType, number>> {
  return readMaps(inst, (m) => {
    const byId = new Map<number, Record<FdbType, number>>();
    const ks = m.fdb.info.keySize;
    const vs = m.fdb.valueBufSize;
    m.fdb.scan((keys, vals, n) => {
      for (let i = 0; i < n; i++) {
        const id = keys.readUInt32LE(i * ks + FDB_KEY_BRIDGE);
        const flags = vals.readUInt32LE(i * vs + FDB_ENTRY_FLAGS);
        let c = byId.get(id);
        if (!c) byId.set(id, (c = { static: 0, learned: 0, local: 0 }));
        c[flags & FDB_FLAGS.LOCAL ? 'local' : flags & FDB_FLAGS.STATIC ? 'static' : 'learned']++;
      }
    }, 16384);
    const names = new Map(readBridges(m).map((b) => [b.id, b.name]));
    return new Map([...byId].map(([id, c]) => [names.get(id) ?? `#${id}`, c]));
  }) ?? new Map();
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

/** Removes entries by bridge, port and kind; local entries stay (they go with their bridge). Returns the entries removed. */
export function flushFdb(inst: InstancePaths, f: Omit<FdbFilter, 'all'> = {}, netns?: string): FdbRow[] {
  const ifindex = f.port === undefined ? undefined : resolveIface(f.port, netns);
  return withMaps(inst, (m) => {
    const id = f.bridge === undefined ? undefined : bridgeByName(m, f.bridge).id;
    if (ifindex !== undefined && !m.ports.lookup(u32(ifindex))) throw new XdpnetError(`${f.port} is not a bridge port`, 'see `xdpnet bridge show`');
    const gone = removeRows(m, (k, e) => !(e.flags & FDB_FLAGS.LOCAL) && (id === undefined || k.bridge === id) &&
      (ifindex === undefined || e.ifindex === ifindex) && (!f.learned || isLearned(e)));
    recountLearned(m);
    overlay().syncPeers(inst);
    return gone;
  }) ?? (f.bridge ? noBridge(f.bridge) : []);
}

/** Fields of an `fdb load` row: what `fdb show --json` prints, so its output loads back. */
const ROW_FIELDS = ['mac', 'bridge', 'port', 'vlan', 'ifindex', 'type', 'age', 'expired', 'remote'];

/** Tags an error with the field of the row it is about (`fdb load` names row and field). */
function tagged<E>(field: string, e: E): E {
  if (e instanceof XdpnetError && !(e as { field?: string }).field) Object.assign(e, { field });
  return e;
}
function inField<T>(field: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw tagged(field, e);
  }
}

interface LoadRow { mac: string; bridge: string; port?: string; vlan?: number; remote?: string; local: boolean }

/**
 * One row of an `fdb load` file, checked but for the MAC (parsed in place).
 * Rows of `fdb show --json` load back: ifindex, age and expired are
 * informational (the port's name wins: ifindexes differ between hosts),
 * learned rows load as static ones, local rows are the bridges' own and
 * skipped, and a row with a remote VTEP loads as one behind that VTEP.
 */
function checkFdbRow(r: unknown): LoadRow {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new UsageError('expected an object like {"mac": "02:42:ac:11:00:02", "bridge": "br0", "port": "veth1"}');
  const o = r as Record<string, unknown>;
  for (const k in o) if (!ROW_FIELDS.includes(k)) throw tagged(k, new UsageError(`unknown field '${k}' (fields: ${ROW_FIELDS.join(', ')})`));
  const str = (k: string, optional = false) => {
    if (optional && (o[k] === undefined || o[k] === null)) return undefined;
    if (typeof o[k] !== 'string') throw tagged(k, new UsageError(`'${k}' must be a string`));
    return o[k] as string;
  };
  const kind = (k: string, ok: (v: unknown) => boolean, what: string) => {
    if (o[k] !== undefined && !ok(o[k])) throw tagged(k, new UsageError(`'${k}' must be ${what}`));
  };
  kind('ifindex', (v) => Number.isInteger(v) && (v as number) > 0, 'a positive integer');
  kind('age', (v) => v === null || (typeof v === 'number' && v >= 0), 'a number of seconds or null');
  kind('expired', (v) => typeof v === 'boolean', 'true or false');
  kind('type', (v) => v === 'static' || v === 'learned' || v === 'local', "'static', 'learned' or 'local'");
  const remote = str('remote', true);
  const port = str('port', remote !== undefined);
  return {
    mac: str('mac')!, bridge: str('bridge')!, port, remote, local: o.type === 'local',
    vlan: o.vlan === undefined ? undefined : inField('vlan', () => checkVlan(o.vlan)),
  };
}

/**
 * Adds or replaces static entries from a JSON file in one batch update, all or
 * nothing: every row is checked (a bad one is named by index and field), then
 * the room is checked, and only then is anything written; should the kernel
 * still refuse part of the batch, what was written is undone. Built for bulk:
 * rows share few (bridge, port, VLAN) targets, each resolved and encoded once;
 * MACs are parsed straight into the key buffer.
 */
export function loadFdb(inst: InstancePaths, file: string, netns?: string, o: { rows?: boolean } = {}): { loaded: number; skipped: number; rows?: FdbRow[] } {
  let rows: unknown;
  try {
    rows = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new XdpnetError(`cannot read ${file}: ${(e as Error).message}`);
  }
  if (!Array.isArray(rows)) throw new UsageError(`${file}: expected a JSON array of {"mac", "bridge", "port", "vlan"?} objects`);
  if (!rows.length) return { loaded: 0, skipped: 0, rows: o.rows ? [] : undefined };
  const list = rows as unknown[];
  return withMaps(inst, (m) => {
    const resolve = fdbTargets(m, netns);
    const bridges = new Map(readBridges(m).map((b) => [b.name, b]));
    const targets = new Map<string, { key: Buffer; value: Buffer; bridgeMac: Buffer; vni?: number }>();
    const macOff = FdbKey.fields.find((f) => f.name === 'mac')!.offset;
    const keys = Buffer.alloc(list.length * FdbKey.size);
    const values = Buffer.alloc(list.length * FdbEntry.size);
    let n = 0;
    let skipped = 0;
    let remotes = false;
    for (let i = 0; i < list.length; i++) {
      try {
        const r = checkFdbRow(list[i]);
        if (r.local) { // the bridge's own entry: it comes with the bridge
          skipped++;
          continue;
        }
        const br = inField('bridge', () => bridges.get(r.bridge) ?? noBridge(r.bridge));
        const id = `${r.bridge}\n${r.remote ?? ''}\n${r.remote ? '' : r.port}\n${r.vlan ?? ''}`;
        let t = targets.get(id);
        if (!t) {
          if (r.remote !== undefined) {
            const x = inField('remote', () => overlay().remoteFdbTarget(inst, br.id, r.bridge, Buffer.alloc(6, 2), r.remote!, r.vlan));
            t = { key: FdbKey.encode(x.key), value: FdbEntry.encode(staticEntry(x.ifindex, FDB_FLAGS.STATIC, x.remote)), bridgeMac: br.mac, vni: x.vni };
            remotes = true;
          } else {
            const x = inField('port', () => resolve({ bridge: r.bridge, port: r.port, vlan: r.vlan }));
            t = { key: FdbKey.encode(x.key), value: FdbEntry.encode(staticEntry(x.ifindex)), bridgeMac: x.bridgeMac };
          }
          targets.set(id, t);
        }
        const off = n * FdbKey.size;
        t.key.copy(keys, off);
        const at = off + macOff;
        inField('mac', () => {
          if (!parseMacInto(r.mac, keys, at)) parseMac(r.mac); // throws the usual error
          const problem = unicastMacProblem(keys, at);
          if (problem) throw problem;
          if (keys.readUInt32LE(at) === t!.bridgeMac.readUInt32LE(0) && keys.readUInt16LE(at + 4) === t!.bridgeMac.readUInt16LE(4)) {
            checkNotBridgeMac(keys.subarray(at, at + 6), t!.bridgeMac, r.bridge);
          }
        });
        t.value.copy(values, n * FdbEntry.size);
        n++;
      } catch (e) {
        if (e instanceof XdpnetError) {
          const field = (e as { field?: string }).field;
          e.message = `${file}[${i}]${field ? `.${field}` : ''}: ${e.message}`;
        }
        throw e;
      }
    }
    if (!n) return { loaded: 0, skipped, rows: o.rows ? [] : undefined };
    const undo = checkRoom(m.fdb, keys, n, file);
    try {
      m.fdb.updateBatch(keys, values, n);
    } catch (e) {
      undo();
      throw e;
    }
    if (remotes) overlay().syncPeers(inst); // decap without learning accepts those VTEPs now
    // Rows that replaced learned entries leave the learned count high until the next ageing pass recounts
    // (as bridge.h says); only a learning limit makes it matter now, and a full recount would cost more than the load.
    if (readBridges(m).some((b) => b.max_learned)) recountLearned(m);
    if (!o.rows) return { loaded: n, skipped };
    const written = new Set<string>();
    for (let i = 0; i < n; i++) written.add(keys.toString('latin1', i * FdbKey.size, (i + 1) * FdbKey.size));
    return { loaded: n, skipped, rows: fdbRows(m).filter((r) => written.has(r.key.toString('latin1'))).map((r) => r.row) };
  }) ?? noBridge(String((list[0] as { bridge?: unknown })?.bridge));
}

/**
 * Refuses a load that does not fit before writing anything (the kernel would
 * write entries until the table is full, then fail with E2BIG). Returns what
 * undoes the load: new keys deleted, replaced entries written back.
 */
function checkRoom(fdb: BpfMap, keys: Buffer, n: number, file: string): () => void {
  const ks = FdbKey.size;
  const have = new Map(fdb.entries().map(([k, v]) => [k.toString('latin1'), v]));
  const fresh = new Set<string>();
  for (let i = 0; i < n; i++) {
    const k = keys.toString('latin1', i * ks, (i + 1) * ks);
    if (!have.has(k)) fresh.add(k);
  }
  const max = fdb.info.maxEntries;
  const room = max - have.size;
  if (fresh.size > room) {
    throw new XdpnetError(`${file}: ${fresh.size} new entries do not fit: the FDB holds ${max}, ${have.size} are in use, room for ${room}; nothing was written`,
      'load fewer, flush entries (xdpnet fdb flush), or give the instance a larger FDB: xdpnet bridge add NAME --fdb-size N (when its first bridge is created)');
  }
  return () => {
    for (const k of fresh) fdb.delete(Buffer.from(k, 'latin1'));
    for (let i = 0; i < n; i++) {
      const k = keys.toString('latin1', i * ks, (i + 1) * ks);
      const old = have.get(k);
      if (old) fdb.update(Buffer.from(k, 'latin1'), old);
    }
  };
}

/**
 * One ageing pass: deletes learned entries older than their bridge's ageing
 * and recounts. The datapath already ignores them; this frees their slots
 * (and the learning limit).
 */
export function ageFdb(inst: InstancePaths): { removed: FdbRow[]; remaining: number } {
  // No invalidation: it removes only entries the datapath already ignores, and a
  // cached decision never outlives its entry's ageing.
  return readMaps(inst, (m) => {
    const now = process.hrtime.bigint();
    const ageing = new Map(readBridges(m).map((b) => [b.id, b.ageing_sec]));
    const stale = (k: Buffer, v: Buffer) => isExpired(FdbEntry.decode(v), ageing.get(FdbKey.decode(k).bridge) ?? 0, now);
    const row = rowMaker(m, now);
    const removed: FdbRow[] = [];
    for (const [k, v] of m.fdb.entries()) {
      if (!stale(k, v)) continue;
      const cur = m.fdb.lookup(k); // the datapath may have refreshed it since the batch read
      if (cur && stale(k, cur) && m.fdb.delete(k)) removed.push(row(k, FdbEntry.decode(cur)));
    }
    recountLearned(m);
    return { removed, remaining: m.fdb.entries().length };
  }) ?? { removed: [], remaining: 0 };
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
    // one batch each way: 50 000 single updates took seconds of the agent's convergence
    const ks: Buffer[] = [];
    const vs: Buffer[] = [];
    for (const [mac, remote] of want) {
      if (have.get(mac) === remote) continue;
      ks.push(FdbKey.encode({ bridge, vid, mac: parseMac(mac) }));
      vs.push(FdbEntry.encode(staticEntry(uplink, FDB_FLAGS.STATIC, remote)));
    }
    if (ks.length) m.fdb.updateBatch(Buffer.concat(ks), Buffer.concat(vs), ks.length);
    const gone = [...have.keys()].filter((mac) => !want.has(mac)).map((mac) => FdbKey.encode({ bridge, vid, mac: parseMac(mac) }));
    if (gone.length) m.fdb.deleteKeys(Buffer.concat(gone), gone.length);
    const added = ks.length;
    const removed = gone.length;
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
