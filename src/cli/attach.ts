// attach / detach / status
import { Command, Option } from 'commander';
import { staleInstances } from '../dataplane/hygiene.js';
import { parseVlan, parseVlanList } from '../dataplane/addr.js';
import { attach, listAttachments, type Attachment, type Hook, type XdpMode } from '../dataplane/attach.js';
import { prepareRedirectTarget, vethPeerMac } from '../dataplane/peer.js';
import { parseLock, parseLockIps, type PortLock } from '../dataplane/port-lock.js';
import { addPort, delBridge, detachAll, detachInterface, listBridges, listPorts, reapVanishedPorts, type PortInfo } from '../dataplane/bridge.js';
import { hookName } from '../dataplane/links.js';
import { ifNameToIndex } from '../sys/libc.js';
import { natLinks } from '../dataplane/nat-links.js';
import { flushNat } from '../dataplane/nat.js';
import { instanceMemory, MAP_TYPE_NAMES, type MapMemory } from '../objects/memory.js';
import { ctFlowsOf, pinnedCtEntries } from '../objects/nat.js';
import { listVteps, portOverlay, vtepUplinks } from '../dataplane/vxlan.js';
import { UsageError, XdpnetError } from '../errors.js';
import { objectSet, type InstancePaths } from '../objects/paths.js';
import { runningSets } from '../objects/builds.js';
import { context, eachInstance } from './context.js';
import { ago, ibytes, json, table, vlansText } from './format.js';

function describe(a: Attachment): string {
  return `${hookName(a)}${a.mode ? ` ${a.mode}` : ''}, program ${a.progId}`;
}

function toJson(a: Attachment, objects: string, p?: PortInfo, vnis?: number[], nat = false) {
  return { iface: a.iface, ifindex: a.ifindex, hook: a.hook, tc: a.tc, objects, mode: a.mode, progId: a.progId, linkId: a.linkId,
    since: a.since.toISOString(), defunct: a.iface === null, nat,
    bridge: p?.bridge ?? null, pvid: p?.pvid ?? null, vlans: p?.vlans ?? null, hostPort: p?.host ?? false, lock: p?.lock ?? null,
    vtepUplink: vnis ?? null };
}

interface AttachOpts {
  hook?: Hook; mode?: XdpMode; bridge?: string; pvid?: string; trunk?: string; json?: boolean;
  lock?: boolean; lockMac?: string; lockIp?: string[];
}

/** --lock's usage errors, before anything is read or locked. */
function checkLockUsage(iface: string, o: AttachOpts): void {
  if (!o.lock) {
    if (o.lockMac || o.lockIp) throw new UsageError('--lock-mac and --lock-ip go with --lock', `e.g. xdpnet attach ${iface} --bridge NAME --lock --lock-ip 10.88.0.12`);
    return;
  }
  if (!o.bridge) throw new UsageError('--lock applies to bridge ports', 'add --bridge NAME');
  if (!o.lockIp) throw new UsageError('--lock needs the addresses the port may send from', `add --lock-ip IP[,IP], e.g. xdpnet attach ${iface} --bridge ${o.bridge} --lock --lock-ip 10.88.0.12`);
  if (o.lockMac) parseLock(o.lockMac, o.lockIp, '--lock-ip');
  else parseLockIps(o.lockIp, '--lock-ip');
}

/** The lock `--lock` asks for: --lock-ip's addresses, and --lock-mac or else the MAC of the veth's far end (read in the namespace). */
function lockOf(iface: string, o: AttachOpts): PortLock | undefined {
  if (!o.lock) return undefined;
  const mac = o.lockMac ?? vethPeerMac(iface);
  if (!mac) throw new UsageError(`--lock: cannot read the MAC behind ${iface} (not a veth, or its far end is out of sight)`, 'give it: --lock-mac MAC');
  return parseLock(mac, o.lockIp!, '--lock-ip');
}

