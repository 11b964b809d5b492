// fdb add / del / show / flush / load / age
import { Command } from 'commander';
import { parseUnicastMac, parseVlan } from '../dataplane/addr.js';
import { addFdb, ageFdb, delFdb, flushFdb, listFdb, loadFdb, type FdbRow } from '../dataplane/fdb.js';
import { keepRemoteResolved, listVteps } from '../dataplane/vxlan.js';
import { parseUnicastIp } from '../dataplane/inet.js';
import { UsageError } from '../errors.js';
import { context } from './context.js';
import { json, table } from './format.js';

const render = (rows: FdbRow[]) => table(['MAC', 'VLAN', 'BRIDGE', 'PORT', 'TYPE', 'AGE'], rows.map((r) => [
  r.mac, r.vlan, r.bridge, `${r.remote ? `vtep ${r.remote} via ` : ''}${r.port ?? `ifindex ${r.ifindex} (gone)`}`, r.expired ? 'learned (expired)' : r.type, r.age === null ? '-' : `${r.age}s`,
]));

const vlanOpt = (v?: string) => (v === undefined ? undefined : parseVlan(v));
const entries = (n: number, kind = '') => `${n} ${kind}entr${n === 1 ? 'y' : 'ies'}`;

export function fdbCommands(program: Command): void {
  const fdb = program
    .command('fdb')
    .description("bridges' forwarding databases: which port each MAC is behind, per bridge and VLAN");

  fdb
    .command('add')
    .description('add a static entry (never ages, never moved by learning; replaces a learned one)')
    .argument('<mac>', 'MAC address, e.g. 02:42:ac:11:00:02')
    .requiredOption('--bridge <name>', 'bridge')
    .option('--port <iface>', 'the port the MAC is behind')
    .option('--remote <vtep-ip>', 'instead of --port: the remote VTEP the MAC is behind (bridge VLAN with a VTEP, see `xdpnet vxlan`)')
    .option('--vlan <vlan>', "VLAN (default: the port's PVID, else 1)")
    .option('--json', 'print the entry added (as `fdb show --json` lists it) and the notes as JSON')
    .addHelpText('after', `
Examples:
  xdpnet fdb add 02:42:ac:11:00:02 --bridge br0 --port veth1
  xdpnet fdb add 02:42:ac:11:00:03 --bridge br0 --port eth1 --vlan 20
  xdpnet fdb add 02:42:0a:00:00:02 --bridge br0 --remote 192.168.1.11     behind a remote VTEP`)
    .action((mac: string, o: { bridge: string; port?: string; remote?: string; vlan?: string; json?: boolean }, cmd: Command) => {
      if ((o.port === undefined) === (o.remote === undefined)) throw new UsageError('name where the MAC is: --port IFACE or --remote VTEP-IP (one of them)');
      const remote = o.remote === undefined ? undefined : parseUnicastIp(o.remote, '--remote');
      const e = { mac: parseUnicastMac(mac), bridge: o.bridge, port: o.port, remote, vlan: vlanOpt(o.vlan) };
      const ctx = context(cmd);
      const r = addFdb(ctx.inst, e, ctx.netns);
      const v = remote ? listVteps(ctx.inst).find((x) => x.bridge === r.bridge && x.vlan === r.vlan) : undefined;
      const warn = remote && v ? keepRemoteResolved(ctx.inst, v.vni, remote) : undefined;
      if (o.json) return console.log(json({ ...r, notes: warn ? [warn] : [] }));
      if (!remote) return console.log(`added ${r.mac} on bridge ${r.bridge} VLAN ${r.vlan} -> ${r.port} (static)`);
      console.log(`added ${r.mac} on bridge ${r.bridge} VLAN ${r.vlan} -> VTEP ${remote} (VNI ${v?.vni}, via ${r.port}; static)`);
      if (warn) console.log(`note: ${warn}`);
    });

  fdb
    .command('del')
    .description('remove a MAC from a bridge (in one VLAN, or in all)')
    .argument('<mac>', 'MAC address')
    .requiredOption('--bridge <name>', 'bridge')
    .option('--vlan <vlan>', 'only this VLAN (default: every VLAN)')
    .option('--json', 'print the entries removed as JSON: {"removed": [rows as `fdb show --json` lists them]}')
    .addHelpText('after', `
Examples:
  xdpnet fdb del 02:42:ac:11:00:02 --bridge br0`)
    .action((mac: string, o: { bridge: string; vlan?: string; json?: boolean }, cmd: Command) => {
      const m = parseUnicastMac(mac);
      const vlan = vlanOpt(o.vlan);
      const gone = delFdb(context(cmd).inst, m, o.bridge, vlan);
      console.log(o.json ? json({ removed: gone }) : `deleted ${entries(gone.length)}`);
    });

  fdb
    .command('show')
    .description('entries: MAC, VLAN, bridge, port, static/learned/local, age in seconds')
    .option('--bridge <name>', 'only this bridge')
    .option('--port <iface>', 'only MACs behind this port')
    .option('--all', "also learned entries older than the bridge's ageing (ignored by the datapath until aged out)")
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Examples:
  xdpnet fdb show
  xdpnet fdb show --bridge br0 --json`)
    .action((o: { bridge?: string; port?: string; all?: boolean; json?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const rows = listFdb(ctx.inst, o, ctx.netns);
      if (o.json) return console.log(json(rows));
      console.log(rows.length ? render(rows) : 'no entries');
    });

  fdb
    .command('flush')
    .description('remove entries (all but the bridges\' own local ones), by bridge, port and kind')
    .option('--bridge <name>', 'only this bridge')
    .option('--port <iface>', 'only entries leading to this port')
    .option('--learned', 'only learned entries (keep static ones)')
    .option('--json', 'print the entries removed as JSON: {"removed": [rows as `fdb show --json` lists them]}')
    .addHelpText('after', `
Examples:
  xdpnet fdb flush --bridge br0 --learned
  xdpnet fdb flush --port veth1`)
    .action((o: { bridge?: string; port?: string; learned?: boolean; json?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const gone = flushFdb(ctx.inst, o, ctx.netns);
      console.log(o.json ? json({ removed: gone }) : `flushed ${entries(gone.length)}`);
    });

  fdb
    .command('load')
    .description('add or replace many static entries from a JSON file, all or nothing (every row and the room are checked first)')
    .argument('<file>', 'JSON array of {"mac", "bridge", "port", "vlan"?} (or {"mac", "bridge", "remote", "vlan"?}); `fdb show --json` output loads as is')
    .option('--json', 'print the entries loaded, as `fdb show --json` lists them, and how many local rows were skipped: {"loaded": [...], "skipped": N}')
    .addHelpText('after', `
Example file:
  [{"mac": "02:42:ac:11:00:02", "bridge": "br0", "port": "veth1"},
   {"mac": "02:42:ac:11:00:03", "bridge": "br0", "port": "eth1", "vlan": 20}]`)
    .action((file: string, o: { json?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const t0 = process.hrtime.bigint();
      const r = loadFdb(ctx.inst, file, ctx.netns, { rows: o.json });
      if (o.json) return console.log(json({ loaded: r.rows, skipped: r.skipped }));
      console.log(`loaded ${entries(r.loaded)} in ${Math.round(Number(process.hrtime.bigint() - t0) / 1e6)} ms${r.skipped ? ` (skipped ${entries(r.skipped, 'local ')}: they come with their bridge)` : ''}`);
    });

  fdb
    .command('age')
    .description("one ageing pass: remove learned entries older than their bridge's ageing (`xdpnet daemon` runs it periodically)")
    .option('--json', 'print the entries removed and how many are left as JSON: {"removed": [...], "remaining": N}')
    .action((o: { json?: boolean }, cmd: Command) => {
      const r = ageFdb(context(cmd).inst);
      console.log(o.json ? json(r) : `aged out ${entries(r.removed.length, 'learned ')}, ${r.remaining} left`);
    });
}
