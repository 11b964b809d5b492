// NAT's control plane: source rules (masquerade, SNAT), port mappings, the
// host's addresses, the NAT program's links, and conntrack (list, flush, GC,
// counters, timeouts). Rules live in the instance's pinned maps (the source of
// truth, like the bridge's):
//   xn_snat       (egress ifindex, source prefix) → addresses, ports, flags
//   xn_portmap    (ingress ifindex or 0, proto, host port) → container address and port
//   xn_nat_addrs  the host's own IPv4 addresses (port mappings apply to these only)
//   xn_ct         both directions of every translated flow; xn_ct_stats, xn_nat_config
//
// Where the programs run (nat.h translates on ingress, both directions):
//   tc ingress (tcx, or clsact: see links.ts) on the "inside" interface, the one routing the rule's
//     sources: for containers on an xdpnet bridge that is the bridge's host
//     interface (br0, the veth with the bridge address). Nothing else is
//     attached there (the bridge's program runs on its peer xnp<id>), so NAT
//     and bridging never share a hook; tc keeps GSO/TSO for container TCP.
//   XDP on the outside interface (the uplink): replies and port-mapped
//     connections at XDP rate. When the uplink already holds an XDP program
//     (VXLAN, or `xdpnet attach`), NAT goes on its tc ingress instead: tc
//     takes several programs per interface, XDP one.
// Links are pinned as links/nat-<ifindex>-<hook>[-clsact] by links.ts, beside
// the per-interface ones of attach.ts, so they survive the control process.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError, XdpnetError } from '../errors.js';
import { u32, numToIpv4 } from '../objects/codec.js';
import { CT_FLOWS, NAT, Portmap, PortmapKey, SNAT_FLAGS, SnatKey, SnatRule, snatKey } from '../objects/nat.js';
import type { InstancePaths } from '../objects/paths.js';
import type { BpfMap } from '../sys/libbpf.js';
import { ifIndexToName } from '../sys/libc.js';
import { removeInstanceIfIdle, resolveIface } from './attach.js';
import { forwardingNotes } from './host.js';
import { gcFlows } from './conntrack.js';
import { parseAddrRange, parseHostPort, parsePort, parsePortRange, parsePrefix, parseProto, PROTO_NAME, PROTO_NUM, type Proto } from './inet.js';
import { defaultDev, defaultPortRange, hostAddresses, routeDev } from './nat-host.js';
import { ensureNatLink, natLinks, unlinkNat, type NatLink } from './nat-links.js';
import { ensureNatTable, withNatMaps, type CtTable, type NatMaps } from './nat-maps.js';

/** `--conntrack-max FLOWS`: whole flows within CT_FLOWS' range. */
export function parseCtFlows(s: string): number {
  const n = Number(s);
  if (!/^\d+$/.test(s) || n < CT_FLOWS.min || n > CT_FLOWS.max) {
    throw new UsageError(`--conntrack-max: expected a number of flows from ${CT_FLOWS.min} to ${CT_FLOWS.max}, got '${s}'`,
      `e.g. --conntrack-max 1000000 (two table entries per flow, about 300 bytes of kernel memory)`);
  }
  return n;
}

// ---- rules ----------------------------------------------------------------

export interface SnatRuleInfo {
  kind: 'masquerade' | 'snat';
  src: string;
  out: string | null; // null: the interface is gone
  outIfindex: number;
  to: string; // "A" or "A-B"
  ports: string; // "LO-HI"
}

export interface PortmapInfo {
  proto: Proto;
  port: number;
  on: string | null; // null: any interface
  onIfindex: number;
  to: string; // "IP:PORT"
}

function readSnat(m: NatMaps): SnatRuleInfo[] {
  return m.snat.entries().map(([k, v]) => {
    const key = SnatKey.decode(k);
    const r = SnatRule.decode(v);
    return {
      kind: r.flags & SNAT_FLAGS.MASQUERADE ? 'masquerade' as const : 'snat' as const,
      src: `${numToIpv4(key.src)}/${key.prefixlen - 32}`,
      out: ifIndexToName(key.ifindex) ?? null,
      outIfindex: key.ifindex,
      to: r.addr_min === r.addr_max ? numToIpv4(r.addr_min) : `${numToIpv4(r.addr_min)}-${numToIpv4(r.addr_max)}`,
      ports: `${r.port_min}-${r.port_max}`,
    };
  }).sort((a, b) => a.kind.localeCompare(b.kind) || a.src.localeCompare(b.src));
}

