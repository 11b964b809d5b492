// bridge add / del / show
import { Command } from 'commander';
import { parseCidr, parseUnicastMac } from '../dataplane/addr.js';
import { addBridge, checkBridgeName, DEFAULT_AGEING_SEC, delBridge, listBridges, type BridgeInfo } from '../dataplane/bridge.js';
import { BR_CACHE, BRIDGE_FLOWS } from '../objects/memory.js';
import { FDB_SIZE } from '../objects/bridge.js';
import { integer } from './args.js';
import { context } from './context.js';
import { json, table, vlansText } from './format.js';

function render(b: BridgeInfo): string {
  const head = `${b.name}: id ${b.id}, mac ${b.mac}, address ${b.addresses.join(' ') || '-'}, ageing ${b.ageing}s, ` +
    `learned ${b.learned}/${b.maxLearned || 'unlimited'}`;
  if (!b.ports.length) return `${head}\n  no ports`;
  const rows = b.ports.map((p) => [
    p.iface ?? `ifindex ${p.ifindex} (gone)`, p.hook ?? '-', vlansText(p),
    p.host ? `host interface ${b.name}` : p.lock ? `locked to ${p.lock.mac} ${p.lock.ips.join(',')}` : '',
  ]);
  return `${head}\n${table(['PORT', 'HOOK', 'VLANS', ''], rows).replace(/^/gm, '  ')}`;
}

interface AddOpts { address?: string; mac?: string; ageing: string; maxLearned: string; flows?: string; fdbSize?: string; json?: boolean }

export function bridgeCommands(program: Command): void {
  const bridge = program
    .command('bridge')
    .description('L2 bridges: their ports are attached with `xdpnet attach IFACE --bridge NAME`');

  bridge
    .command('add')
    .description('create a bridge (no ports yet)')
    .argument('<name>', 'bridge name: up to 15 characters from A-Z a-z 0-9 _ . -')
    .option('--address <cidr>', 'give the host an interface named after the bridge, with this address (like docker0)')
    .option('--mac <mac>', 'the bridge MAC (default: random, locally administered)')
    .option('--ageing <secs>', 'learned MACs expire after this many seconds without traffic', String(DEFAULT_AGEING_SEC))
    .option('--max-learned <n>', 'stop learning new MACs at this many learned entries (0: no limit)', '0')
    .option('--flows <n>', `active MAC pairs to expect at once (default ${BRIDGE_FLOWS.default}): sizes the decision cache all bridges of this host or netns share, ${BR_CACHE.perFlow} entries of ${BR_CACHE.entryBytes} bytes a flow spread over the CPUs, from ${BR_CACHE.minPart} to ${BR_CACHE.maxPart} entries a CPU`)
    .option('--fdb-size <n>', `entries the FDB holds, shared by the namespace's bridges; only when the first bridge creates it (${FDB_SIZE.min}-${FDB_SIZE.max}, default ${FDB_SIZE.default})`)
    .option('--json', 'print the bridge created as JSON')
    .addHelpText('after', `
The decision cache is made with the first bridge (or port) and keeps its size;
\`xdpnet status\` shows its memory. --flows resizes it only while nothing is attached.

Examples:
  xdpnet bridge add br0                             a bridge for the containers' veth ports
  xdpnet bridge add br0 --address 172.17.0.1/16     with a host interface br0, the containers' gateway
  xdpnet bridge add br1 --ageing 60 --max-learned 4096
  xdpnet bridge add br0 --flows 100000              a cache for many containers talking at once`)
    .action((name: string, o: AddOpts, cmd: Command) => {
      const opts = {
        mac: o.mac === undefined ? undefined : parseUnicastMac(o.mac),
        address: o.address === undefined ? undefined : parseCidr(o.address),
        ageing: integer(o.ageing, '--ageing', 1, 1_000_000),
        maxLearned: integer(o.maxLearned, '--max-learned', 0, FDB_SIZE.max),
        flows: o.flows === undefined ? undefined : integer(o.flows, '--flows', BRIDGE_FLOWS.min, BRIDGE_FLOWS.max),
        fdbSize: o.fdbSize === undefined ? undefined : integer(o.fdbSize, '--fdb-size', FDB_SIZE.min, FDB_SIZE.max),
      };
      checkBridgeName(name);
      const ctx = context(cmd);
      const b = addBridge(ctx.inst, name, { ...opts, netns: ctx.netns });
      if (o.json) return console.log(json(b));
      console.log(`added bridge ${b.name} (id ${b.id}, mac ${b.mac}${b.hostIface ? `, host interface ${b.hostIface} ${b.addresses.join(' ')}` : ''})`);
    });

  bridge
    .command('del')
    .description('delete a bridge with its FDB and host interface')
    .argument('<name>', 'bridge name')
    .option('--force', 'detach its ports first (otherwise a bridge with ports is refused)')
    .option('--json', 'print the bridge removed (as `bridge show --json` listed it) and the ports detached: {"removed": {...}, "detached": [...]}')
    .addHelpText('after', `
Examples:
  xdpnet bridge del br0
  xdpnet bridge del br0 --force    also detaches every port`)
    .action((name: string, o: { force?: boolean; json?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const before = o.json ? listBridges(ctx.inst).find((b) => b.name === name) : undefined; // under the lock: what goes
      const r = delBridge(ctx.inst, name, { force: o.force });
      if (o.json) return console.log(json({ removed: before, detached: r.ports }));
      console.log(`deleted bridge ${name}${r.ports.length ? ` (detached ${r.ports.join(', ')})` : ''}`);
    });

  bridge
    .command('show')
    .description('bridges with their MAC, address, ageing, learned entries and ports (hook, VLANs)')
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }, cmd: Command) => {
      const all = listBridges(context(cmd).inst);
      if (o.json) return console.log(json(all));
      console.log(all.length ? all.map(render).join('\n\n') : 'no bridges');
    });
}
