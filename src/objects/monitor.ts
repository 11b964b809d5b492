// bpf/lib/monitor.h and bpf/observe.bpf.c: the packet monitor's ring buffer,
// its switch, and the tracepoint programs that count frames the kernel refused
// after xdpnet handed them on. Mirrors bpf/include/monitor.h (checked against
// BTF by test/bpf/layout.test.ts). The one owner of these maps in user space.
import { existsSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BpfMap, RingBuffer, objPin, pinnedLinkInfo, progId, rawTracepointOpen, type BpfProgram } from '../sys/libbpf.js';
import { close as closeFd } from '../sys/libc.js';
import { setConsts } from './btf.js';
import { struct, u32 } from './codec.js';
import { openPrograms, type BuildSpec, type Configure, type ProgramSet } from './builds.js';
import type { InstancePaths } from './paths.js';

export const MONITOR = {
  maps: { events: 'xn_events', config: 'xn_mon', lost: 'xn_mon_lost' },
  observer: { object: 'observe', programs: ['xn_obs_devmap', 'xn_obs_redir_err'] },
  capture: 128,
} as const;

export const MON_FLAGS = { DROPS: 1, TRACE: 2 } as const;
export const EVENT_TYPES: Record<number, string> = { 1: 'drop', 2: 'forward', 3: 'flood', 4: 'encap', 5: 'decap', 6: 'nat' };
export const EVENT_HOOKS: Record<number, string> = { 0: 'xdp', 1: 'tc', 2: 'kernel' };

export const MonCfg = struct('xn_mon_cfg', { flags: 'u32', sample: 'u32' });
export const Event = struct('xn_event', {
  ts_ns: 'u64',
  ifindex: 'u32',
  out_ifindex: 'u32',
  len: 'u32',
  info: 'u32',
  type: 'u16',
  hook: 'u8',
  cap_len: 'u8',
  data: { bytes: MONITOR.capture },
  vlan_tci: 'u16',
  vlan_present: 'u16',
});
export const MONITOR_CODECS = [MonCfg, Event];

/** Pin of the observer's link for one program. */
const observerPin = (inst: InstancePaths, prog: string) => join(inst.links, `observe-${prog}`);

/**
 * The observer's programs in the instance (loaded once, then from their pins).
 * Call from inside the instance's network namespace (its inode scopes what they count).
 */
export function observerPrograms(inst: InstancePaths, o: { upgrade?: boolean } = {}): ProgramSet {
  return openPrograms(inst, MONITOR.observer.object, configureObserver(), o);
}

const configureObserver = (): Configure => {
  const ino = statSync('/proc/self/ns/net').ino;
  return (obj) => setConsts(obj, { xn_netns_ino: ino });
};

export const OBSERVER_BUILD: BuildSpec = { object: MONITOR.observer.object, programs: MONITOR.observer.programs, configure: configureObserver };

/** Attaches a tracepoint program and pins its link at pin, replacing whatever link was pinned there. */
function pinTracepoint(prog: BpfProgram, pin: string): void {
  const fd = rawTracepointOpen(prog.fd, prog.name);
  try {
    rmSync(`${pin}-new`, { force: true }); // left by a killed run: a link that counts twice
    objPin(fd, `${pin}-new`);
    renameSync(`${pin}-new`, pin); // one step: the old link goes with its pin
  } finally {
    closeFd(fd);
  }
}

/**
 * Attaches the observer programs for the instance (idempotent): they count
 * refused redirects while the instance has links. Call from inside the
 * instance's network namespace (its inode scopes what they count).
 */
export function ensureObserver(inst: InstancePaths): void {
  const missing = MONITOR.observer.programs.filter((p) => !existsSync(observerPin(inst, p)));
  if (!missing.length) return;
  const set = observerPrograms(inst);
  try {
    for (const p of missing) pinTracepoint(set.program(p), observerPin(inst, p));
  } finally {
    set.close();
  }
}

/**
 * Moves the instance's observers onto this set's programs (tracepoint links
 * cannot swap programs: a new link is pinned over the old one, so for an
 * instant both count). Returns what was replaced.
 */
export function replaceObservers(inst: InstancePaths, set: ProgramSet): Array<{ program: string; from: number; to: number }> {
  const out: Array<{ program: string; from: number; to: number }> = [];
  for (const p of MONITOR.observer.programs) {
    const pin = observerPin(inst, p);
    if (!existsSync(pin)) continue;
    const from = pinnedLinkInfo(pin).progId;
    const prog = set.program(p);
    const to = progId(prog.fd, p);
    if (from === to) continue;
    pinTracepoint(prog, pin);
    out.push({ program: p, from, to });
  }
  return out;
}

/** Whether a link pin is the observer's (not an interface's). */
export const isObserverPin = (name: string) => name.startsWith('observe-');

/** Sets what monitors want (flags 0: nothing, the datapath's default). */
export function setMonitor(inst: InstancePaths, flags: number, sample = 0): boolean {
  return BpfMap.usePin(join(inst.maps, MONITOR.maps.config), (m) => {
    m.update(u32(0), MonCfg.encode({ flags, sample }));
    return true;
  }) ?? false;
}

export function readMonitor(inst: InstancePaths): { flags: number; sample: number } | undefined {
  return BpfMap.usePin(join(inst.maps, MONITOR.maps.config), (m) => {
    const v = m.lookup(u32(0));
    return v ? MonCfg.decode(v) : undefined;
  });
}

/** Events lost to a full ring buffer, over all CPUs. */
export function lostEvents(inst: InstancePaths): number {
  return BpfMap.usePin(join(inst.maps, MONITOR.maps.lost), (m) => {
    const v = m.lookup(u32(0));
    let n = 0n;
    for (let o = 0; v && o + 8 <= v.length; o += 8) n += v.readBigUInt64LE(o);
    return Number(n);
  }) ?? 0;
}

export type RawEvent = ReturnType<typeof Event.decode>;

/** The instance's event stream: poll(ms) hands decoded events to onEvent. */
export interface EventStream {
  poll(ms: number): number;
  close(): void;
}

/** Opens the instance's event ring buffer; undefined when nothing is attached there. */
export function openEvents(inst: InstancePaths, onEvent: (e: RawEvent) => void): EventStream | undefined {
  const pin = join(inst.maps, MONITOR.maps.events);
  if (!existsSync(pin)) return undefined;
  const map = BpfMap.fromPin(pin); // the ring buffer's epoll needs the fd open while it lives
  try {
    const rb = new RingBuffer(map, (b) => onEvent(Event.decode(b)));
    return { poll: (ms) => rb.poll(ms), close: () => { rb.close(); map.close(); } };
  } catch (e) {
    map.close();
    throw e;
  }
}
