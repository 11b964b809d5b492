// nat masquerade|snat|portmap add|del|show, nat show, nat flush
import { Command, Option } from 'commander';
import { parseAddrRange, parseHostPort, parsePort, parsePortRange, parsePrefix, parseProto } from '../dataplane/inet.js';
import {
  addPortmap, addSnat, delPortmap, delSnat, flushNat, parseCtFlows, refreshAddresses, showNat, type NatState, type PortmapInfo, type SnatRuleInfo,
} from '../dataplane/nat.js';
import type { NatLink } from '../dataplane/nat-links.js';
import { ctTable, type CtTable } from '../dataplane/nat-maps.js';
import { CT_FLOWS } from '../objects/nat.js';
import { deprecatedAlias } from './args.js';
import { context } from './context.js';
import { json, table } from './format.js';

const CT_MAX_HELP = `conntrack table size in flows, ${CT_FLOWS.min}-${CT_FLOWS.max} (default ${CT_FLOWS.default}); ` +
  'sets the size when the first NAT rule creates the table. A table of another size is refused while NAT runs ' +
  '(`nat flush` first: tracked flows are lost), replaced when no NAT rule is left. It also sizes XDP\'s per-CPU ' +
  'copies of steady flows (docs/memory.md; `xdpnet status --memory` shows both)';

/** The line the add commands print about the conntrack table. */
function ctLine(t: CtTable): string {
  return `conntrack: room for ${t.maxFlows} flows${t.replaced ? ` (replaced a table for ${t.replaced.maxFlows} flows; ${t.replaced.entries} entries dropped)` : ''}`;
}

const ifname = (name: string | null, ifindex: number) => name ?? `ifindex ${ifindex} (gone)`;

function snatTable(rules: SnatRuleInfo[]): string {
  if (!rules.length) return 'no source rules';
  return table(['TYPE', 'SRC', 'OUT', 'TO', 'PORTS'], rules.map((r) => [r.kind, r.src, ifname(r.out, r.outIfindex), r.to, r.ports]));
}

function portmapTable(maps: PortmapInfo[]): string {
  if (!maps.length) return 'no port mappings';
  return table(['PROTO', 'HOST-PORT', 'OUT', 'TO'], maps.map((p) => [p.proto, p.port, p.on ?? 'any', p.to]));
}

function linksText(links: NatLink[]): string {
  return `NAT runs on: ${links.length ? links.map((l) => `${ifname(l.iface, l.ifindex)} (${l.hook}, program ${l.progId})`).join(', ') : 'nothing (no rules)'}`;
}

/**
 * Reads the state and writes nothing (reading commands take no lock); says so
 * when the host's addresses moved since the maps were written.
 */
function state(cmd: Command): NatState {
  const ctx = context(cmd);
  const { stale } = refreshAddresses(ctx.inst, false);
  if (stale) console.error(`note: the host's addresses changed since the NAT maps were written (${stale} out of step); the daemon or the next nat command updates them`);
  return showNat(ctx.inst);
}

