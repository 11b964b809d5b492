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
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import { BpfError, UsageError, XdpnetError } from '../errors.js';
import { sumPerCpu, u32, ipv4ToNum, numToIpv4 } from '../objects/codec.js';
import {
  CT_FLAGS, CT_FLOWS, CT_STATE_NAMES, CtEntry, ctEntriesFor, ctFlowsOf, CtKey, CtStats, DEFAULT_TIMEOUTS, flowsDeleted, IPPROTO, loadNat, NAT,
  NatConfig, pinnedCtEntries, Portmap, PortmapKey, SNAT_FLAGS, SnatKey, SnatRule, snatKey, timeoutSec, type CtEntryT, type CtKeyT,
  type NatConfigT,
} from '../objects/nat.js';
import type { InstancePaths } from '../objects/paths.js';
import { BpfMap } from '../sys/libbpf.js';
import { ifIndexToName, monotonicCoarseNs } from '../sys/libc.js';
import { removeInstanceIfIdle, resolveIface } from './attach.js';
import { linkOn, listLinks, unlink, type HookLink } from './links.js';
import { ipJson } from './host.js';
import { claimSlot, releaseSlotIfUnused } from './slots.js';

// ---- parsing (usage errors, before anything is written) -------------------

export interface Prefix { addr: number; len: number; text: string }

export function parsePrefix(s: string, what = '--src'): Prefix {
  const [ip, len = '32', ...rest] = s.split('/');
  if (!isIPv4(ip) || rest.length || !/^\d+$/.test(len) || Number(len) > 32) {
    throw new UsageError(`${what}: invalid IPv4 prefix '${s}'`, 'e.g. 172.17.0.0/16 or 172.17.0.2');
  }
  const bits = Number(len);
  const mask = bits ? (0xffffffff << (32 - bits)) >>> 0 : 0;
  const addr = (ipv4ToNum(ip) & mask) >>> 0;
  return { addr, len: bits, text: `${numToIpv4(addr)}/${bits}` };
}

export function parseIp(s: string, what: string): number {
  if (!isIPv4(s)) throw new UsageError(`${what}: invalid IPv4 address '${s}'`);
  return ipv4ToNum(s);
}

/** "A" or "A-B" (IPv4 addresses, A <= B). */
export function parseAddrRange(s: string): [number, number] {
  const [a, b = a, ...rest] = s.split('-');
  if (rest.length) throw new UsageError(`--to: invalid address range '${s}'`, 'e.g. 203.0.113.5 or 203.0.113.5-203.0.113.8');
  const lo = parseIp(a, '--to');
  const hi = parseIp(b, '--to');
  if (hi < lo) throw new UsageError(`--to: the range ${s} runs backwards`, `write it low to high: ${b}-${a}`);
  return [lo, hi];
}

/** "LO-HI" or "P" ports, 1-65535. */
export function parsePortRange(s: string, what = '--ports'): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(s);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || lo < 1 || hi > 65535 || hi < lo) throw new UsageError(`${what}: invalid port range '${s}'`, 'e.g. 20000-29999 (1 to 65535, low to high)');
  return [lo, hi];
}

export function parsePort(s: string, what: string): number {
  const n = Number(s);
  if (!/^\d+$/.test(s) || n < 1 || n > 65535) throw new UsageError(`${what}: invalid port '${s}'`, 'a port is 1 to 65535');
  return n;
}

/** `--conntrack-max FLOWS`: whole flows within CT_FLOWS' range. */
export function parseCtFlows(s: string): number {
  const n = Number(s);
  if (!/^\d+$/.test(s) || n < CT_FLOWS.min || n > CT_FLOWS.max) {
    throw new UsageError(`--conntrack-max: expected a number of flows from ${CT_FLOWS.min} to ${CT_FLOWS.max}, got '${s}'`,
      `e.g. --conntrack-max 1000000 (two table entries per flow, about 300 bytes of kernel memory)`);
  }
  return n;
}

export type Proto = 'tcp' | 'udp';
const PROTO_NUM: Record<Proto, number> = { tcp: IPPROTO.TCP, udp: IPPROTO.UDP };
const PROTO_NAME: Record<number, string> = { [IPPROTO.ICMP]: 'icmp', [IPPROTO.TCP]: 'tcp', [IPPROTO.UDP]: 'udp' };

export function parseProto(s: string): Proto {
  if (s !== 'tcp' && s !== 'udp') throw new UsageError(`--proto: expected tcp or udp, got '${s}'`);
  return s;
}

/** "IP:PORT". */
export function parseHostPort(s: string, what = '--to'): { addr: number; port: number } {
  const i = s.lastIndexOf(':');
  if (i < 0) throw new UsageError(`${what}: expected IP:PORT, got '${s}'`, 'e.g. --to 172.17.0.2:80');
  return { addr: parseIp(s.slice(0, i), what), port: parsePort(s.slice(i + 1), what) };
}

