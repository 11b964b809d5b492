// Attachments: one pinned bpf_link per interface, so the dataplane keeps
// running after the CLI exits and the next invocation finds it on bpffs.
import { mkdirSync, readdirSync, rmSync, statSync, unlinkSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { XdpnetError, UsageError, BpfError } from '../errors.js';
import {
  BPF_TCX_INGRESS, BPF_XDP, BpfMap, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE,
  linkCreate, objPin, pinnedLinkInfo, type BpfProgram,
} from '../sys/libbpf.js';
import { close as closeFd, ifIndexToName, ifNameToIndex } from '../sys/libc.js';
import { BRIDGE } from '../objects/bridge.js';
import { loadCounter } from '../objects/counter.js';
import { ensureObserver, isObserverPin } from '../objects/monitor.js';
import type { InstancePaths } from '../objects/paths.js';
import { checkKernel, kernelRelease } from './host.js';
import { claimSlot, releaseSlotIfUnused } from './slots.js';

export type Hook = 'xdp' | 'tc';
export type XdpMode = 'native' | 'generic';

export interface Attachment {
  iface: string | null; // null: the interface is gone (the link is defunct)
  ifindex: number;
  hook: Hook;
  mode: XdpMode | null;
  progId: number;
  linkId: number;
  since: Date;
  pin: string;
}

const PIN_RE = /^(\d+)-(xdp|tc)(?:-(native|generic))?$/;

function pinName(ifindex: number, hook: Hook, mode: XdpMode | null): string {
  return hook === 'xdp' ? `${ifindex}-xdp-${mode}` : `${ifindex}-tc`;
}

export function resolveIface(iface: string, netns?: string): number {
  const ifindex = ifNameToIndex(iface);
  if (!ifindex) {
    throw new XdpnetError(
      `interface ${iface} not found${netns ? ` in network namespace ${netns}` : ''}`,
      `list interfaces with \`ip${netns ? ` -n ${netns}` : ''} link\``,
    );
  }
  return ifindex;
}

/**
 * The instance's link pins whose names match re (group 1: the ifindex), with
 * what the kernel says of each link. iface is null once the interface is gone.
 */
export function scanLinkPins(inst: InstancePaths, re: RegExp) {
  if (!existsSync(inst.links)) return [];
  return readdirSync(inst.links).sort().flatMap((f) => {
    const m = re.exec(f);
    if (!m) return [];
    const pin = join(inst.links, f);
    const info = pinnedLinkInfo(pin);
    const ifindex = Number(m[1]);
    return [{ m, pin, info, ifindex, iface: info.ifindex ? (ifIndexToName(ifindex) ?? null) : null }];
  });
}

/** Every attachment of the instance, read from its link pins. */
export function listAttachments(inst: InstancePaths): Attachment[] {
  return scanLinkPins(inst, PIN_RE).map(({ m, pin, info, ifindex, iface }) => ({
    iface,
    ifindex,
    hook: m[2] as Hook,
    mode: (m[3] as XdpMode | undefined) ?? null,
    progId: info.progId,
    linkId: info.id,
    since: statSync(pin).mtime,
    pin,
  }));
}

/** A loaded entry program; the link holds it once attached, so close() follows either way. */
export interface LoadedProgram {
  prog: BpfProgram;
  /** More programs linked on the same interface, one per other hook (e.g. a tc slow path next to XDP). */
  also?: Array<{ hook: Hook; prog: BpfProgram }>;
  close(): void;
}

export interface AttachOptions {
  hook: Hook;
  mode?: XdpMode;
  netns?: string;
  /** Loads the program for the hook (default: the counter). Runs after the checks, before the link. */
  load?: (inst: InstancePaths, hook: Hook) => LoadedProgram;
}

/** Every link of one interface, its primary one first (see findAttachment). */
export function interfaceAttachments(inst: InstancePaths, ifindex: number): Attachment[] {
  return listAttachments(inst).filter((a) => a.ifindex === ifindex).sort((a, b) => rank(a) - rank(b));
}

/** An interface has at most one link per hook; with both, XDP is the primary one and tc its slow path. */
const rank = (a: Attachment) => (a.hook === 'xdp' ? 0 : 1);

/** The interface's primary attachment (its XDP link if it has one, else its tc link). */
export function findAttachment(inst: InstancePaths, ifindex: number): Attachment | undefined {
  return interfaceAttachments(inst, ifindex)[0];
}

/** The primary attachment of each interface, by ifindex. */
export function primaryAttachments(inst: InstancePaths): Map<number, Attachment> {
  const out = new Map<number, Attachment>();
  for (const a of listAttachments(inst)) {
    const cur = out.get(a.ifindex);
    if (!cur || rank(a) < rank(cur)) out.set(a.ifindex, a);
  }
  return out;
}

export function attach(inst: InstancePaths, iface: string, o: AttachOptions): Attachment {
  if (o.hook === 'tc' && o.mode) throw new UsageError('--mode applies to --hook xdp only');
  const mode = o.hook === 'xdp' ? (o.mode ?? 'native') : null;
  checkKernel(kernelRelease(), o.hook);
  const ifindex = resolveIface(iface, o.netns);
  const existing = findAttachment(inst, ifindex);
  if (existing?.iface) {
    const how = existing.mode ? `${existing.hook} ${existing.mode}` : existing.hook;
    throw new XdpnetError(
      `${iface} is already attached (${how}, program ${existing.progId}, since ${existing.since.toISOString()})`,
      `detach it first: xdpnet detach ${iface}`,
    );
  }
  // defunct links of a deleted interface that reused this ifindex
  for (const a of interfaceAttachments(inst, ifindex)) unlinkSync(a.pin);

  mkdirSync(inst.maps, { recursive: true });
  mkdirSync(inst.links, { recursive: true });
  let loaded: LoadedProgram | undefined;
  const pins: string[] = [];
  try {
    loaded = (o.load ?? loadCounter)(inst, o.hook);
    claimSlot(inst, ifindex, { reset: true }); // before the link: the first frame is counted
    for (const l of [{ hook: o.hook, prog: loaded.prog }, ...(loaded.also ?? [])]) {
      pins.push(linkAndPin(inst, iface, ifindex, l.hook, l.hook === 'xdp' ? mode ?? 'native' : null, l.prog));
    }
    ensureObserver(inst); // no silent loss: refused redirects are counted while the instance has links
  } catch (e) {
    for (const pin of pins) unlinkSync(pin);
    removeInstanceIfIdle(inst); // a failed first attach leaves nothing
    throw e;
  } finally {
    loaded?.close();
  }
  return findAttachment(inst, ifindex)!;
}

/** Links prog to the interface with the hook and pins the link; returns the pin. */
function linkAndPin(inst: InstancePaths, iface: string, ifindex: number, hook: Hook, mode: XdpMode | null, prog: BpfProgram): string {
  const what = `${hook}${mode ? ` (${mode})` : ''} program to ${iface}`;
  let linkFd = -1;
  try {
    try {
      linkFd = hook === 'xdp'
        ? linkCreate(prog.fd, ifindex, BPF_XDP, mode === 'generic' ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE, what)
        : linkCreate(prog.fd, ifindex, BPF_TCX_INGRESS, 0, what);
    } catch (e) {
      throw explainAttachError(e, iface, hook, mode);
    }
    const pin = join(inst.links, pinName(ifindex, hook, mode));
    objPin(linkFd, pin);
    return pin;
  } finally {
    if (linkFd >= 0) closeFd(linkFd);
  }
}

/**
 * Adds a link with another hook to an attached interface (no-op when it has
 * one with that hook already), e.g. the tc slow path of an XDP bridge port.
 */
export function addLink(inst: InstancePaths, ifindex: number, hook: Hook, load: () => LoadedProgram): void {
  const links = interfaceAttachments(inst, ifindex);
  if (!links.length) throw new XdpnetError(`ifindex ${ifindex} is not attached`);
  if (links.some((a) => a.hook === hook)) return;
  checkKernel(kernelRelease(), hook);
  const iface = links[0].iface ?? `ifindex ${ifindex}`;
  const loaded = load();
  try {
    linkAndPin(inst, iface, ifindex, hook, hook === 'xdp' ? 'native' : null, loaded.prog);
  } finally {
    loaded.close();
  }
}

/** Removes an interface's link with this hook, if it has one and another link stays. */
export function removeLink(inst: InstancePaths, ifindex: number, hook: Hook): void {
  const links = interfaceAttachments(inst, ifindex);
  if (links.length < 2) return;
  for (const a of links) if (a.hook === hook) unlinkSync(a.pin);
}

function explainAttachError(e: unknown, iface: string, hook: Hook, mode: XdpMode | null): unknown {
  if (!(e instanceof BpfError)) return e;
  if (hook === 'xdp' && mode === 'native' && e.errno === 95 /* EOPNOTSUPP */) {
    return new BpfError(e.op, e.target, e.errno, `${iface}'s driver has no native XDP: use --mode generic`);
  }
  if (e.errno === 16 /* EBUSY */ || e.errno === 17 /* EEXIST */) {
    return new BpfError(e.op, e.target, e.errno, `another ${hook} program is attached to ${iface} (see \`ip link show ${iface}\`); remove it first`);
  }
  return e;
}

/** Removes every link of an attachment's interface (which detaches its programs) and its counters. */
export function removeAttachment(inst: InstancePaths, a: Attachment): void {
  for (const l of interfaceAttachments(inst, a.ifindex)) rmSync(l.pin, { force: true });
  rmSync(a.pin, { force: true });
  releaseSlotIfUnused(inst, a.ifindex);
  removeInstanceIfIdle(inst);
}

/** Leaves nothing of an instance on bpffs once it has no links and no bridges (configuration lives in maps). */
export function removeInstanceIfIdle(inst: InstancePaths): void {
  if (existsSync(inst.links) && readdirSync(inst.links).some((f) => !isObserverPin(f))) return; // the observer's pins go with the last other link
  if (BpfMap.usePin(join(inst.maps, BRIDGE.maps.bridges), (m) => !m.keys().next().done)) return;
  rmSync(inst.dir, { recursive: true, force: true });
  const top = join(inst.dir, '..');
  if (existsSync(top) && readdirSync(top).length === 0) rmSync(top, { recursive: true, force: true });
}