export function attachCommands(program: Command): void {
  program
    .command('attach')
    .description('attach the xdpnet dataplane to an interface, or make it a bridge port (stays attached after xdpnet exits)')
    .argument('<iface>', 'interface name, e.g. eth0 or veth1')
    .addOption(new Option('--hook <hook>', 'where to run: xdp (highest packet rate) or tc (keeps GSO/TSO); default xdp, tc for bridge ports').choices(['xdp', 'tc']))
    .addOption(new Option('--mode <mode>', 'XDP mode: native (in the driver) or generic (any device, slower); default native').choices(['native', 'generic']))
    .option('--bridge <name>', 'make the interface a port of this bridge (see `xdpnet bridge add`)')
    .option('--pvid <vlan>', 'bridge port: the VLAN of untagged frames (access port; default 1)')
    .option('--trunk <vlans>', 'bridge port: tagged VLANs, e.g. 10,20,30-40 (no untagged VLAN unless --pvid is given too)')
    .option('--lock', 'bridge port: anti-spoofing: the port may send only from its MAC and --lock-ip addresses (IPv4 and ARP only); ' +
      'anything else is dropped and counted (port-lock-*)')
    .option('--lock-mac <mac>', 'with --lock: the MAC the port may send from (default: the MAC of the veth\'s far end)')
    .option('--lock-ip <ips>', 'with --lock: the IPv4 addresses the port may send from, e.g. 10.88.0.12 or 10.88.0.12,10.88.0.13 (repeatable; at most 8)',
      (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--json', 'print the attachment created (as `status --json` shows it) and the notes as JSON')
    .addHelpText('after', `
Examples:
  xdpnet attach eth0                             XDP in native mode (counts packets)
  xdpnet attach eth0 --mode generic              XDP for drivers without native support
  xdpnet attach veth1 --hook tc                  tc ingress, for container ports: tcx where the
                                                 kernel has it (6.6+), else a clsact qdisc filter
                                                 (XDPNET_TC=clsact|tcx forces one)
  xdpnet attach veth1 --bridge br0               a port of bridge br0 (tc hook, VLAN 1 untagged)
  xdpnet attach veth2 --bridge br0 --pvid 10     an access port on VLAN 10
  xdpnet attach eth1 --bridge br0 --hook xdp --trunk 10,20 --pvid 1
                                                 a trunk: VLANs 10 and 20 tagged, 1 untagged
  xdpnet attach veth3 --bridge br0 --lock --lock-ip 10.88.0.13
                                                 a container's port locked to its address and
                                                 the MAC of its eth0: it cannot take another's
                                                 MAC or address, nor answer ARP for it
  xdpnet --netns blue attach eth0                inside network namespace "blue"`)
    .action((iface: string, o: AttachOpts, cmd: Command) => {
      if (o.mode && (o.hook ?? (o.bridge ? 'tc' : 'xdp')) === 'tc') {
        throw new UsageError(`--mode applies to --hook xdp only${o.hook ? '' : ': --bridge ports use --hook tc unless told otherwise'}`, o.hook ? undefined : 'add --hook xdp, or leave out --mode');
      }
      if (!o.bridge && (o.pvid || o.trunk)) throw new UsageError('--pvid and --trunk apply to bridge ports', 'add --bridge NAME');
      const vlans = { pvid: o.pvid === undefined ? undefined : parseVlan(o.pvid), trunk: o.trunk === undefined ? undefined : parseVlanList(o.trunk) };
      checkLockUsage(iface, o);
      const ctx = context(cmd);
      const lock = lockOf(iface, o);
      if (!o.bridge) {
        const a = attach(ctx.inst, iface, { hook: o.hook ?? 'xdp', mode: o.mode, netns: ctx.netns });
        const notes = prepareRedirectTarget(iface, a.hook, { gro: false });
        if (o.json) return console.log(json({ ...toJson(a, objectsText(ctx.inst).set), notes }));
        console.log(`attached ${iface} (${describe(a)})`);
        for (const n of notes) console.log(n.startsWith('warning:') ? n : `note: ${n}`);
        return;
      }
      const { port, attachment } = addPort(ctx.inst, iface, o.bridge, { hook: o.hook ?? 'tc', mode: o.mode, netns: ctx.netns, ...vlans, lock });
      const notes: string[] = [];
      const ov = portOverlay(ctx.inst, port.bridge);
      if (ov) {
        notes.push(`bridge ${port.bridge} is an overlay bridge (VNI ${ov.vnis.join(', ')}): set the MTU behind ${iface} to ${ov.innerMtu ?? 'the uplink MTU - 50'}` +
          (attachment.hook === 'xdp' ? '; xn_br_tc runs next to XDP as its slow path' : ''));
      }
      // XDP ports and the uplink redirect into every port: a veth drops those frames unless its far end runs NAPI
      notes.push(...prepareRedirectTarget(iface, attachment.hook));
      if (o.json) return console.log(json({ ...toJson(attachment, objectsText(ctx.inst).set, port), notes }));
      console.log(`attached ${iface} to bridge ${port.bridge} (${describe(attachment)}; VLAN ${vlansText(port)}` +
        `${port.lock ? `; locked to ${port.lock.mac} ${port.lock.ips.join(',')}` : ''})`);
      for (const n of notes) console.log(n.startsWith('warning:') ? n : `note: ${n}`);
    });

  program
    .command('detach')
    .description('detach xdpnet from an interface and remove its pins; a bridge port leaves its bridge')
    .argument('[iface]', 'interface name, or the ifindex of a port whose interface is gone (see `xdpnet status`)')
    .option('--all', 'detach every interface of this host (or of --netns) and say what stays: bridges\' host interfaces, VTEP uplinks, NAT links')
    .option('--everything', 'with --all: remove what stays too (every NAT rule and link, every bridge with its VTEPs): a full teardown')
    .option('--json', 'print what was detached as JSON: {"detached": [names], "bridge": the port\'s bridge or null}; with --all also what was removed and what is left')
    .addHelpText('after', `
Examples:
  xdpnet detach veth1
  xdpnet detach --all                 container ports and counting programs; lists what stays
  xdpnet detach --all --everything    also NAT, VTEPs and bridges (tracked flows: xdpnet conntrack flush)`)
    .action((iface: string | undefined, o: { all?: boolean; everything?: boolean; json?: boolean }, cmd: Command) => {
      if (o.everything && !o.all) throw new UsageError('--everything goes with --all', 'xdpnet detach --all --everything');
      if (!iface === !o.all) throw new UsageError('name one interface or use --all', 'e.g. xdpnet detach eth0');
      const ctx = context(cmd);
      if (o.all) {
        const removed = o.everything ? teardown(ctx.inst) : undefined;
        const gone = detachAll(ctx.inst).map((a) => a.iface ?? `ifindex ${a.ifindex} (gone)`);
        const left = leftAfterDetachAll(ctx.inst);
        if (o.json) return console.log(json({ detached: gone, removed: removed ?? null, left }));
        const lines = gone.length ? gone.map((g) => `detached ${g}`) : ['nothing attached'];
        if (removed) {
          if (removed.natRules || removed.natLinks) lines.push(`removed ${removed.natRules} NAT rules and ${removed.natLinks} NAT links`);
          for (const b of removed.bridges) lines.push(`deleted bridge ${b}`);
        }
        for (const l of left) lines.push(`left: ${l.what} (${l.undo})`);
        if (left.length) lines.push('hint: `xdpnet detach --all --everything` removes them too');
        return console.log(lines.join('\n'));
      }
      if (/^\d+$/.test(iface!) && !ifNameToIndex(iface!)) {
        // a port whose interface vanished (its container's netns went without a CNI DEL)
        if (!reapVanishedPorts(ctx.inst, Number(iface)).length) {
          throw new XdpnetError(`no port or link with vanished interface ifindex ${iface}`, 'see `xdpnet status`: such ports show as "ifindex N (gone)"');
        }
        if (o.json) return console.log(json({ detached: [`ifindex ${iface} (gone)`], bridge: null }));
        return console.log(`detached ifindex ${iface} (interface gone)`);
      }
      const r = detachInterface(ctx.inst, iface!, ctx.netns);
      if (o.json) return console.log(json({ detached: [iface], bridge: r.bridge ?? null }));
      console.log(`detached ${iface}${r.attachment ? ` (${describe(r.attachment)})` : ''}${r.bridge ? ` from bridge ${r.bridge}` : ''}`);
    });

  program
    .command('status')
    .description('list attached interfaces: hook, mode, program id, bridge and VLANs, since when; and the maps\' memory')
    .option('--json', 'machine-readable output')
    .option('--memory', 'list every pinned map with its size and the kernel memory it takes instead')
    .option('-A, --all-namespaces', 'every instance on this host: the host and each network namespace with xdpnet state')
    .addHelpText('after', `
Memory is the kernel's own charge for each map (memlock in its fdinfo). The
bridges' decision cache is sized by \`bridge add --flows\`, conntrack and NAT's
hot copies by \`nat ... --conntrack-max\`; docs/memory.md has the formulas.

Examples:
  xdpnet status
  xdpnet status --all-namespaces --json
  xdpnet --netns h1 status --memory
  xdpnet status --memory --json | jq '[.[].bytes] | add'`)
    .action((o: { json?: boolean; memory?: boolean; allNamespaces?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      if (o.allNamespaces && ctx.netns) throw new UsageError('--all-namespaces and --netns exclude each other');
      if (o.allNamespaces && o.memory) throw new UsageError('--memory shows one instance: use it with --netns NAME, not --all-namespaces');
      for (const { inst, reason } of ctx.netns || o.allNamespaces ? [] : staleInstances()) {
        console.error(`note: stale state ${inst.dir}: ${reason} (\`xdpnet daemon\` removes it)`);
      }
      if (o.memory) {
        const maps = instanceMemory(ctx.inst);
        if (o.json) return console.log(json(maps.map((m) => ({ ...m, type: MAP_TYPE_NAMES[m.type] ?? m.type }))));
        return console.log(maps.length ? memoryTable(maps) : 'no maps');
      }
      if (!o.allNamespaces) return printStatus(statusOf(ctx.inst), o.json);
      const all = eachInstance(statusOf);
      if (o.json) return console.log(json(all.flatMap((s) => s.rows.map((r) => ({ netns: s.netns, ...r })))));
      if (!all.length) return console.log('no instances');
      console.log(all.map((s) => `${s.netns}:\n${renderStatus(s).replace(/^/gm, '  ')}`).join('\n'));
    });
}

/**
 * The BPF object set the instance runs (normal or compat, docs/kernels.md),
 * from its pinned programs' builds, and why: the reason this process would
 * pick that set, or that it would pick the other one (then `xdpnet upgrade`
 * switches).
 */
function objectsText(inst: InstancePaths): { set: string; text: string } {
  const running = runningSets(inst);
  const chosen = objectSet();
  if (!running.length) return { set: chosen.set, text: `${chosen.set} (${chosen.why})` };
  const set = running.join('+');
  return { set, text: set === chosen.set ? `${set} (${chosen.why})` : `${set} (this kernel gets ${chosen.set}: ${chosen.why}; \`xdpnet upgrade\` switches)` };
}

interface Status {
  objects: { set: string; text: string };
  rows: ReturnType<typeof toJson>[];
  table: Array<Array<string | number>>;
  ctFlows?: number;
  mapCount: number;
  mapBytes: number;
}

/** One instance's links (read inside its namespace: interface names are the namespace's). */
function statusOf(inst: InstancePaths): Status {
  const all = listAttachments(inst);
  // NAT's links (nat-<ifindex>-<hook> pins) are listed too: everything attached shows here.
  const nat = natLinks(inst).map((n): Attachment => ({ ...n, mode: null }));
  const ports = new Map(listPorts(inst).map((p) => [p.ifindex, p]));
  const uplinks = vtepUplinks(inst);
  const natSet = new Set(nat);
  const ctEntries = nat.length ? pinnedCtEntries(inst) : undefined; // its size only: counting a big table takes a while
  const maps = instanceMemory(inst);
  const objects = objectsText(inst);
  return {
    objects,
    rows: [...all.map((a) => toJson(a, objects.set, ports.get(a.ifindex), uplinks.get(a.ifindex))), ...nat.map((a) => toJson(a, objects.set, undefined, undefined, true))],
    table: [...all, ...nat].map((a) => {
      const p = ports.get(a.ifindex);
      const role = natSet.has(a) ? 'NAT' : p ? `bridge ${p.bridge}${p.host ? ' (host)' : ''}${p.lock ? ' (locked)' : ''}`
        : uplinks.has(a.ifindex) ? `VTEP uplink (VNI ${uplinks.get(a.ifindex)!.join(',')})` : '-';
      return [
        a.iface ?? `ifindex ${a.ifindex} (gone)`, hookName(a), a.mode ?? '-', a.progId, role, p ? vlansText(p) : '-',
        `${a.since.toISOString().replace('T', ' ').slice(0, 19)} (${ago(a.since)})`,
      ];
    }),
    ctFlows: ctEntries ? ctFlowsOf(ctEntries) : undefined,
    mapCount: maps.length,
    mapBytes: maps.reduce((n, m) => n + m.bytes, 0),
  };
}

function renderStatus(s: Status): string {
  if (!s.table.length) return 'nothing attached';
  return table(['IFACE', 'HOOK', 'MODE', 'PROG', 'ROLE', 'VLANS', 'SINCE'], s.table) +
    (s.ctFlows ? `\nNAT conntrack table: room for ${s.ctFlows} flows (fill: xdpnet nat show)` : '') +
    `\nMaps: ${s.mapCount} pinned, ${ibytes(s.mapBytes)} of kernel memory (each: xdpnet status --memory)` +
    `\nObjects: ${s.objects.text}`;
}

function printStatus(s: Status, asJson?: boolean): void {
  console.log(asJson ? json(s.rows) : renderStatus(s));
}

function memoryTable(maps: MapMemory[]): string {
  const total = maps.reduce((a, m) => a + m.bytes, 0);
  return table(['MAP', 'TYPE', 'ENTRIES', 'KEY', 'VALUE', 'MEMORY'], [
    ...maps.map((m) => [m.map, MAP_TYPE_NAMES[m.type] ?? String(m.type), m.maxEntries, m.keySize, m.valueSize, ibytes(m.bytes)]),
    ['total', '', '', '', '', ibytes(total)],
  ]);
}

/** `detach --all --everything`: NAT first (its links sit on the bridges' host interfaces), then bridges with their VTEPs. */
function teardown(inst: InstancePaths): { natRules: number; natLinks: number; bridges: string[] } {
  const nat = flushNat(inst);
  const bridges = listBridges(inst).map((b) => b.name);
  for (const b of bridges) delBridge(inst, b, { force: true });
  return { natRules: nat.rules, natLinks: nat.links, bridges };
}

/** What `detach --all` does not touch, each with the command that removes it. */
function leftAfterDetachAll(inst: InstancePaths): { what: string; undo: string }[] {
  const left: { what: string; undo: string }[] = [];
  for (const b of listBridges(inst)) {
    const host = listPorts(inst).find((p) => p.bridge === b.name && p.host);
    left.push({ what: `bridge ${b.name}${host?.iface ? ` with its host port ${host.iface}` : ''}`, undo: `xdpnet bridge del ${b.name} --force` });
  }
  for (const v of listVteps(inst)) left.push({ what: `VTEP uplink ${v.dev ?? `ifindex ${v.ifindex} (gone)`} of VNI ${v.vni}`, undo: `xdpnet vxlan del --vni ${v.vni}` });
  const nat = natLinks(inst);
  if (nat.length) left.push({ what: `NAT on ${nat.map((l) => `${l.iface ?? `ifindex ${l.ifindex}`} (${l.hook})`).join(', ')}`, undo: 'xdpnet nat flush' });
  return left;
}