// ---- the host as `ip` sees it (inside the instance's namespace) -----------

interface IpAddr { ifindex: number; ifname: string; addr_info?: Array<{ family: string; local: string; prefixlen: number }> }
interface IpRoute { dst: string; dev?: string; gateway?: string; type?: string }


/** The host's IPv4 addresses: address → ifindex, and each interface's addresses in order (primary first). */
export function hostAddresses(): { byAddr: Map<number, number>; byIf: Map<number, number[]> } {
  const byAddr = new Map<number, number>();
  const byIf = new Map<number, number[]>();
  for (const l of ipJson<IpAddr[]>(['-4', 'addr', 'show'])) {
    for (const a of l.addr_info ?? []) {
      if (a.family !== 'inet' || a.local.startsWith('127.')) continue;
      const n = ipv4ToNum(a.local);
      byAddr.set(n, l.ifindex);
      (byIf.get(l.ifindex) ?? byIf.set(l.ifindex, []).get(l.ifindex)!).push(n);
    }
  }
  return { byAddr, byIf };
}

/** The interface of the most specific route covering the prefix (the default route only if `orDefault`). */
function routeDev(p: Prefix, orDefault = false): string | undefined {
  let best: { len: number; dev: string } | undefined;
  for (const r of ipJson<IpRoute[]>(['-4', 'route', 'show'])) {
    if (!r.dev || (r.type && r.type !== 'unicast')) continue;
    const q = r.dst === 'default' ? { addr: 0, len: 0 } : parsePrefix(r.dst, 'route');
    if (q.len === 0 && !orDefault) continue;
    const mask = q.len ? (0xffffffff << (32 - q.len)) >>> 0 : 0;
    if (q.len <= p.len && ((p.addr & mask) >>> 0) === q.addr && (!best || q.len > best.len)) best = { len: q.len, dev: r.dev };
  }
  return best?.dev;
}

function defaultDev(): string | undefined {
  return routeDev({ addr: 0, len: 0, text: '0.0.0.0/0' }, true);
}

/** Ports the host itself uses: its ephemeral range and every bound TCP/UDP port (the ports SNAT must not take). */
export function hostPorts(): { ephemeral: [number, number]; bound: Set<number> } {
  const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const bound = new Set<number>();
  for (const f of ['tcp', 'tcp6', 'udp', 'udp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/net/${f}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 4) continue;
      if (f.startsWith('tcp') && cols[3] !== '0A') continue; // LISTEN
      bound.add(parseInt(cols[1].split(':')[1], 16));
    }
  }
  return { ephemeral: [lo, hi], bound };
}

/** The default SNAT port range: the longest run of ports from 1024 up outside the host's ephemeral range, bound ports and the given host ports. */
export function defaultPortRange(avoid: Iterable<number> = []): [number, number] {
  const { ephemeral, bound } = hostPorts();
  const taken = new Set([...bound, ...avoid]);
  let best: [number, number] = [0, -1];
  let start = -1;
  for (let p = 1024; p <= 65536; p++) {
    const free = p <= 65535 && (p < ephemeral[0] || p > ephemeral[1]) && !taken.has(p);
    if (free && start < 0) start = p;
    if (!free && start >= 0) {
      if (p - 1 - start > best[1] - best[0]) best = [start, p - 1];
      start = -1;
    }
  }
  if (best[1] < best[0]) throw new XdpnetError('no free source port range: the host uses every port from 1024 up', 'give one with --ports LO-HI');
  return best;
}

// ---- maps -----------------------------------------------------------------

type Maps = Record<keyof typeof NAT.maps, BpfMap>;

/** Runs fn with the instance's NAT maps; undefined when there are none (reading never creates state). `create` pins them. */
export function withNatMaps<T>(inst: InstancePaths, fn: (m: Maps) => T, create = false): T | undefined {
  if (create) ensureNatTable(inst);
  return BpfMap.usePins(inst.maps, NAT.maps, fn);
}

export interface CtTable {
  maxFlows: number;
  maxEntries: number;
  /** Set when a table of another size was replaced (possible only with no NAT program attached). */
  replaced?: { maxFlows: number; entries: number };
}

/**
 * Creates the instance's NAT maps if missing, the conntrack table sized for
 * `flows` (default CT_FLOWS.default). A BPF map cannot be resized: a table of
 * another size is refused while NAT programs use it, and replaced (its
 * entries dropped) when none does. Without `flows` an existing table stays.
 */
