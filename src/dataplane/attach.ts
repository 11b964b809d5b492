// Attachments: the interface's own programs (a port, a VTEP uplink, a counter),
// pinned through links.ts so the dataplane keeps running after the CLI exits
// and the next invocation finds it on bpffs.
import { mkdirSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { XdpnetError, UsageError } from '../errors.js';
import { BpfMap, type BpfProgram } from '../sys/libbpf.js';
import { ifNameToIndex } from '../sys/libc.js';
import { BRIDGE } from '../objects/bridge.js';
import { loadCounter } from '../objects/counter.js';
import { ensureObserver, isObserverPin } from '../objects/monitor.js';
import type { InstancePaths } from '../objects/paths.js';
import { forgetUnusedQdiscs, hookName, linkOn, listLinks, unlink, type Hook, type HookLink, type XdpMode } from './links.js';
import { claimSlot, releaseSlotIfUnused } from './slots.js';
import { withInstalledBuild } from './upgrade.js';

export type { Hook, XdpMode } from './links.js';

/** A program of the interface's own (port, VTEP uplink, counter): see links.ts. */
export type Attachment = HookLink;

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

/** Every attachment of the instance, read from its pins. */
export function listAttachments(inst: InstancePaths): Attachment[] {
  return listLinks(inst, 'iface');
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
  return listLinks(inst, 'iface', ifindex).sort((a, b) => rank(a) - rank(b));
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
  const ifindex = resolveIface(iface, o.netns);
  const existing = findAttachment(inst, ifindex);
  if (existing?.iface) {
    const how = existing.mode ? `${existing.hook} ${existing.mode}` : hookName(existing);
    throw new XdpnetError(
      `${iface} is already attached (${how}, program ${existing.progId}, since ${existing.since.toISOString()})`,
      `detach it first: xdpnet detach ${iface}`,
    );
  }
  // defunct links of a deleted interface that reused this ifindex
  for (const a of interfaceAttachments(inst, ifindex)) unlink(inst, a);

  mkdirSync(inst.maps, { recursive: true });
  mkdirSync(inst.links, { recursive: true });
  let loaded: LoadedProgram | undefined;
  const pins: string[] = [];
  try {
    loaded = withInstalledBuild(inst, () => (o.load ?? loadCounter)(inst, o.hook));
    claimSlot(inst, ifindex, { reset: true }); // before the link: the first frame is counted
    for (const l of [{ hook: o.hook, prog: loaded.prog }, ...(loaded.also ?? [])]) {
      pins.push(linkOn(inst, 'iface', ifindex, l.hook, l.hook === 'xdp' ? mode ?? 'native' : null, l.prog));
    }
    withInstalledBuild(inst, () => ensureObserver(inst)); // no silent loss: refused redirects are counted while the instance has links
  } catch (e) {
    for (const a of interfaceAttachments(inst, ifindex)) if (pins.includes(a.pin)) unlink(inst, a);
    removeInstanceIfIdle(inst); // a failed first attach leaves nothing
    throw e;
  } finally {
    loaded?.close();
  }
  return findAttachment(inst, ifindex)!;
}

/**
 * Adds a link with another hook to an attached interface (no-op when it has
 * one with that hook already), e.g. the tc slow path of an XDP bridge port.
 */
export function addLink(inst: InstancePaths, ifindex: number, hook: Hook, load: () => LoadedProgram): void {
  const links = interfaceAttachments(inst, ifindex);
  if (!links.length) throw new XdpnetError(`ifindex ${ifindex} is not attached`);
  if (links.some((a) => a.hook === hook)) return;
  const loaded = withInstalledBuild(inst, load);
  try {
    linkOn(inst, 'iface', ifindex, hook, hook === 'xdp' ? 'native' : null, loaded.prog);
  } finally {
    loaded.close();
  }
}

/** Removes an interface's link with this hook, if it has one and another link stays. */
export function removeLink(inst: InstancePaths, ifindex: number, hook: Hook): void {
  const links = interfaceAttachments(inst, ifindex);
  if (links.length < 2) return;
  for (const a of links) if (a.hook === hook) unlink(inst, a);
}

/** Removes every link of an attachment's interface (which detaches its programs) and its counters. */
export function removeAttachment(inst: InstancePaths, a: Attachment): void {
  for (const l of interfaceAttachments(inst, a.ifindex)) unlink(inst, l);
  unlink(inst, a);
  releaseSlotIfUnused(inst, a.ifindex);
  removeInstanceIfIdle(inst);
}

/** Leaves nothing of an instance on bpffs once it has no links and no bridges (configuration lives in maps). */
export function removeInstanceIfIdle(inst: InstancePaths): void {
  forgetUnusedQdiscs(inst);
  if (existsSync(inst.links) && readdirSync(inst.links).some((f) => !isObserverPin(f))) return; // the observer's pins go with the last other link
  if (BpfMap.usePin(join(inst.maps, BRIDGE.maps.bridges), (m) => !m.keys().next().done)) return;
  rmSync(inst.dir, { recursive: true, force: true });
  const top = join(inst.dir, '..');
  if (existsSync(top) && readdirSync(top).length === 0) rmSync(top, { recursive: true, force: true });
}
