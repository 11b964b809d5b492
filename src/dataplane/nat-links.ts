// NAT's links: the NAT program attached to the inside (tc) and outside (XDP,
// or tc where XDP is taken) interfaces. links.ts attaches and pins them
// (links/nat-<ifindex>-<hook>[-clsact]) beside the per-interface links of
// attach.ts, so they survive the control process; this module decides where.
import { execFileSync } from 'node:child_process';
import { BpfError } from '../errors.js';
import { loadNat } from '../objects/nat.js';
import type { InstancePaths } from '../objects/paths.js';
import { ifIndexToName } from '../sys/libc.js';
import { ipJson } from './host.js';
import { linkOn, listLinks, unlink, type HookLink } from './links.js';
import { claimSlot, releaseSlotIfUnused } from './slots.js';
import { withInstalledBuild } from './upgrade.js';

export type NatLink = HookLink;

export function natLinks(inst: InstancePaths): NatLink[] {
  return listLinks(inst, 'nat');
}

/**
 * Attaches the NAT program to an interface unless it already runs there.
 * `xdp` (native) falls back to tc ingress where another XDP program holds
 * the interface. The receiving end of an XDP redirect into a veth needs NAPI,
 * so the peer of a tc-side veth in this namespace gets GRO.
 */
export function ensureNatLink(inst: InstancePaths, ifindex: number, want: 'xdp' | 'tc', besideTc = false): NatLink {
  const have = listLinks(inst, 'nat', ifindex);
  for (const l of have) if (!l.iface) unlink(inst, l); // defunct: its interface is gone and the ifindex reused
  const live = have.filter((l) => l.iface);
  // An uplink whose XDP another program holds runs NAT at tc instead: that satisfies 'xdp' there.
  const found = live.find((l) => l.hook === want) ?? (want === 'xdp' && !besideTc ? live[0] : undefined);
  if (found) return found;
  const iface = ifIndexToName(ifindex) ?? `ifindex ${ifindex}`;
  const tryHook = (hook: 'xdp' | 'tc'): void => {
    const loaded = withInstalledBuild(inst, () => loadNat(inst, hook));
    try {
      linkOn(inst, 'nat', ifindex, hook, hook === 'xdp' ? 'native' : null, loaded.prog);
    } finally {
      loaded.close();
    }
  };
  let hook = want;
  try {
    tryHook(hook);
  } catch (e) {
    if (hook !== 'xdp' || !(e instanceof BpfError) || ![16, 17, 95].includes(e.errno)) throw e; // EBUSY, EEXIST, EOPNOTSUPP
    const tc = live.find((l) => l.hook === 'tc');
    if (tc) return tc; // beside tc: XDP taken by another program, tc alone does the work
    hook = 'tc';
    tryHook(hook);
  }
  claimSlot(inst, ifindex); // its drops are counted against it
  enablePeerGro(iface); // replies are XDP-redirected into the inside interface (no-op for a peer elsewhere)
  return listLinks(inst, 'nat', ifindex).find((l) => l.hook === hook)!;
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
    unlink(inst, l);
    releaseSlotIfUnused(inst, l.ifindex);
  }
}