export function ensureNatTable(inst: InstancePaths, flows?: number): CtTable {
  const have = pinnedCtEntries(inst);
  let replaced: CtTable['replaced'];
  if (flows !== undefined && have !== undefined && have !== ctEntriesFor(flows)) {
    const links = natLinks(inst);
    if (links.length) {
      throw new XdpnetError(`the conntrack table holds up to ${ctFlowsOf(have)} flows and cannot be resized while NAT runs (on ${links.map((l) => l.iface ?? `ifindex ${l.ifindex}`).join(', ')})`,
        `omit --conntrack-max to keep ${ctFlowsOf(have)}, or remove every NAT rule first (xdpnet nat flush; tracked flows are lost) and add it again with --conntrack-max ${flows}`);
    }
    const pin = join(inst.maps, NAT.maps.ct);
    replaced = { maxFlows: ctFlowsOf(have), entries: BpfMap.usePin(pin, (m) => m.count()) ?? 0 };
    unlinkSync(pin); // no program holds it any more: the next load creates the new size
  }
  if (!existsSync(join(inst.maps, NAT.maps.ct))) {
    mkdirSync(inst.maps, { recursive: true });
    loadNat(inst, 'tc', { ctFlows: flows }).close(); // loading pins every map by name
  }
  const maxEntries = pinnedCtEntries(inst)!;
  return { maxFlows: ctFlowsOf(maxEntries), maxEntries, replaced };
}

