// Every xdpnet program on an interface hook, in one place: attaching,
// detaching, listing and pin naming for the three flavours:
//   XDP link         pinned bpf_link (5.9+)
//   tc, tcx          pinned bpf_link on tcx ingress (6.6+)
//   tc, clsact       direct-action cls_bpf filter on a clsact qdisc, for kernels
//                    without tcx. Filters are not links: the program is pinned
//                    (so `status` finds it), the filter sits at a fixed handle and
//                    priority per owner (so re-attaching replaces it in place, also
//                    after a crash), and detach removes exactly that filter.
// Pins live in the instance's links/ folder:
//   [nat-]<ifindex>-xdp[-<mode>]   [nat-]<ifindex>-tc   [nat-]<ifindex>-tc-clsact
// The owner prefix separates NAT's programs from the per-interface ones (ports,
// VTEP uplinks, counters), which attach.ts manages; both can share an interface.
import { existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { constants } from 'node:os';
import { BpfError, UsageError, XdpnetError } from '../errors.js';
import {
  BPF_TCX_INGRESS, BPF_XDP, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, clsactCreate, clsactDestroy, linkCreate, linkUpdate, objGet, objPin,
  pinnedLinkInfo, probeTcx, progId, progInfo, tcFilterAttach, tcFilterDetach, tcFilterProgId, BpfProgram, type TcFilterId,
} from '../sys/libbpf.js';
import { close as closeFd, ifIndexToName } from '../sys/libc.js';
import type { InstancePaths } from '../objects/paths.js';

export type Hook = 'xdp' | 'tc';
export type XdpMode = 'native' | 'generic';
export type TcFlavour = 'tcx' | 'clsact';
/** Who manages the program: attach.ts (ports, uplinks, counters) or nat.ts. */
export type Owner = 'iface' | 'nat';

export interface HookLink {
  owner: Owner;
  iface: string | null; // null: the interface is gone, or its filter was removed behind our back (defunct)
  ifindex: number;
  hook: Hook;
  mode: XdpMode | null; // XDP only
  tc: TcFlavour | null; // tc only
  progId: number;
  linkId: number; // 0 for a clsact filter (not a link)
  since: Date;
  pin: string;
}

const PIN_RE = /^(nat-)?(\d+)-(xdp|tc)(?:-(native|generic|clsact))?$/;
const QDISC_MARK = (ifindex: number) => `clsact-${ifindex}`; // a folder: xdpnet created this interface's clsact qdisc (forgetUnusedQdiscs parses it)

/**
 * Fixed filter priorities, one per owner (cls_bpf handles are per priority):
 * unlike the kernel's automatic ones (49152 downwards) and in tcx's order
 * (the interface's program before NAT's).
 */
const TC_PRIORITY: Record<Owner, number> = { iface: 0x786e, nat: 0x786f };
const TC_HANDLE = 1;

function pinName(owner: Owner, ifindex: number, hook: Hook, mode: XdpMode | null, tc: TcFlavour | null): string {
  const base = `${owner === 'nat' ? 'nat-' : ''}${ifindex}-${hook}`;
  if (hook === 'xdp') return owner === 'nat' ? base : `${base}-${mode}`; // NAT's XDP is always native
  return tc === 'clsact' ? `${base}-clsact` : base;
}

const filterId = (owner: Owner, ifindex: number): TcFilterId => ({ ifindex, handle: TC_HANDLE, priority: TC_PRIORITY[owner] });

/**
 * Every program of the instance on an interface hook (of one owner, of one
 * interface if given), read from the pins and the kernel. Pins are told apart
 * by name before the kernel is asked about any (syscalls each), so one
 * interface's links cost the same beside ten ports as beside a thousand.
 */
export function listLinks(inst: InstancePaths, owner?: Owner, only?: number): HookLink[] {
  if (!existsSync(inst.links)) return [];
  return readdirSync(inst.links).sort().flatMap((f): HookLink[] => {
    const m = PIN_RE.exec(f);
    if (!m) return [];
    const o: Owner = m[1] ? 'nat' : 'iface';
    if (owner && o !== owner) return [];
    if (only !== undefined && Number(m[2]) !== only) return [];
    const pin = join(inst.links, f);
    const ifindex = Number(m[2]);
    const hook = m[3] as Hook;
    const tc: TcFlavour | null = hook === 'tc' ? (m[4] === 'clsact' ? 'clsact' : 'tcx') : null;
    const mode = hook === 'xdp' ? ((m[4] as XdpMode | undefined) ?? 'native') : null;
    let running: number; // program id the kernel runs there, 0 if none
    let linkId = 0;
    if (tc === 'clsact') {
      running = tcFilterProgId(filterId(o, ifindex));
      if (running !== pinnedProgId(pin)) running = 0; // someone else's filter took the place, or ours is gone
    } else {
      const info = pinnedLinkInfo(pin);
      running = info.ifindex ? info.progId : 0;
      linkId = info.id;
    }
    const iface = running ? (ifIndexToName(ifindex) ?? null) : null;
    return [{ owner: o, iface, ifindex, hook, mode, tc, progId: running || (tc === 'clsact' ? pinnedProgId(pin) : 0), linkId, since: statSync(pin).mtime, pin }];
  });
}

function pinnedProgId(pin: string): number {
  const fd = objGet(pin);
  try {
    return progId(fd, pin);
  } finally {
    closeFd(fd);
  }
}

/** The kernel's name of a running program (its first 15 characters), undefined when it is gone. */
export function programName(id: number): string | undefined {
  try {
    const p = BpfProgram.fromId(id);
    try {
      return progInfo(p.fd, `program ${id}`).name;
    } finally {
      p.close();
    }
  } catch {
    return undefined; // gone meanwhile
  }
}

/** "xdp", "tc (tcx)" or "tc (clsact)". */
export function hookName(l: Pick<HookLink, 'hook' | 'tc'>): string {
  return l.tc ? `${l.hook} (${l.tc})` : l.hook;
}

let probed: TcFlavour | undefined;

/**
 * The tc flavour to attach with: XDPNET_TC=tcx|clsact forces one; otherwise
 * tcx where the kernel has it (probed once with this program), else clsact.
 */
export function tcFlavour(prog: BpfProgram): TcFlavour {
  const want = process.env.XDPNET_TC ?? 'auto';
  if (want === 'tcx' || want === 'clsact') return want;
  if (want !== 'auto' && want !== '') throw new UsageError(`XDPNET_TC=${want}: expected tcx, clsact or auto`);
  probed ??= probeTcx(prog.fd) ? 'tcx' : 'clsact';
  return probed;
}

/**
 * Runs prog on the interface's hook and pins it; returns the pin. A clsact
 * filter of the same owner there is replaced in place (a re-attach, or what a
 * crashed run left); XDP and tcx fail when the hook is taken (see explain).
 */
export function linkOn(inst: InstancePaths, owner: Owner, ifindex: number, hook: Hook, mode: XdpMode | null, prog: BpfProgram): string {
  const iface = ifIndexToName(ifindex) ?? `ifindex ${ifindex}`;
  const tc = hook === 'tc' ? tcFlavour(prog) : null;
  const what = `${owner === 'nat' ? 'NAT ' : ''}${hook}${mode ? ` (${mode})` : tc ? ` (${tc})` : ''} program to ${iface}`;
  mkdirSync(inst.links, { recursive: true });
  const pin = join(inst.links, pinName(owner, ifindex, hook, mode, tc));
  if (tc === 'clsact') {
    if (clsactCreate(ifindex, iface)) mkdirSync(join(inst.links, QDISC_MARK(ifindex)), { recursive: true, mode: 0o700 });
    try {
      tcFilterAttach(prog.fd, filterId(owner, ifindex), what);
      if (existsSync(pin)) unlinkSync(pin);
      objPin(prog.fd, pin);
    } catch (e) {
      forgetQdiscIfUnused(inst, ifindex);
      throw e;
    }
    return pin;
  }
  let fd = -1;
  try {
    try {
      fd = hook === 'xdp'
        ? linkCreate(prog.fd, ifindex, BPF_XDP, mode === 'generic' ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE, what)
        : linkCreate(prog.fd, ifindex, BPF_TCX_INGRESS, 0, what);
    } catch (e) {
      throw explain(e, iface, hook, mode);
    }
    objPin(fd, pin);
    return pin;
  } finally {
    if (fd >= 0) closeFd(fd);
  }
}

/**
 * Swaps the program a hook runs without a moment of none (hitless upgrade):
 * a link's program is updated (bpf_link_update); a clsact filter is replaced
 * at its handle and priority (the kernel swaps it in one step) and its
 * program pin renamed over.
 */
export function replaceProgram(inst: InstancePaths, l: HookLink, prog: BpfProgram): void {
  const what = `${hookName(l)} program of ${l.iface ?? `ifindex ${l.ifindex}`}`;
  if (l.tc === 'clsact') {
    tcFilterAttach(prog.fd, filterId(l.owner, l.ifindex), what);
    rmSync(`${l.pin}-new`, { force: true });
    objPin(prog.fd, `${l.pin}-new`);
    renameSync(`${l.pin}-new`, l.pin);
    return;
  }
  const fd = objGet(l.pin);
  try {
    linkUpdate(fd, prog.fd, what);
  } finally {
    closeFd(fd);
  }
}

/**
 * Takes the program off its hook and removes its pin. A link goes with its
 * pin; a filter is deleted by its handle and priority (only if it still runs
 * our program), and the clsact qdisc too if xdpnet added it and it is empty.
 */
export function unlink(inst: InstancePaths, l: HookLink): void {
  if (l.tc === 'clsact' && existsSync(l.pin)) {
    const f = filterId(l.owner, l.ifindex);
    if (tcFilterProgId(f) === pinnedProgId(l.pin)) tcFilterDetach(f, `${hookName(l)} filter of ${l.iface ?? `ifindex ${l.ifindex}`}`);
  }
  if (existsSync(l.pin)) unlinkSync(l.pin);
  if (l.tc === 'clsact') forgetQdiscIfUnused(inst, l.ifindex);
}

/**
 * Every mark whose interface has no xdpnet filter left: a run killed between adding the qdisc and
 * pinning its filter leaves one, and once the interface is gone nothing else would remove it (the
 * instance would never be idle).
 */
export function forgetUnusedQdiscs(inst: InstancePaths): void {
  if (!existsSync(inst.links)) return;
  for (const f of readdirSync(inst.links)) {
    const m = /^clsact-(\d+)$/.exec(f);
    if (m) forgetQdiscIfUnused(inst, Number(m[1]));
  }
}

/** Once no xdpnet filter is left on an interface: deletes the clsact qdisc xdpnet added if no one else's filter is on it. */
function forgetQdiscIfUnused(inst: InstancePaths, ifindex: number): void {
  const mark = join(inst.links, QDISC_MARK(ifindex));
  if (!existsSync(mark)) return;
  if (listLinks(inst).some((l) => l.tc === 'clsact' && l.ifindex === ifindex)) return;
  const iface = ifIndexToName(ifindex);
  if (iface && ['ingress', 'egress'].every((dir) => !tcFilters(iface, dir))) clsactDestroy(ifindex, iface);
  rmdirSync(mark);
}

/** How many filters the interface has in one direction of its clsact qdisc (`tc` answers in the current namespace). */
function tcFilters(iface: string, dir: string): number {
  try {
    const out = execFileSync('tc', ['-j', 'filter', 'show', 'dev', iface, dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return (JSON.parse(out || '[]') as unknown[]).length;
  } catch (e) {
    throw new XdpnetError(`cannot list the tc filters of ${iface}: ${(e as Error).message.split('\n')[0]}`, 'is iproute2 (tc) installed?');
  }
}

function explain(e: unknown, iface: string, hook: Hook, mode: XdpMode | null): unknown {
  if (!(e instanceof BpfError)) return e;
  if (hook === 'xdp' && mode === 'native' && e.errno === constants.errno.EOPNOTSUPP) {
    return new BpfError(e.op, e.target, e.errno, `${iface}'s driver has no native XDP: use --mode generic`);
  }
  if (e.errno === constants.errno.EBUSY || e.errno === constants.errno.EEXIST) {
    return new BpfError(e.op, e.target, e.errno, `another ${hook} program is attached to ${iface} (see \`ip link show ${iface}\`); remove it first`);
  }
  return e;
}
