// Conntrack from the control process: flows listed (a columnar store with its
// own index and sort, so a million entries cost no object apiece), flushed
// and garbage-collected with the datapath's own expiry test; counters and
// timeouts.
import { UsageError } from '../errors.js';
import { sumPerCpu, u32 } from '../objects/codec.js';
import {
  CT_FLAGS, CT_STATE_NAMES, CtEntry, ctFlowsOf, CtKey, CtStats, DEFAULT_TIMEOUTS, flowsDeleted, NatConfig, timeoutSec, type CtEntryT, type CtKeyT,
  type NatConfigT,
} from '../objects/nat.js';
import { mapCounter } from '../objects/mapcount.js';
import type { InstancePaths } from '../objects/paths.js';
import { monotonicCoarseNs } from '../sys/libc.js';
import { parsePrefix, PROTO_NAME, type Prefix } from './inet.js';
import { withNatMaps, type NatMaps } from './nat-maps.js';

export interface Flow {
  proto: string;
  state: string;
  /** The original direction as it arrived, and as it left (translated). */
  src: string; sport: number; dst: string; dport: number;
  toSrc: string; toSport: number; toDst: string; toDport: number;
  idleSec: number;
  timeoutSec: number;
  expired: boolean;
}

export interface FlowFilter { src?: string; dst?: string }

function readConfig(m: NatMaps): NatConfigT {
  const v = m.config.lookup(u32(0));
  return v ? NatConfig.decode(v) : NatConfig.decode(Buffer.alloc(NatConfig.size)); // all 0: the defaults
}

/** Field offsets of the conntrack key and entry, from the codecs test/bpf/layout.test.ts checks against BTF. */
const off = <T>(c: { fields: Array<{ name: string; offset: number }> }) =>
  Object.fromEntries(c.fields.map((f) => [f.name, f.offset])) as Record<keyof T, number>;
const KO = off<CtKeyT>(CtKey);
const VO = off<CtEntryT>(CtEntry);

/**
 * Conntrack entries in columns (typed arrays, a row each), so a million of them
 * cost no object or string apiece: addresses src, dst, to_src, to_dst and ports
 * sport, dport, to_sport, to_dport, four to a row.
 */
class Rows {
  n = 0;
  addr: Uint32Array;
  port: Uint16Array;
  proto: Uint8Array;
  state: Uint8Array;
  flags: Uint8Array;
  lastSeen: Float64Array; // ns; a double is exact to the ns for 104 days of uptime, to µs long after
  constructor(private cap = 1024) {
    [this.addr, this.port, this.proto, this.state, this.flags, this.lastSeen] =
      [new Uint32Array(cap * 4), new Uint16Array(cap * 4), new Uint8Array(cap), new Uint8Array(cap), new Uint8Array(cap), new Float64Array(cap)];
  }
  /** Appends raw entry i of a batch (key and value bytes as the map holds them); returns its row. */
  pushRaw(kv: DataView, ko: number, vv: DataView, vo: number): number {
    const r = this.grow();
    const [a, p] = [this.addr, this.port];
    a[4 * r] = kv.getUint32(ko + KO.src); a[4 * r + 1] = kv.getUint32(ko + KO.dst);
    a[4 * r + 2] = vv.getUint32(vo + VO.to_src); a[4 * r + 3] = vv.getUint32(vo + VO.to_dst);
    p[4 * r] = kv.getUint16(ko + KO.sport); p[4 * r + 1] = kv.getUint16(ko + KO.dport);
    p[4 * r + 2] = vv.getUint16(vo + VO.to_sport); p[4 * r + 3] = vv.getUint16(vo + VO.to_dport);
    this.proto[r] = kv.getUint8(ko + KO.proto);
    this.state[r] = vv.getUint8(vo + VO.state);
    this.flags[r] = vv.getUint8(vo + VO.flags);
    this.lastSeen[r] = vv.getUint32(vo + VO.last_seen_ns + 4, true) * 2 ** 32 + vv.getUint32(vo + VO.last_seen_ns, true);
    return r;
  }
  /** Appends row i of `from`, or (reversed) the entry of the other direction it implies. */
  pushFrom(from: Rows, i: number, reversed = false): number {
    const r = this.grow();
    const [a, p, fa, fp] = [this.addr, this.port, from.addr, from.port];
    for (let j = 0; j < 4; j++) {
      const k = reversed ? 3 - j : j; // reversed: (to_dst, to_src, to_dport, to_sport) -> (src, dst, ...), and back
      a[4 * r + j] = fa[4 * i + k];
      p[4 * r + j] = fp[4 * i + k];
    }
    this.proto[r] = from.proto[i];
    this.state[r] = from.state[i];
    this.flags[r] = reversed ? from.flags[i] ^ CT_FLAGS.REPLY : from.flags[i];
    this.lastSeen[r] = from.lastSeen[i];
    return r;
  }
  private grow(): number {
    if (this.n === this.cap) {
      this.cap *= 2;
      const g = <A extends Uint32Array | Uint16Array | Uint8Array | Float64Array>(x: A, w: number): A => {
        const y = new (x.constructor as new (n: number) => A)(this.cap * w);
        y.set(x);
        return y;
      };
      [this.addr, this.port, this.proto, this.state, this.flags, this.lastSeen] =
        [g(this.addr, 4), g(this.port, 4), g(this.proto, 1), g(this.state, 1), g(this.flags, 1), g(this.lastSeen, 1)];
    }
    return this.n++;
  }
}