function sourceRuleCommands(nat: Command, kind: 'masquerade' | 'snat'): void {
  const group = nat.command(kind).description(kind === 'masquerade'
    ? 'translate sources to the outgoing interface\'s address (follows address changes), like iptables MASQUERADE'
    : 'translate sources to fixed addresses, like iptables SNAT');
  const add = group
    .command('add')
    .description(`add a ${kind} rule: new flows from --src leaving through --out are translated; established flows are untouched`)
    .requiredOption('--src <cidr>', 'inner source prefix, e.g. 172.17.0.0/16')
    .requiredOption('--out <iface>', 'egress interface (as the routing table picks it), e.g. eth0')
    .option('--ports <lo-hi>', 'source ports to allocate (default: the longest range above 1023 the host leaves free: outside ' +
      'net.ipv4.ip_local_port_range, bound ports and mapped ports)')
    .option('--in <iface>', 'where the sources\' packets arrive (default: the interface routing --src, e.g. the bridge\'s)')
    .option('--conntrack-max <flows>', CT_MAX_HELP)
    .addOption(new Option('--in-hook <hook>', 'NAT\'s hook on --in: tc keeps GSO/TSO for container TCP; xdp forwards at XDP rate ' +
      '(on a veth it turns GSO off on the peer, see docs/nat.md)').choices(['tc', 'xdp']).default('tc'))
    .option('--json', 'print the rule created as JSON');
  if (kind === 'snat') add.requiredOption('--to <ip[-ip]>', 'translated source address, or an inclusive range (each source keeps one)');
  add.addHelpText('after', kind === 'masquerade' ? `
Examples:
  xdpnet nat masquerade add --src 172.17.0.0/16 --out eth0
  xdpnet nat masquerade add --src 172.17.0.0/16 --out eth0 --ports 20000-29999
  xdpnet --netns host1 nat masquerade add --src 10.88.0.0/24 --out up0 --in br0

The NAT program goes on tc ingress of --in (keeps GSO/TSO) and on XDP of --out
(tc there when another XDP program holds it).

IPv4 forwarding is turned on for --in and --out where it is off (a note says so):
nothing is routed in from an interface that does not forward.` : `
Examples:
  xdpnet nat snat add --src 172.17.0.0/16 --out eth0 --to 203.0.113.5
  xdpnet nat snat add --src 172.17.0.0/16 --out eth0 --to 203.0.113.5-203.0.113.8 --ports 1024-65535

IPv4 forwarding is turned on for --in and --out where it is off (a note says so).`)
    .action((o: { src: string; out: string; to?: string; ports?: string; in?: string; conntrackMax?: string; inHook?: 'tc' | 'xdp'; json?: boolean }, cmd: Command) => {
      parsePrefix(o.src);
      if (o.ports) parsePortRange(o.ports);
      if (o.conntrackMax !== undefined) parseCtFlows(o.conntrackMax);
      if (kind === 'snat') parseAddrRange(o.to ?? '');
      const ctx = context(cmd);
      const { json: asJson, ...args } = o;
      const r = addSnat(ctx.inst, kind, { ...args, netns: ctx.netns });
      if (asJson) return console.log(json(r));
      console.log(`${kind} ${r.src} out of ${r.out} as ${r.to}, ports ${r.ports}\n${ctLine(r.conntrack)}`);
      for (const n of r.notes) console.log(`note: ${n}`);
    });
  group
    .command('del')
    .description(`remove a ${kind} rule (its established flows keep their translation until they end)`)
    .requiredOption('--src <cidr>', 'the rule\'s source prefix')
    .requiredOption('--out <iface>', 'the rule\'s egress interface')
    .option('--json', 'print the rule removed (as `nat show --json` listed it) as JSON: {"removed": {...}}')
    .addHelpText('after', `\nExample:\n  xdpnet nat ${kind} del --src 172.17.0.0/16 --out eth0`)
    .action((o: { src: string; out: string; json?: boolean }, cmd: Command) => {
      parsePrefix(o.src);
      const ctx = context(cmd);
      const r = delSnat(ctx.inst, kind, { src: o.src, out: o.out, netns: ctx.netns });
      console.log(o.json ? json({ removed: r }) : `removed ${kind} ${r.src} out of ${o.out}`);
    });
  group
    .command('show')
    .description(`list ${kind} rules`)
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }, cmd: Command) => {
      const rules = state(cmd).snat.filter((r) => r.kind === kind);
      console.log(o.json ? json(rules) : snatTable(rules));
    });
}