/** The conntrack table's size and fill, if the instance has one. */
export function ctTable(inst: InstancePaths): (CtTable & { entries: number }) | undefined {
  return BpfMap.usePin(join(inst.maps, NAT.maps.ct), (m) => ({ maxFlows: ctFlowsOf(m.info.maxEntries), maxEntries: m.info.maxEntries, entries: m.count() }));
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

function readSnat(m: Maps): SnatRuleInfo[] {
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

function readPortmaps(m: Maps): PortmapInfo[] {
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
export function addSnat(inst: InstancePaths, kind: 'masquerade' | 'snat', o: SnatOptions): SnatRuleInfo & { conntrack: CtTable } {
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
  if (withNatMaps(inst, (m) => m.snat.lookup(key))) {
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
  return { ...withNatMaps(inst, (m) => readSnat(m).find((r) => r.outIfindex === outIfindex && r.src === src.text))!, conntrack };
}

export function delSnat(inst: InstancePaths, kind: 'masquerade' | 'snat', o: { src: string; out: string; netns?: string }): void {
  const src = parsePrefix(o.src);
  const outIfindex = resolveIface(o.out, o.netns);
  const key = snatKey(outIfindex, src.text);
  const found = withNatMaps(inst, (m) => {
    const v = m.snat.lookup(key);
    if (!v || Boolean(SnatRule.decode(v).flags & SNAT_FLAGS.MASQUERADE) !== (kind === 'masquerade')) return false;
    return m.snat.delete(key);
  });
  if (!found) throw new XdpnetError(`no ${kind} rule for ${src.text} out of ${o.out}`, `see \`xdpnet nat ${kind} show\``);
  detachIfUnused(inst);
}

export interface PortmapOptions { proto: string; port: string; to: string; on?: string; conntrackMax?: string; netns?: string }

export function addPortmap(inst: InstancePaths, o: PortmapOptions): PortmapInfo & { conntrack: CtTable } {
  const proto = parseProto(o.proto);
  const ctFlows = o.conntrackMax !== undefined ? parseCtFlows(o.conntrackMax) : undefined;
  const port = parsePort(o.port, '--port');
  const to = parseHostPort(o.to);
  const onIfindex = o.on ? resolveIface(o.on, o.netns) : 0;
  const outside = o.on ?? defaultDev();
  if (!outside) throw new XdpnetError('no default route: cannot tell where outside clients arrive', 'name the interface with --on IFACE');
  const outIfindex = onIfindex || resolveIface(outside, o.netns);
  const inside = routeDev({ addr: to.addr, len: 32, text: '' });
  if (!inside) throw new XdpnetError(`no interface routes ${numToIpv4(to.addr)}`, 'the mapping\'s target must be reachable through a local interface (e.g. a bridge)');
  const inIfindex = resolveIface(inside, o.netns);
  const key = PortmapKey.encode({ ifindex: onIfindex, port, proto: PROTO_NUM[proto], pad: 0 });
  const old = withNatMaps(inst, (m) => m.portmap.lookup(key));
  if (old) {
    throw new XdpnetError(`${proto} port ${port}${o.on ? ` on ${o.on}` : ''} is already mapped to ${numToIpv4(Portmap.decode(old).to_addr)}:${Portmap.decode(old).to_port}`,
      `remove it first: xdpnet nat portmap del --proto ${proto} --port ${port}${o.on ? ` --on ${o.on}` : ''}`);
  }
  const conntrack = ensureNatTable(inst, ctFlows);
  withNatMaps(inst, (m) => m.portmap.update(key, Portmap.encode({ to_addr: to.addr, to_port: to.port, pad: 0 })));
  refreshAddresses(inst);
  ensureNatLink(inst, inIfindex, 'tc');
  if (outIfindex !== inIfindex) ensureNatLink(inst, outIfindex, 'xdp');
  return { ...withNatMaps(inst, (m) => readPortmaps(m).find((p) => p.proto === proto && p.port === port && p.onIfindex === onIfindex))!, conntrack };
}

export function delPortmap(inst: InstancePaths, o: { proto: string; port: string; on?: string; netns?: string }): void {
  const proto = parseProto(o.proto);
  const port = parsePort(o.port, '--port');
  const onIfindex = o.on ? resolveIface(o.on, o.netns) : 0;
  const key = PortmapKey.encode({ ifindex: onIfindex, port, proto: PROTO_NUM[proto], pad: 0 });
  if (!withNatMaps(inst, (m) => m.portmap.delete(key))) {
    throw new XdpnetError(`no mapping of ${proto} port ${port}${o.on ? ` on ${o.on}` : ''}`, 'see `xdpnet nat portmap show`');
  }
  detachIfUnused(inst);
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
 * its interface. Run on every NAT command and in the daemon loop.
 */
export function refreshAddresses(inst: InstancePaths): { addresses: number; masquerade: number } {
  return withNatMaps(inst, (m) => {
    const { byAddr, byIf } = hostAddresses();
    for (const k of [...m.addrs.keys()]) if (!byAddr.has(k.readUInt32BE(0))) m.addrs.delete(k);
    for (const [a, ifindex] of byAddr) {
      const k = u32(a).reverse(); // network order
      const cur = m.addrs.lookup(k);
      if (!cur || cur.readUInt32LE(0) !== ifindex) m.addrs.update(k, u32(ifindex));
    }
    let changed = 0;
    for (const [k, v] of m.snat.entries()) {
      const r = SnatRule.decode(v);
      if (!(r.flags & SNAT_FLAGS.MASQUERADE)) continue;
      const own = byIf.get(SnatKey.decode(k).ifindex)?.[0];
      if (own === undefined || (own === r.addr_min && own === r.addr_max)) continue; // no address now: keep the last one
      m.snat.update(k, SnatRule.encode({ ...r, addr_min: own, addr_max: own }));
      changed++;
    }
    return { addresses: byAddr.size, masquerade: changed };
  }) ?? { addresses: 0, masquerade: 0 };
}

// ---- links ----------------------------------------------------------------

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
function ensureNatLink(inst: InstancePaths, ifindex: number, want: 'xdp' | 'tc', besideTc = false): NatLink {
  const have = natLinks(inst).filter((l) => l.ifindex === ifindex);
  for (const l of have) if (!l.iface) unlink(inst, l); // defunct: its interface is gone and the ifindex reused
  const live = have.filter((l) => l.iface);
  // An uplink whose XDP another program holds runs NAT at tc instead: that satisfies 'xdp' there.
  const found = live.find((l) => l.hook === want) ?? (want === 'xdp' && !besideTc ? live[0] : undefined);
  if (found) return found;
  const iface = ifIndexToName(ifindex) ?? `ifindex ${ifindex}`;
  const tryHook = (hook: 'xdp' | 'tc'): void => {
    const loaded = loadNat(inst, hook);
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

/** With no rule left, the NAT programs go (established flows keep their entries for when rules return). */
function detachIfUnused(inst: InstancePaths): void {
  const any = withNatMaps(inst, (m) => !m.snat.keys().next().done || !m.portmap.keys().next().done);
  if (any) return;
  unlinkNat(inst, natLinks(inst));
  removeInstanceIfIdle(inst);
}

function unlinkNat(inst: InstancePaths, links: NatLink[]): void {
  for (const l of links) {
    unlink(inst, l);
    releaseSlotIfUnused(inst, l.ifindex);
  }
}

// ---- conntrack ------------------------------------------------------------

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

function readConfig(m: Maps): NatConfigT {
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
function readEntries(m: Maps): { orig: Rows; reply: Rows } {
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
function readFlows(m: Maps, f: FlowFilter): { rows: Rows; shown: Uint32Array } {
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
      entries: m.ct.count(), max: m.ct.info.maxEntries, maxFlows: ctFlowsOf(m.ct.info.maxEntries), created: n(s?.created), insertFailed: n(s?.insert_failed),
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

/** Daemon pass: expired flows out, addresses current. */
export function natHousekeeping(inst: InstancePaths): string {
  if (!existsSync(join(inst.maps, NAT.maps.ct))) return 'no NAT';
  const gc = gcFlows(inst);
  const a = refreshAddresses(inst);
  return `${gc.removed} flows expired, ${gc.remaining} tracked${a.masquerade ? `, ${a.masquerade} masquerade addresses updated` : ''}`;
}