/** The rows' keys (src, dst, sport, dport, proto) as a set: open addressing over row numbers. */
class KeyIndex {
  private slots: Int32Array;
  private mask: number;
  constructor(private rows: Rows) {
    let size = 16;
    while (size < rows.n * 2) size *= 2;
    this.slots = new Int32Array(size).fill(-1);
    this.mask = size - 1;
    for (let r = 0; r < rows.n; r++) {
      const [a, p] = [rows.addr, rows.port];
      let h = KeyIndex.hash(a[4 * r], a[4 * r + 1], p[4 * r], p[4 * r + 1], rows.proto[r]) & this.mask;
      while (this.slots[h] >= 0) h = (h + 1) & this.mask;
      this.slots[h] = r;
    }
  }
  private static hash(s: number, d: number, sp: number, dp: number, proto: number): number {
    let h = Math.imul(s ^ 0x9e3779b9, 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13) ^ d, 0xc2b2ae35);
    h = Math.imul(h ^ (h >>> 16) ^ ((sp << 16) | dp), 0x85ebca6b);
    return (h ^ (h >>> 13) ^ proto) >>> 0;
  }
  has(s: number, d: number, sp: number, dp: number, proto: number): boolean {
    for (let h = KeyIndex.hash(s, d, sp, dp, proto) & this.mask; this.slots[h] >= 0; h = (h + 1) & this.mask) {
      const r = this.slots[h];
      const [a, p] = [this.rows.addr, this.rows.port];
      if (a[4 * r] === s && a[4 * r + 1] === d && p[4 * r] === sp && p[4 * r + 1] === dp && this.rows.proto[r] === proto) return true;
    }
    return false;
  }
}

/** Every entry of the table, originals and replies apart. */
function readEntries(m: NatMaps): { orig: Rows; reply: Rows } {
  const orig = new Rows();
  const reply = new Rows();
  const ks = m.ct.info.keySize;
  const vs = m.ct.valueBufSize;
  m.ct.scan((keys, vals, n) => {
    const kv = new DataView(keys.buffer, keys.byteOffset, keys.length);
    const vv = new DataView(vals.buffer, vals.byteOffset, vals.length);
    for (let i = 0; i < n; i++) (vv.getUint8(i * vs + VO.flags) & CT_FLAGS.REPLY ? reply : orig).pushRaw(kv, i * ks, vv, i * vs);
  }, 65536);
  return { orig, reply };
}

/** One row per flow, original direction: the original entries, and reply entries whose original the LRU took. */
function readFlows(m: NatMaps, f: FlowFilter): { rows: Rows; shown: Uint32Array } {
  const { orig: rows, reply } = readEntries(m);
  const origKeys = new KeyIndex(rows);
  const { addr: a, port: p, proto } = reply;
  for (let i = 0; i < reply.n; i++) {
    if (!origKeys.has(a[4 * i + 3], a[4 * i + 2], p[4 * i + 3], p[4 * i + 2], proto[i])) rows.pushFrom(reply, i, true);
  }
  const pre = (x?: Prefix) => (x ? [x.addr, x.len ? (0xffffffff << (32 - x.len)) >>> 0 : 0] : [0, 0]);
  const [[sa, sm], [da, dm]] = [pre(f.src ? parsePrefix(f.src, '--src') : undefined), pre(f.dst ? parsePrefix(f.dst, '--dst') : undefined)];
  const shown = new Uint32Array(rows.n);
  let n = 0;
  for (let r = 0; r < rows.n; r++) if (((rows.addr[4 * r] & sm) >>> 0) === sa && ((rows.addr[4 * r + 1] & dm) >>> 0) === da) shown[n++] = r;
  return { rows, shown: shown.subarray(0, n) };
}

