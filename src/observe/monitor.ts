// The monitor's session: switches events on in the datapath (xn_mon), reads
// them from the ring buffer, filters and decodes them, and switches them off
// again when it stops.
import { ifIndexToName } from '../sys/libc.js';
import { DROP_REASONS } from '../objects/stats.js';
import { EVENT_HOOKS, EVENT_TYPES, MON_FLAGS, openEvents, readMonitor, setMonitor, type RawEvent } from '../objects/monitor.js';
import type { InstancePaths } from '../objects/paths.js';
import { XdpnetError } from '../errors.js';
import { describeFrame, frameVni } from './frame.js';

export type EventKind = 'drop' | 'trace' | 'all';

export interface MonitorFilter {
  type: EventKind;
  /** Events whose receiving or sending interface is one of these. */
  ifindexes?: Set<number>;
  vni?: number;
  /** Trace events: keep one in this many (a power of two), chosen in the datapath. */
  sample?: number;
}

export interface MonitorEvent {
  time: string; // ISO, from the event's CLOCK_MONOTONIC stamp
  tsNs: bigint; // wall clock, ns
  event: string; // drop, forward, flood, encap, decap, nat
  hook: string; // xdp, tc, kernel
  iface: string;
  ifindex: number;
  out: string | null;
  outIfindex: number;
  reason: string | null;
  vni: number | null;
  len: number;
  summary: string;
  data: Buffer;
}

const names = new Map<number, string>();
function ifName(ifindex: number): string {
  let n = names.get(ifindex);
  if (!n) names.set(ifindex, (n = ifIndexToName(ifindex) ?? `if${ifindex}`));
  return n;
}

/** CLOCK_MONOTONIC ns (bpf_ktime_get_ns) to wall-clock ns; libuv's hrtime reads the same clock. */
const monoToWall = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();

/** The frame as on the wire: at tc the kernel holds an 802.1Q tag outside the data; put it back. */
function withTag(e: RawEvent): Buffer {
  const data = e.data.subarray(0, e.cap_len);
  if (!e.vlan_present || data.length < 12) return data;
  const tag = Buffer.alloc(4);
  tag.writeUInt16BE(0x8100, 0);
  tag.writeUInt16BE(e.vlan_tci, 2);
  return Buffer.concat([data.subarray(0, 12), tag, data.subarray(12)]);
}

export function decodeEvent(e: RawEvent): MonitorEvent {
  const data = withTag(e);
  const event = EVENT_TYPES[e.type] ?? `type-${e.type}`;
  const isVx = e.type === 4 || e.type === 5;
  const wall = e.ts_ns + monoToWall;
  return {
    time: new Date(Number(wall / 1_000_000n)).toISOString(),
    tsNs: wall,
    event,
    hook: EVENT_HOOKS[e.hook] ?? `hook-${e.hook}`,
    iface: ifName(e.ifindex),
    ifindex: e.ifindex,
    out: e.out_ifindex ? ifName(e.out_ifindex) : null,
    outIfindex: e.out_ifindex,
    reason: e.type === 1 ? (DROP_REASONS[e.info] ?? `reason-${e.info}`) : null,
    vni: isVx ? e.info : (frameVni(data) ?? null),
    len: e.len + (e.vlan_present ? 4 : 0),
    summary: data.length ? describeFrame(data) : `(${e.len} bytes, not captured)`,
    data,
  };
}

/** The text line: `DROP vlan-ingress-denied veth3 tc 02:..→ff:.. vlan 20 ARP who-has 10.0.0.1`. */
export function formatEvent(m: MonitorEvent): string {
  const where = m.out ? `${m.iface} → ${m.out}` : m.iface;
  const what = m.reason ? `${m.event.toUpperCase()} ${m.reason}` : m.event.toUpperCase();
  const vni = m.vni !== null && (m.event === 'encap' || m.event === 'decap') ? ` vni ${m.vni}` : '';
  return `${what}${vni} ${where} ${m.hook} ${m.summary}`;
}

export function matches(f: MonitorFilter, m: MonitorEvent): boolean {
  if (f.type === 'drop' && m.event !== 'drop') return false;
  if (f.type === 'trace' && m.event === 'drop') return false;
  if (f.ifindexes && !f.ifindexes.has(m.ifindex) && !f.ifindexes.has(m.outIfindex)) return false;
  if (f.vni !== undefined && m.vni !== f.vni) return false;
  return true;
}

export interface MonitorSession {
  /** Waits up to ms for events; hands each match to onEvent. */
  poll(ms: number): void;
  stop(): void;
}

/**
 * Starts a monitor on the instance: the datapath emits what f.type asks for
 * until stop(). With other monitors running, the switch keeps what they asked
 * for too (stop() leaves theirs on: the datapath then costs as it did before).
 */
export function startMonitor(inst: InstancePaths, f: MonitorFilter, onEvent: (m: MonitorEvent) => void): MonitorSession {
  const before = readMonitor(inst);
  if (!before) throw new XdpnetError(`nothing is attached in ${inst.name}: no datapath to monitor`, 'attach an interface first: xdpnet attach IFACE');
  const want = (f.type !== 'trace' ? MON_FLAGS.DROPS : 0) | (f.type !== 'drop' ? MON_FLAGS.TRACE : 0);
  const sample = f.sample ? f.sample - 1 : 0;
  const stream = openEvents(inst, (e) => {
    const m = decodeEvent(e);
    if (matches(f, m)) onEvent(m);
  });
  if (!stream) throw new XdpnetError(`${inst.name} has no event ring buffer`, 're-attach its interfaces with this version of xdpnet');
  setMonitor(inst, before.flags | want, before.flags & MON_FLAGS.TRACE ? Math.min(before.sample, sample) : sample);
  let stopped = false;
  return {
    poll: (ms) => void stream.poll(ms),
    stop: () => {
      if (stopped) return;
      stopped = true;
      setMonitor(inst, before.flags, before.sample);
      stream.close();
    },
  };
}
