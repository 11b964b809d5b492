// vxlan add / del / show / remote add|del
import { Command, Option } from 'commander';
import { parseVlan } from '../dataplane/addr.js';
import { listPorts } from '../dataplane/bridge.js';
import { parseUnicastIp } from '../dataplane/inet.js';
import { prepareRedirectTarget } from '../dataplane/peer.js';
import {
  addRemote, addVtep, delRemote, delVtep, listVteps, parseUdpPort, parseVni, VXLAN_PORT, type VtepInfo,
} from '../dataplane/vxlan.js';
import { deprecatedAlias } from './args.js';
import { context } from './context.js';
import { json, table } from './format.js';

const render = (rows: VtepInfo[]) => table(['VNI', 'BRIDGE', 'VLAN', 'LOCAL', 'DEV', 'PORT', 'LEARNING', 'INNER-MTU', 'REMOTES'], rows.map((v) => [
  v.vni, v.bridge, v.vlan, v.local, v.dev ?? `ifindex ${v.ifindex} (gone)`, v.port, v.learning ? 'on' : 'off', v.innerMtu ?? '-',
  v.remotes.join(',') || '-',
]));

interface AddOpts { bridge: string; vni: string; local: string; dev: string; udpPort: string; vlan?: string; learning?: boolean; hook?: 'xdp' | 'tc'; json?: boolean }