/**
 * Row order: protocol, source, source port, destination, destination port
 * (numerically). An LSD radix sort on 16-bit digits: seven linear passes, where
 * a comparison sort of a million rows takes seconds in JS.
 */
function sortRows(c: Rows, idx: Uint32Array): Uint32Array {
  const { addr: a, port: p, proto } = c;
  const digit = new Uint16Array(c.n); // by row, this pass's digit
  let from = Uint32Array.from(idx);
  let to = new Uint32Array(idx.length);
  const at = new Uint32Array(65537);
  for (let pass = 0; pass < 7; pass++) {
    for (let i = 0; i < c.n; i++) { // every row, in memory order: cheaper than only the shown ones, in sort order
      const ad = a[4 * i + (pass < 3 ? 1 : 0)];
      digit[i] = pass === 0 ? p[4 * i + 1] : pass === 3 ? p[4 * i] : pass === 6 ? proto[i] : pass % 3 === 1 ? ad & 0xffff : ad >>> 16;
    }
    at.fill(0);
    for (let j = 0; j < from.length; j++) at[digit[from[j]] + 1]++;
    for (let v = 1; v <= 65536; v++) at[v] += at[v - 1];
    for (let j = 0; j < from.length; j++) to[at[digit[from[j]]]++] = from[j];
    [from, to] = [to, from];
  }
  return from;
}

/** Dotted quads, remembered: a million rows name few distinct addresses. */
const ipTexts = new Map<number, string>();
function ipText(n: number): string {
  let t = ipTexts.get(n);
  if (t === undefined) {
    if (ipTexts.size > 65536) ipTexts.clear();
    ipTexts.set(n, (t = `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`));
  }
  return t;
}

function flowAt(c: Rows, i: number, config: NatConfigT, nowNs: number): Flow {
  const { addr: a, port: p } = c;
  const idleNs = Math.max(0, nowNs - c.lastSeen[i]);
  const timeout = timeoutSec(config, c.state[i]);
  return {
    proto: PROTO_NAME[c.proto[i]] ?? String(c.proto[i]), state: CT_STATE_NAMES[c.state[i]] ?? String(c.state[i]),
    src: ipText(a[4 * i]), sport: p[4 * i], dst: ipText(a[4 * i + 1]), dport: p[4 * i + 1],
    toSrc: ipText(a[4 * i + 2]), toSport: p[4 * i + 2], toDst: ipText(a[4 * i + 3]), toDport: p[4 * i + 3],
    // ct_expired()'s test (bpf/lib/ct.h), in doubles
    idleSec: Math.floor(idleNs / 1e9), timeoutSec: timeout, expired: idleNs > 1e9 && idleNs > timeout * 1e9,
  };
}

/** Calls out(row) for every tracked flow in order (see sortedRows); returns how many. */
export function eachFlow(inst: InstancePaths, f: FlowFilter, out: (row: Flow) => void): number {
  return withNatMaps(inst, (m) => {
    const config = readConfig(m);
    const { rows, shown } = readFlows(m, f);
    const now = Number(monotonicCoarseNs()) // the datapath's clock;
    for (const i of sortRows(rows, shown)) out(flowAt(rows, i, config, now));
    return shown.length;
  }) ?? 0;
}

/** One row per flow, original direction (derived from the reply entry when the LRU took the original). */
export function listFlows(inst: InstancePaths, f: FlowFilter = {}): Flow[] {
  const rows: Flow[] = [];
  eachFlow(inst, f, (r) => rows.push(r));
  return rows;
}

/** Removes every conntrack entry; returns how many flows (entry pairs, roughly) went. */
export function flushFlows(inst: InstancePaths): number {
  return withNatMaps(inst, (m) => {
    const ks = m.ct.info.keySize;
    const all: Buffer[] = [];
    m.ct.scan((keys, _v, n) => all.push(Buffer.from(keys.subarray(0, n * ks))));
    const keys = Buffer.concat(all);
    const n = m.ct.deleteKeys(keys, keys.length / ks);
    flowsDeleted(m.gen);
    return Math.ceil(n / 2);
  }) ?? 0;
}


/**
 * One garbage-collection pass with the datapath's own test (ct_expired): an
 * expired entry goes with its peer, in batch deletes. No second look before
 * deleting: the datapath refreshes an entry at most once a second and only a
 * flow idle for its whole timeout is taken, so one that wakes up in between
 * had expired anyway, and its next packet is a new flow.
 */