function readPortmaps(m: NatMaps): PortmapInfo[] {
  return m.portmap.entries().map(([k, v]) => {
    const key = PortmapKey.decode(k);
    const p = Portmap.decode(v);
    return {
      proto: PROTO_NAME[key.proto] as Proto, port: key.port, onIfindex: key.ifindex,
      on: key.ifindex ? (ifIndexToName(key.ifindex) ?? `ifindex ${key.ifindex}`) : null,
      to: `${numToIpv4(p.to_addr)}:${p.to_port}`,
    };
  }).sort((a, b) => a.proto.localeCompare(b.proto) || a.port - b.port);
}

export interface SnatOptions {
  src: string;
  out: string;
  /** snat: "A" or "A-B"; masquerade: the interface's address. */
  to?: string;
  ports?: string;
  /** Where the sources' packets arrive (default: the interface routing --src). */
  in?: string;
  /** Conntrack capacity in flows (--conntrack-max): sizes a new table; see ensureNatTable(). */
  conntrackMax?: string;
  /** NAT's hook on the inside interface: tc (keeps GSO/TSO) or xdp (packet rate; veth peers lose GSO). */
  inHook?: 'tc' | 'xdp';
  netns?: string;
}

/** `nat masquerade add` / `nat snat add`: validates everything, writes the rule, attaches the programs it needs. */
export function addSnat(inst: InstancePaths, kind: 'masquerade' | 'snat', o: SnatOptions): SnatRuleInfo & { conntrack: CtTable; notes: string[] } {
  const src = parsePrefix(o.src);
  const ctFlows = o.conntrackMax !== undefined ? parseCtFlows(o.conntrackMax) : undefined;
  const range = kind === 'snat' ? parseAddrRange(o.to ?? '') : undefined;
  const ports = o.ports ? parsePortRange(o.ports) : undefined;
  const outIfindex = resolveIface(o.out, o.netns);
  const inside = o.in ?? routeDev(src);
  if (!inside) {
    throw new XdpnetError(`no interface routes ${src.text}: NAT must run where those sources' packets arrive`,
      `add a route (e.g. a bridge with --address), or name the interface with --in IFACE`);
  }
  const inIfindex = resolveIface(inside, o.netns);
  if (inIfindex === outIfindex) throw new XdpnetError(`${src.text} is routed through ${o.out} itself`, 'the sources must arrive on another interface than --out (or name it with --in)');
  let addr: [number, number];
  if (range) addr = range;
  else {
    const own = hostAddresses().byIf.get(outIfindex)?.[0];
    if (own === undefined) throw new XdpnetError(`${o.out} has no IPv4 address to masquerade as`, `give it one (ip addr add ... dev ${o.out}), or use \`nat snat --to IP\``);
    addr = [own, own];
  }
  const key = snatKey(outIfindex, src.text);
  if (withNatMaps(inst, (m) => exactRule(m.snat, key))) {
    throw new XdpnetError(`a source rule for ${src.text} out of ${o.out} already exists`, `remove it first: xdpnet nat ${kind} del --src ${src.text} --out ${o.out}`);
  }
  const conntrack = ensureNatTable(inst, ctFlows);
  withNatMaps(inst, (m) => {
    const [pmin, pmax] = ports ?? defaultPortRange(readPortmaps(m).map((p) => p.port));
    m.snat.update(key, SnatRule.encode({
      addr_min: addr[0], addr_max: addr[1], port_min: pmin, port_max: pmax, flags: kind === 'masquerade' ? SNAT_FLAGS.MASQUERADE : 0,
    }));
  });
  refreshAddresses(inst);
  ensureNatLink(inst, inIfindex, 'tc'); // with --in-hook xdp too: it takes what XDP cannot forward (unresolved next hops)
  if (o.inHook === 'xdp') ensureNatLink(inst, inIfindex, 'xdp', true);
  ensureNatLink(inst, outIfindex, 'xdp');
  const notes = forwardBetween(inside, o.out);
  return { ...withNatMaps(inst, (m) => readSnat(m).find((r) => r.outIfindex === outIfindex && r.src === src.text))!, conntrack, notes };
}

/**
 * Forwarding on for the two interfaces NAT routes between (a stock host has ip_forward=0, and
 * then nothing the rule translates goes anywhere); what it did, for the user to know.
 */
function forwardBetween(...devs: string[]): string[] {
  return [...new Set(devs)].flatMap((d) => forwardingNotes(d, 'NAT routes through it', 'translated packets are dropped (nat-cannot-forward)'));
}

/**
 * The rule stored under exactly this key. A lookup in the LPM trie answers
 * with the longest prefix covering the key: for 10.0.0.128/25 that is the
 * rule for 10.0.0.0/24 when no /25 rule exists.
 */