export function vxlanCommands(program: Command): void {
  const vxlan = program
    .command('vxlan')
    .description('VXLAN overlay (RFC 7348): VTEPs that carry a bridge VLAN to other hosts over an uplink, in XDP and tc');

  deprecatedAlias(vxlan
    .command('add')
    .description('add a VTEP: bridge VLAN <-> VNI over an uplink (attaches the decap program to the uplink)')
    .requiredOption('--bridge <name>', 'the bridge whose VLAN the VNI carries')
    .requiredOption('--vni <n>', 'VXLAN network identifier, 1 to 16777215, unique on this host')
    .requiredOption('--local <ip>', "the uplink's IPv4 address: outer source, and where remote VTEPs send to")
    .requiredOption('--dev <uplink>', 'the uplink interface (the underlay)')
    .option('--udp-port <n>', 'UDP port: 4789 (IANA) or 8472 (Linux/Flannel default)', String(VXLAN_PORT))
    .option('--vlan <n>', 'the bridge VLAN it carries (untagged inside VXLAN)', '1')
    .option('--learning', 'learn remote MACs from received frames and accept any sender VTEP (default: only remotes and static FDB entries)')
    .addOption(new Option('--hook <hook>', "decap on the uplink: xdp (highest packet rate) or tc (a veth underlay keeps GSO: XDP on a veth turns it off on the far end)").choices(['xdp', 'tc']))
    .option('--json', 'machine-readable output'), '--port <n>', '--udp-port')
    .addHelpText('after', `
Examples:
  xdpnet vxlan add --bridge br0 --vni 100 --local 192.168.1.10 --dev eth0 --learning
  xdpnet vxlan add --bridge br0 --vni 1 --local 10.0.0.1 --dev eth1 --udp-port 8472 Flannel's port
  xdpnet vxlan add --bridge br0 --vni 200 --vlan 20 --local 10.0.0.1 --dev eth1    VLAN 20 of br0
Then:
  xdpnet vxlan remote add --vni 100 192.168.1.11          flood copies (ARP, broadcast) go there
  xdpnet fdb add 02:42:0a:00:00:02 --bridge br0 --remote 192.168.1.11
The uplink gets net.ipv4.conf.<dev>.forwarding=1 (route lookups in the datapath need it);
containers on the bridge need an MTU 50 below the uplink's (printed).`)
    .action((o: AddOpts, cmd: Command) => {
      const opts = {
        bridge: o.bridge, vni: parseVni(o.vni), local: parseUnicastIp(o.local, '--local'), dev: o.dev, port: parseUdpPort(o.udpPort),
        vlan: parseVlan(o.vlan ?? '1'), learning: Boolean(o.learning), hook: o.hook,
      };
      const ctx = context(cmd);
      const r = addVtep(ctx.inst, { ...opts, netns: ctx.netns });
      // decapsulation redirects into the bridge's ports: ready the veths among them
      for (const p of listPorts(ctx.inst).filter((x) => x.bridge === r.vtep.bridge && x.iface && x.hook)) {
        r.notes.push(...prepareRedirectTarget(p.iface!, p.hook!).filter((n) => !n.startsWith('warning:')));
      }
      if (o.json) return console.log(json({ ...r.vtep, notes: r.notes }));
      console.log(`added VTEP VNI ${r.vtep.vni}: bridge ${r.vtep.bridge} VLAN ${r.vtep.vlan} over ${r.vtep.dev} (${r.vtep.local}, UDP ${r.vtep.port}, learning ${r.vtep.learning ? 'on' : 'off'})`);
      for (const n of r.notes) console.log(`note: ${n}`);
    });

  vxlan
    .command('del')
    .description('remove a VTEP (its remote MACs, and the uplink program with the last VTEP on it)')
    .requiredOption('--vni <n>', 'the VTEP')
    .option('--json', 'print the VTEP removed (as `vxlan show --json` listed it) as JSON: {"removed": {...}}')
    .addHelpText('after', `
Example:
  xdpnet vxlan del --vni 100`)
    .action((o: { vni: string; json?: boolean }, cmd: Command) => {
      const vni = parseVni(o.vni);
      const v = delVtep(context(cmd).inst, vni);
      if (o.json) return console.log(json({ removed: v }));
      console.log(`deleted VTEP VNI ${vni} (bridge ${v.bridge} VLAN ${v.vlan} over ${v.dev ?? `ifindex ${v.ifindex}`})`);
    });

  vxlan
    .command('show')
    .description('VTEPs: VNI, bridge and VLAN, local address, uplink, UDP port, learning, inner MTU, remote VTEPs')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Examples:
  xdpnet vxlan show
  xdpnet --netns hostA vxlan show --json`)
    .action((o: { json?: boolean }, cmd: Command) => {
      const rows = listVteps(context(cmd).inst);
      if (o.json) return console.log(json(rows));
      console.log(rows.length ? render(rows) : 'no VTEPs');
    });

  const remote = vxlan
    .command('remote')
    .description("a VNI's remote VTEPs: each gets a copy of every broadcast, multicast and unknown-unicast frame");

  remote
    .command('add')
    .description('add a remote VTEP to a VNI (head-end replication; accepted as a sender without learning)')
    .requiredOption('--vni <n>', 'the VTEP')
    .argument('<ip>', "the remote VTEP's IPv4 address")
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Example:
  xdpnet vxlan remote add --vni 100 192.168.1.11`)
    .action((ip: string, o: { vni: string; json?: boolean }, cmd: Command) => {
      const vni = parseVni(o.vni);
      const addr = parseUnicastIp(ip, 'remote VTEP');
      const r = addRemote(context(cmd).inst, vni, addr);
      if (o.json) return console.log(json({ ...r.vtep, notes: r.notes }));
      console.log(`added remote VTEP ${addr} to VNI ${vni} (remotes: ${r.vtep.remotes.join(', ')})`);
      for (const n of r.notes) console.log(`note: ${n}`);
    });

  remote
    .command('del')
    .description('remove a remote VTEP from a VNI')
    .requiredOption('--vni <n>', 'the VTEP')
    .argument('<ip>', "the remote VTEP's IPv4 address")
    .option('--json', 'print the VTEP as it is now (as `vxlan show --json` lists it) as JSON')
    .addHelpText('after', `
Example:
  xdpnet vxlan remote del --vni 100 192.168.1.11`)
    .action((ip: string, o: { vni: string; json?: boolean }, cmd: Command) => {
      const vni = parseVni(o.vni);
      const addr = parseUnicastIp(ip, 'remote VTEP');
      const v = delRemote(context(cmd).inst, vni, addr);
      if (o.json) return console.log(json(v));
      console.log(`deleted remote VTEP ${addr} from VNI ${vni} (remotes: ${v.remotes.join(', ') || 'none'})`);
    });
}
