// attach / detach / status
import { Command, Option } from 'commander';
import { parseVlan, parseVlanList } from '../dataplane/addr.js';
import { attach, listAttachments, type Attachment, type Hook, type XdpMode } from '../dataplane/attach.js';
import { addPort, detachAll, detachInterface, listPorts, type PortInfo } from '../dataplane/bridge.js';
import { hookName } from '../dataplane/links.js';
import { natLinks } from '../dataplane/nat.js';
import { ctFlowsOf, pinnedCtEntries } from '../objects/nat.js';
import { portOverlay, vtepUplinks } from '../dataplane/vxlan.js';
import { UsageError } from '../errors.js';
import { context } from './context.js';
import { ago, json, table, vlansText } from './format.js';

function describe(a: Attachment): string {
  return `${hookName(a)}${a.mode ? ` ${a.mode}` : ''}, program ${a.progId}`;
}

function toJson(a: Attachment, p?: PortInfo, vnis?: number[], nat = false) {
  return { iface: a.iface, ifindex: a.ifindex, hook: a.hook, tc: a.tc, mode: a.mode, progId: a.progId, linkId: a.linkId,
    since: a.since.toISOString(), defunct: a.iface === null, nat,
    bridge: p?.bridge ?? null, pvid: p?.pvid ?? null, vlans: p?.vlans ?? null, hostPort: p?.host ?? false, vtepUplink: vnis ?? null };
}

interface AttachOpts { hook?: Hook; mode?: XdpMode; bridge?: string; pvid?: string; trunk?: string }

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
  xdpnet --netns blue attach eth0                inside network namespace "blue"`)
    .action((iface: string, o: AttachOpts, cmd: Command) => {
      if (o.hook === 'tc' && o.mode) throw new UsageError('--mode applies to --hook xdp only');
      if (!o.bridge && (o.pvid || o.trunk)) throw new UsageError('--pvid and --trunk apply to bridge ports', 'add --bridge NAME');
      const vlans = { pvid: o.pvid === undefined ? undefined : parseVlan(o.pvid), trunk: o.trunk === undefined ? undefined : parseVlanList(o.trunk) };
      const ctx = context(cmd);
      if (!o.bridge) {
        const a = attach(ctx.inst, iface, { hook: o.hook ?? 'xdp', mode: o.mode, netns: ctx.netns });
        return console.log(`attached ${iface} (${describe(a)})`);
      }
      const { port, attachment } = addPort(ctx.inst, iface, o.bridge, { hook: o.hook ?? 'tc', mode: o.mode, netns: ctx.netns, ...vlans });
      console.log(`attached ${iface} to bridge ${port.bridge} (${describe(attachment)}; VLAN ${vlansText(port)})`);
      const ov = portOverlay(ctx.inst, port.bridge);
      if (ov) {
        console.log(`note: bridge ${port.bridge} is an overlay bridge (VNI ${ov.vnis.join(', ')}): set the MTU behind ${iface} to ${ov.innerMtu ?? 'the uplink MTU - 50'}` +
          (attachment.hook === 'xdp' ? '; xn_br_tc runs next to XDP as its slow path' : ''));
        // the uplink's XDP redirects decapsulated frames into the port; a veth drops them unless its far end runs NAPI
        console.log(`note: on a veth, turn GRO on at its far end (ethtool -K IFACE gro on${attachment.hook === 'xdp' ? ' tx off: a frame entering XDP loses a partial checksum' : ''})`);
      }
    });

  program
    .command('detach')
    .description('detach xdpnet from an interface and remove its pins; a bridge port leaves its bridge')
    .argument('[iface]', 'interface name')
    .option('--all', 'detach every interface of this host (or of --netns); bridges and their host interfaces stay')
    .action((iface: string | undefined, o: { all?: boolean }, cmd: Command) => {
      if (!iface === !o.all) throw new UsageError('name one interface or use --all', 'e.g. xdpnet detach eth0');
      const ctx = context(cmd);
      if (o.all) {
        const gone = detachAll(ctx.inst);
        console.log(gone.length ? gone.map((a) => `detached ${a.iface ?? `ifindex ${a.ifindex} (gone)`}`).join('\n') : 'nothing attached');
        return;
      }
      const r = detachInterface(ctx.inst, iface!, ctx.netns);
      console.log(`detached ${iface}${r.attachment ? ` (${describe(r.attachment)})` : ''}${r.bridge ? ` from bridge ${r.bridge}` : ''}`);
    });

  program
    .command('status')
    .description('list attached interfaces: hook, mode, program id, bridge and VLANs, since when')
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const all = listAttachments(ctx.inst);
      // NAT's links (nat-<ifindex>-<hook> pins) are listed too: everything attached shows here.
      const nat = natLinks(ctx.inst).map((n): Attachment => ({ ...n, mode: null }));
      const ports = new Map(listPorts(ctx.inst).map((p) => [p.ifindex, p]));
      const uplinks = vtepUplinks(ctx.inst);
      if (o.json) {
        return console.log(json([...all.map((a) => toJson(a, ports.get(a.ifindex), uplinks.get(a.ifindex))), ...nat.map((a) => toJson(a, undefined, undefined, true))]));
      }
      if (!all.length && !nat.length) return console.log('nothing attached');
      const natSet = new Set(nat);
      console.log(table(['IFACE', 'HOOK', 'MODE', 'PROG', 'ROLE', 'VLANS', 'SINCE'], [...all, ...nat].map((a) => {
        const p = ports.get(a.ifindex);
        const role = natSet.has(a) ? 'NAT' : p ? `bridge ${p.bridge}${p.host ? ' (host)' : ''}`
          : uplinks.has(a.ifindex) ? `VTEP uplink (VNI ${uplinks.get(a.ifindex)!.join(',')})` : '-';
        return [
          a.iface ?? `ifindex ${a.ifindex} (gone)`, hookName(a), a.mode ?? '-', a.progId, role, p ? vlansText(p) : '-',
          `${a.since.toISOString().replace('T', ' ').slice(0, 19)} (${ago(a.since)})`,
        ];
      })));
      const ctEntries = nat.length ? pinnedCtEntries(ctx.inst) : undefined; // its size only: counting a big table takes a while
      if (ctEntries) console.log(`NAT conntrack table: room for ${ctFlowsOf(ctEntries)} flows (fill: xdpnet nat show)`);
    });
}