function exactRule(snat: BpfMap, key: Buffer): Buffer | undefined {
  return [...snat.keys()].some((k) => k.equals(key)) ? snat.lookup(key) : undefined;
}

/** Removes a source rule; returns it as `nat show` listed it. */
export function delSnat(inst: InstancePaths, kind: 'masquerade' | 'snat', o: { src: string; out: string; netns?: string }): SnatRuleInfo {
  const src = parsePrefix(o.src);
  const outIfindex = resolveIface(o.out, o.netns);
  const key = snatKey(outIfindex, src.text);
  const found = withNatMaps(inst, (m) => {
    const v = exactRule(m.snat, key);
    if (!v || Boolean(SnatRule.decode(v).flags & SNAT_FLAGS.MASQUERADE) !== (kind === 'masquerade')) return undefined;
    const rule = readSnat(m).find((r) => r.outIfindex === outIfindex && r.src === src.text);
    return m.snat.delete(key) ? rule : undefined;
  });
  if (!found) throw new XdpnetError(`no ${kind} rule for ${src.text} out of ${o.out}`, `see \`xdpnet nat ${kind} show\``);
  detachIfUnused(inst);
  return found;
}

export interface PortmapOptions { proto: string; port: string; to: string; on?: string; conntrackMax?: string; netns?: string }

export function addPortmap(inst: InstancePaths, o: PortmapOptions): PortmapInfo & { conntrack: CtTable; notes: string[] } {
  const proto = parseProto(o.proto);
  const ctFlows = o.conntrackMax !== undefined ? parseCtFlows(o.conntrackMax) : undefined;
  const port = parsePort(o.port, '--host-port');
  const to = parseHostPort(o.to);
  const onIfindex = o.on ? resolveIface(o.on, o.netns) : 0;
  const outside = o.on ?? defaultDev();
  if (!outside) throw new XdpnetError('no default route: cannot tell where outside clients arrive', 'name the interface with --out IFACE');
  const outIfindex = onIfindex || resolveIface(outside, o.netns);
  const inside = routeDev({ addr: to.addr, len: 32, text: '' });
  if (!inside) throw new XdpnetError(`no interface routes ${numToIpv4(to.addr)}`, 'the mapping\'s target must be reachable through a local interface (e.g. a bridge)');
  const inIfindex = resolveIface(inside, o.netns);
  const key = PortmapKey.encode({ ifindex: onIfindex, port, proto: PROTO_NUM[proto], pad: 0 });
  const old = withNatMaps(inst, (m) => m.portmap.lookup(key));
  if (old) {
    throw new XdpnetError(`${proto} port ${port}${o.on ? ` on ${o.on}` : ''} is already mapped to ${numToIpv4(Portmap.decode(old).to_addr)}:${Portmap.decode(old).to_port}`,
      `remove it first: xdpnet nat portmap del --proto ${proto} --host-port ${port}${o.on ? ` --out ${o.on}` : ''}`);
  }
  const conntrack = ensureNatTable(inst, ctFlows);
  withNatMaps(inst, (m) => m.portmap.update(key, Portmap.encode({ to_addr: to.addr, to_port: to.port, pad: 0 })));
  refreshAddresses(inst);
  ensureNatLink(inst, inIfindex, 'tc');
  if (outIfindex !== inIfindex) ensureNatLink(inst, outIfindex, 'xdp');
  // what was written, not a read of every mapping (a CNI ADD maps ports for each container)
  const notes = forwardBetween(outside, inside);
  return { proto, port, onIfindex, on: onIfindex ? (ifIndexToName(onIfindex) ?? `ifindex ${onIfindex}`) : null, to: `${numToIpv4(to.addr)}:${to.port}`, conntrack, notes };
}

/** Where a host port is mapped to ("IP:PORT"), if it is: one lookup, for callers that ask about their own mappings. */
export function portmapTarget(inst: InstancePaths, o: { proto: string; port: string; on?: string; netns?: string }): string | undefined {
  const onIfindex = o.on ? resolveIface(o.on, o.netns) : 0;
  const key = PortmapKey.encode({ ifindex: onIfindex, port: parsePort(o.port, '--host-port'), proto: PROTO_NUM[parseProto(o.proto)], pad: 0 });
  const v = withNatMaps(inst, (m) => m.portmap.lookup(key));
  return v && `${numToIpv4(Portmap.decode(v).to_addr)}:${Portmap.decode(v).to_port}`;
}