export function gcFlows(inst: InstancePaths): { removed: number; remaining: number } {
  return withNatMaps(inst, (m) => {
    const config = readConfig(m);
    const now = Number(monotonicCoarseNs()) // the datapath's clock;
    const { orig, reply } = readEntries(m);
    const expired = (c: Rows) => {
      const x = new Rows();
      for (let i = 0; i < c.n; i++) {
        const idle = now - c.lastSeen[i];
        if (idle > 1e9 && idle > timeoutSec(config, c.state[i]) * 1e9) x.pushFrom(c, i);
      }
      return x;
    };
    const [eo, er] = [expired(orig), expired(reply)];
    // Keys to delete: every expired entry, and the peer of each (skipped if already listed, or gone).
    const origKeys = new KeyIndex(eo);
    const keys = Buffer.alloc((2 * eo.n + 2 * er.n) * m.ct.info.keySize);
    let n = 0;
    const put = (s: number, d: number, sp: number, dp: number, proto: number) => {
      const o = n++ * m.ct.info.keySize;
      keys.writeUInt32BE(s, o + KO.src); keys.writeUInt32BE(d, o + KO.dst);
      keys.writeUInt16BE(sp, o + KO.sport); keys.writeUInt16BE(dp, o + KO.dport); keys[o + KO.proto] = proto;
    };
    let removed = eo.n;
    for (let i = 0; i < eo.n; i++) {
      const [a, p] = [eo.addr, eo.port];
      put(a[4 * i], a[4 * i + 1], p[4 * i], p[4 * i + 1], eo.proto[i]);
      put(a[4 * i + 3], a[4 * i + 2], p[4 * i + 3], p[4 * i + 2], eo.proto[i]); // its reply
    }
    for (let i = 0; i < er.n; i++) {
      const [a, p] = [er.addr, er.port];
      if (origKeys.has(a[4 * i + 3], a[4 * i + 2], p[4 * i + 3], p[4 * i + 2], er.proto[i])) continue; // went with its original
      put(a[4 * i], a[4 * i + 1], p[4 * i], p[4 * i + 1], er.proto[i]);
      put(a[4 * i + 3], a[4 * i + 2], p[4 * i + 3], p[4 * i + 2], er.proto[i]);
      removed++;
    }
    const deleted = m.ct.deleteKeys(keys, n);
    if (deleted) flowsDeleted(m.gen);
    return { removed, remaining: Math.ceil((orig.n + reply.n - deleted) / 2) };
  }) ?? { removed: 0, remaining: 0 };
}

export interface CtCounters {
  entries: number;
  max: number;
  /** Flows the table holds before the LRU evicts (two entries each). */
  maxFlows: number;
  created: number;
  insertFailed: number;
  portExhausted: number;
  portRetries: number;
  expired: number;
  restored: number;
}

/** Conntrack fill and counters (summed over CPUs); undefined without NAT maps. */
export function ctCounters(inst: InstancePaths): CtCounters | undefined {
  return withNatMaps(inst, (m) => {
    const v = m.ctStats.lookup(u32(0));
    const s = v ? sumPerCpu(CtStats, v) : undefined;
    const n = (x: bigint | undefined) => Number(x ?? 0n);
    return {
      entries: mapCounter().entries(m.ct), max: m.ct.info.maxEntries, maxFlows: ctFlowsOf(m.ct.info.maxEntries), created: n(s?.created), insertFailed: n(s?.insert_failed),
      portExhausted: n(s?.port_exhausted), portRetries: n(s?.port_retries), expired: n(s?.expired), restored: n(s?.restored),
    };
  });
}

export const TIMEOUT_NAMES = Object.keys(DEFAULT_TIMEOUTS) as Array<keyof NatConfigT>;

/** The conntrack timeouts in effect (seconds), after setting any of `set` (0 restores the default). */
export function timeouts(inst: InstancePaths, set: Partial<NatConfigT> = {}): NatConfigT {
  for (const [k, v] of Object.entries(set)) {
    if (!TIMEOUT_NAMES.includes(k as keyof NatConfigT)) throw new UsageError(`unknown timeout '${k}'`, `one of: ${TIMEOUT_NAMES.join(', ')}`);
    if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 0xffffffff) throw new UsageError(`timeout ${k} must be whole seconds, got ${v}`);
  }
  return withNatMaps(inst, (m) => {
    const cur = readConfig(m);
    if (Object.keys(set).length) m.config.update(u32(0), NatConfig.encode({ ...cur, ...set }));
    const eff = { ...cur, ...set };
    return Object.fromEntries(TIMEOUT_NAMES.map((k) => [k, eff[k] || DEFAULT_TIMEOUTS[k]])) as NatConfigT;
  }, Object.keys(set).length > 0) ?? { ...DEFAULT_TIMEOUTS };
}
