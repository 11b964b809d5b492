// What an XDP redirect into a veth needs from the veth's far end: the kernel
// drops every frame redirected into a veth whose peer runs neither XDP nor
// GRO (NAPI), and a frame that enters XDP loses a partial checksum, so a peer
// that sends them breaks TCP through an XDP port. xdpnet turns GRO on where
// it can see the peer (this namespace or a named one) and says what to do
// where it cannot.
import { execFileSync } from 'node:child_process';
import { ipJson } from './host.js';

export interface VethPeer {
  name: string;
  /** The named network namespace it is in; null: the same namespace as the veth. */
  netns: string | null;
}

interface LinkJson { ifindex: number; ifname: string; link?: string; link_index?: number; link_netnsid?: number; linkinfo?: { info_kind?: string } }

/** The far end of a veth, if iface is one and the peer can be found; null when it is a veth whose peer is out of sight. */
export function vethPeer(iface: string): VethPeer | null | undefined {
  const [l] = ipJson<LinkJson[]>(['-d', 'link', 'show', 'dev', iface], []);
  if (l?.linkinfo?.info_kind !== 'veth') return undefined;
  if (l.link_netnsid === undefined) return l.link ? { name: l.link, netns: null } : null;
  const ns = ipJson<Array<{ name: string; id?: number }>>(['netns', 'list'], []).find((n) => n.id === l.link_netnsid);
  if (!ns || l.link_index === undefined) return null;
  const peer = ipJson<LinkJson[]>(['-n', ns.name, 'link', 'show'], []).find((x) => x.ifindex === l.link_index);
  return peer ? { name: peer.ifname, netns: ns.name } : null;
}

/** The MAC of a veth's far end (a container's eth0), where it can be seen. */
export function vethPeerMac(iface: string): string | undefined {
  let p: VethPeer | null | undefined;
  try {
    p = vethPeer(iface);
  } catch {
    return undefined;
  }
  if (!p) return undefined;
  const [l] = ipJson<Array<{ address?: string }>>([...(p.netns ? ['-n', p.netns] : []), 'link', 'show', 'dev', p.name], []);
  return l?.address;
}

function ethtool(p: VethPeer, args: string[]): string {
  const argv = p.netns ? ['netns', 'exec', p.netns, 'ethtool', ...args] : ['ethtool', ...args];
  return execFileSync(p.netns ? 'ip' : 'ethtool', p.netns ? argv : args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function features(p: VethPeer): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const m of ethtool(p, ['-k', p.name]).matchAll(/^\s*([\w-]+): (on|off)/gm)) out.set(m[1], m[2] === 'on');
  return out;
}

const where = (p: VethPeer) => (p.netns ? `${p.name} (in network namespace ${p.netns})` : p.name);
const fix = (p: VethPeer, f: string) => (p.netns ? `ip netns exec ${p.netns} ethtool -K ${p.name} ${f}` : `ethtool -K ${p.name} ${f}`);

/**
 * Readies a veth for frames XDP redirects into it: GRO on at its far end.
 * Returns what the user should know (nothing when all was ready). Never
 * throws: a port that cannot be readied still works for tc and the stack,
 * and the frames XDP loses there are counted (redirect-refused).
 */
export function prepareRedirectTarget(iface: string, hook: 'xdp' | 'tc', o: { gro: boolean } = { gro: true }): string[] {
  const notes: string[] = [];
  let p: VethPeer | null | undefined;
  try {
    p = vethPeer(iface);
  } catch {
    p = null;
  }
  if (p === undefined) return notes; // not a veth
  if (p === null) {
    if (!o.gro) return notes;
    notes.push(`the far end of veth ${iface} is out of sight: turn GRO on there (ethtool -K PEER gro on${hook === 'xdp' ? ' tx off' : ''}), ` +
      'or frames XDP redirects into it are dropped (counted as redirect-refused)');
    return notes;
  }
  try {
    const f = features(p);
    if (o.gro && f.get('generic-receive-offload') === false) {
      ethtool(p, ['-K', p.name, 'gro', 'on']);
      notes.push(`turned GRO on at ${where(p)}: the kernel drops frames XDP redirects into a veth whose peer has neither XDP nor GRO`);
    }
    if (hook === 'xdp' && f.get('tx-checksumming')) {
      notes.push(`warning: ${where(p)} sends partial checksums, which a frame entering XDP loses (TCP through ${iface} breaks): ${fix(p, 'tx off')}`);
    }
  } catch (e) {
    notes.push(`could not read or set ${where(p)}'s offloads (${(e as Error).message.split('\n')[0]}): ${fix(p, 'gro on')}`);
  }
  return notes;
}