/** The source rules (few: an LPM trie walked entry by entry), without the mappings and links showNat reads too. */
export function listSnat(inst: InstancePaths): SnatRuleInfo[] {
  return withNatMaps(inst, readSnat) ?? [];
}

/** Removes a port mapping; returns it as `nat show` listed it. */
export function delPortmap(inst: InstancePaths, o: { proto: string; port: string; on?: string; netns?: string }): PortmapInfo {
  const proto = parseProto(o.proto);
  const port = parsePort(o.port, '--host-port');
  const onIfindex = o.on ? resolveIface(o.on, o.netns) : 0;
  const key = PortmapKey.encode({ ifindex: onIfindex, port, proto: PROTO_NUM[proto], pad: 0 });
  const found = withNatMaps(inst, (m) => {
    const pm = readPortmaps(m).find((p) => p.proto === proto && p.port === port && p.onIfindex === onIfindex);
    return m.portmap.delete(key) ? pm : undefined;
  });
  if (!found) throw new XdpnetError(`no mapping of ${proto} port ${port}${o.on ? ` on ${o.on}` : ''}`, 'see `xdpnet nat portmap show`');
  detachIfUnused(inst);
  return found;
}

export interface NatState { snat: SnatRuleInfo[]; portmaps: PortmapInfo[]; links: NatLink[] }

export function showNat(inst: InstancePaths): NatState {
  const rules = withNatMaps(inst, (m) => ({ snat: readSnat(m), portmaps: readPortmaps(m) })) ?? { snat: [], portmaps: [] };
  return { ...rules, links: natLinks(inst) };
}

/** Removes every rule and NAT link (conntrack entries stay until they expire or `conntrack flush`). */
export function flushNat(inst: InstancePaths): { rules: number; links: number } {
  const rules = withNatMaps(inst, (m) => {
    let n = 0;
    for (const map of [m.snat, m.portmap]) for (const k of [...map.keys()]) n += Number(map.delete(k));
    return n;
  }) ?? 0;
  const links = natLinks(inst);
  unlinkNat(inst, links);
  removeInstanceIfIdle(inst);
  return { rules, links: links.length };
}

/**
 * Keeps the maps in step with the host's addresses: xn_nat_addrs holds exactly
 * the host's IPv4 addresses, and each masquerade rule the primary address of
 * its interface. Run on every NAT command and in the daemon loop. With
 * apply false it writes nothing and only counts what is out of step (for
 * reading commands, which run without the state lock).
 */
export function refreshAddresses(inst: InstancePaths, apply = true): { addresses: number; masquerade: number; stale: number } {
  return withNatMaps(inst, (m) => {
    const { byAddr, byIf } = hostAddresses();
    let stale = 0;
    for (const k of [...m.addrs.keys()]) {
      if (byAddr.has(k.readUInt32BE(0))) continue;
      stale++;
      if (apply) m.addrs.delete(k);
    }
    for (const [a, ifindex] of byAddr) {
      const k = u32(a).reverse(); // network order
      const cur = m.addrs.lookup(k);
      if (cur && cur.readUInt32LE(0) === ifindex) continue;
      stale++;
      if (apply) m.addrs.update(k, u32(ifindex));
    }
    let changed = 0;
    for (const [k, v] of m.snat.entries()) {
      const r = SnatRule.decode(v);
      if (!(r.flags & SNAT_FLAGS.MASQUERADE)) continue;
      const own = byIf.get(SnatKey.decode(k).ifindex)?.[0];
      if (own === undefined || (own === r.addr_min && own === r.addr_max)) continue; // no address now: keep the last one
      if (apply) m.snat.update(k, SnatRule.encode({ ...r, addr_min: own, addr_max: own }));
      changed++;
    }
    return { addresses: byAddr.size, masquerade: changed, stale: stale + changed };
  }) ?? { addresses: 0, masquerade: 0, stale: 0 };
}
/** With no rule left, the NAT programs go (established flows keep their entries for when rules return). */
function detachIfUnused(inst: InstancePaths): void {
  const any = withNatMaps(inst, (m) => !m.snat.keys().next().done || !m.portmap.keys().next().done);
  if (any) return;
  unlinkNat(inst, natLinks(inst));
  removeInstanceIfIdle(inst);
}

/** Daemon pass: expired flows out, addresses current. */
export function natHousekeeping(inst: InstancePaths): string {
  if (!existsSync(join(inst.maps, NAT.maps.ct))) return 'no NAT';
  const gc = gcFlows(inst);
  const a = refreshAddresses(inst);
  return `${gc.removed} flows expired, ${gc.remaining} tracked${a.masquerade ? `, ${a.masquerade} masquerade addresses updated` : ''}`;
}