export function natCommands(program: Command): void {
  const nat = program
    .command('nat')
    .description('NAT with connection tracking: masquerade, SNAT, port mappings (see also `xdpnet conntrack`)')
    .addHelpText('after', `
Examples:
  xdpnet nat masquerade add --src 172.17.0.0/16 --out eth0     containers reach the outside
  xdpnet nat portmap add --proto tcp --host-port 8080 --to 172.17.0.2:80
                                                               the outside reaches a container (like -p 8080:80)
  xdpnet nat show                                              every rule, and where NAT runs`);
  sourceRuleCommands(nat, 'masquerade');
  sourceRuleCommands(nat, 'snat');

  const pm = nat.command('portmap').description('map a host port to a container (DNAT, with hairpin), like docker -p');
  deprecatedAlias(deprecatedAlias(pm.command('add')
    .description('map --host-port on the host\'s addresses to --to; replies are translated back')
    .addOption(new Option('--proto <proto>', 'protocol').choices(['tcp', 'udp']).makeOptionMandatory())
    .requiredOption('--host-port <port>', 'host port, 1-65535')
    .requiredOption('--to <ip:port>', 'container address and port, e.g. 172.17.0.2:80')
    .option('--out <iface>', 'the outside interface: only clients arriving on it (default: any; NAT is attached to the default route\'s)')
    .option('--conntrack-max <flows>', CT_MAX_HELP)
    .option('--json', 'print the mapping created as JSON'), '--port <hostport>', '--host-port'), '--on <iface>', '--out')
    .addHelpText('after', `
Examples:
  xdpnet nat portmap add --proto tcp --host-port 8080 --to 172.17.0.2:80
  xdpnet nat portmap add --proto udp --host-port 5353 --to 172.17.0.3:53 --out eth0

IPv4 forwarding is turned on for the outside interface and the one routing --to where
it is off (a note says so).`)
    .action((o: { proto: string; hostPort: string; to: string; out?: string; conntrackMax?: string; json?: boolean }, cmd: Command) => {
      parseProto(o.proto);
      parsePort(o.hostPort, '--host-port');
      parseHostPort(o.to);
      if (o.conntrackMax !== undefined) parseCtFlows(o.conntrackMax);
      const ctx = context(cmd);
      const p = addPortmap(ctx.inst, { proto: o.proto, port: o.hostPort, to: o.to, on: o.out, conntrackMax: o.conntrackMax, netns: ctx.netns });
      if (o.json) return console.log(json(p));
      console.log(`mapped ${p.proto} port ${p.port}${p.on ? ` on ${p.on}` : ''} to ${p.to}\n${ctLine(p.conntrack)}`);
      for (const n of p.notes) console.log(`note: ${n}`);
    });
  deprecatedAlias(deprecatedAlias(pm.command('del')
    .description('remove a port mapping (established connections keep going until they end)')
    .addOption(new Option('--proto <proto>', 'protocol').choices(['tcp', 'udp']).makeOptionMandatory())
    .requiredOption('--host-port <port>', 'host port')
    .option('--out <iface>', 'the mapping\'s outside interface, if it has one')
    .option('--json', 'print the mapping removed (as `nat show --json` listed it) as JSON: {"removed": {...}}'), '--port <hostport>', '--host-port'), '--on <iface>', '--out')
    .addHelpText('after', '\nExample:\n  xdpnet nat portmap del --proto tcp --host-port 8080')
    .action((o: { proto: string; hostPort: string; out?: string; json?: boolean }, cmd: Command) => {
      parsePort(o.hostPort, '--host-port');
      const ctx = context(cmd);
      const p = delPortmap(ctx.inst, { proto: o.proto, port: o.hostPort, on: o.out, netns: ctx.netns });
      console.log(o.json ? json({ removed: p }) : `removed the mapping of ${p.proto} port ${p.port}${o.out ? ` on ${o.out}` : ''} to ${p.to}`);
    });
  pm.command('show')
    .description('list port mappings')
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }, cmd: Command) => {
      const maps = state(cmd).portmaps;
      console.log(o.json ? json(maps) : portmapTable(maps));
    });

  nat.command('show')
    .description('every NAT rule, and the interfaces NAT runs on')
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }, cmd: Command) => {
      const s = state(cmd);
      const ct = ctTable(context(cmd).inst) ?? null; // null: no table yet (the first rule creates it)
      if (o.json) return console.log(json({ ...s, links: s.links.map(({ pin: _pin, ...l }) => l), conntrack: ct }));
      console.log([snatTable(s.snat), portmapTable(s.portmaps), linksText(s.links),
        ct ? `conntrack: ${ct.entries} entries, room for ${ct.maxFlows} flows (${ct.maxEntries} entries)` : 'conntrack: no table'].join('\n\n'));
    });

  nat.command('flush')
    .description('remove every NAT rule and detach the NAT programs (tracked flows stay: `xdpnet conntrack flush`)')
    .option('--json', 'print what was removed, as `nat show --json` listed it: {"removed": {"snat": [...], "portmaps": [...], "links": [...]}}')
    .action((o: { json?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const before = o.json ? showNat(ctx.inst) : undefined; // under the lock: what the flush removes
      const r = flushNat(ctx.inst);
      if (before) return console.log(json({ removed: { ...before, links: before.links.map(({ pin: _pin, ...l }) => l) } }));
      console.log(`removed ${r.rules} rules, ${r.links} NAT links`);
    });
}
