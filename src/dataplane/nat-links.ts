// NAT's links: the NAT program attached to the inside (tc) and outside (XDP,
// or tcx where XDP is taken) interfaces, pinned as links/nat-<ifindex>-<hook>
// beside the per-interface links of attach.ts so they survive the control
// process. Moved here as it was from nat.ts: the seam where link management
// joins attach.ts's (one home for every link and pin name).
import { execFileSync } from 'node:child_process';
import { mkdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { BpfError } from '../errors.js';
import { loadNat } from '../objects/nat.js';
import type { InstancePaths } from '../objects/paths.js';
import { BPF_TCX_INGRESS, BPF_XDP, linkCreate, objPin, XDP_FLAGS_DRV_MODE } from '../sys/libbpf.js';
import { close as closeFd, ifIndexToName } from '../sys/libc.js';
import { scanLinkPins } from './attach.js';
import { checkKernel, ipJson, kernelRelease } from './host.js';
import { claimSlot, releaseSlotIfUnused } from './slots.js';

export interface NatLink { iface: string | null; ifindex: number; hook: 'xdp' | 'tc'; progId: number; linkId: number; since: Date; pin: string }

const LINK_RE = /^nat-(\d+)-(xdp|tc)$/;

export function natLinks(inst: InstancePaths): NatLink[] {
  return scanLinkPins(inst, LINK_RE).map(({ m, pin, info, ifindex, iface }) =>
    ({ iface, ifindex, hook: m[2] as 'xdp' | 'tc', progId: info.progId, linkId: info.id, since: statSync(pin).mtime, pin }));
}

/**
 * Attaches the NAT program to an interface unless it already runs there.
 * `xdp` (native) falls back to tcx ingress where another XDP program holds
 * the interface. The receiving end of an XDP redirect into a veth needs NAPI,
 * so the peer of a tc-side veth in this namespace gets GRO.
 */
export function ensureNatLink(inst: InstancePaths, ifindex: number, want: 'xdp' | 'tc', besideTc = false): NatLink {
  const have = natLinks(inst).filter((l) => l.ifindex === ifindex);
  for (const l of have) if (!l.iface) unlinkSync(l.pin); // defunct: its interface is gone and the ifindex reused
  const live = have.filter((l) => l.iface);
  // An uplink whose XDP another program holds runs NAT at tc instead: that satisfies 'xdp' there.
  const found = live.find((l) => l.hook === want) ?? (want === 'xdp' && !besideTc ? live[0] : undefined);
  if (found) return found;
  const iface = ifIndexToName(ifindex) ?? `ifindex ${ifindex}`;
  mkdirSync(inst.links, { recursive: true });
  const tryHook = (hook: 'xdp' | 'tc'): number => {
    checkKernel(kernelRelease(), hook);
    const loaded = loadNat(inst, hook);
    try {
      return hook === 'xdp'
        ? linkCreate(loaded.prog.fd, ifindex, BPF_XDP, XDP_FLAGS_DRV_MODE, `NAT xdp program to ${iface}`)
        : linkCreate(loaded.prog.fd, ifindex, BPF_TCX_INGRESS, 0, `NAT tc program to ${iface}`);
    } finally {
      loaded.close();
    }
  };
  let hook = want;
  let fd: number;
  try {
    fd = tryHook(hook);
  } catch (e) {
    if (hook !== 'xdp' || !(e instanceof BpfError) || ![16, 17, 95].includes(e.errno)) throw e; // EBUSY, EEXIST, EOPNOTSUPP
    const tc = live.find((l) => l.hook === 'tc');
    if (tc) return tc; // beside tc: XDP taken by another program, tc alone does the work
    hook = 'tc';
    fd = tryHook(hook);
  }
  try {
    objPin(fd, join(inst.links, `nat-${ifindex}-${hook}`));
  } finally {
    closeFd(fd);
  }
  claimSlot(inst, ifindex); // its drops are counted against it
  enablePeerGro(iface); // replies are XDP-redirected into the inside interface (no-op for a peer elsewhere)
  return natLinks(inst).find((l) => l.ifindex === ifindex && l.hook === hook)!;
}

function enablePeerGro(iface: string): void {
  const [l] = ipJson<Array<{ link?: string; link_netnsid?: number }>>(['link', 'show', 'dev', iface]);
  if (!l?.link || l.link_netnsid !== undefined) return; // not a veth, or its peer is in another namespace
  try {
    execFileSync('ethtool', ['-K', l.link, 'gro', 'on'], { stdio: 'ignore' });
  } catch {
    /* no GRO there: XDP redirects into it are dropped, tc ones still work */
  }
}

export function unlinkNat(inst: InstancePaths, links: NatLink[]): void {
  for (const l of links) {
    unlinkSync(l.pin);
    releaseSlotIfUnused(inst, l.ifindex);
  }
}
