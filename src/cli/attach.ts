// attach / detach / status
import { Command, Option } from 'commander';
import { attach, detach, detachAll, listAttachments, type Attachment, type Hook, type XdpMode } from '../dataplane/attach.js';
import { UsageError } from '../errors.js';
import { context } from './context.js';
import { ago, json, table } from './format.js';

function describe(a: Attachment): string {
  return `${a.hook}${a.mode ? ` ${a.mode}` : ''}, program ${a.progId}`;
}

function toJson(a: Attachment) {
  return { iface: a.iface, ifindex: a.ifindex, hook: a.hook, mode: a.mode, progId: a.progId, linkId: a.linkId,
    since: a.since.toISOString(), defunct: a.iface === null };
}

export function attachCommands(program: Command): void {
  program
    .command('attach')
    .description('attach the xdpnet dataplane to an interface (stays attached after xdpnet exits)')
    .argument('<iface>', 'interface name, e.g. eth0 or veth1')
    .addOption(new Option('--hook <hook>', 'where to run: xdp (highest packet rate) or tc (keeps GSO/TSO)').choices(['xdp', 'tc']).default('xdp'))
    .addOption(new Option('--mode <mode>', 'XDP mode: native (in the driver) or generic (any device, slower); default native').choices(['native', 'generic']))
    .addHelpText('after', `
Examples:
  xdpnet attach eth0                   XDP in native mode
  xdpnet attach eth0 --mode generic    XDP for drivers without native support
  xdpnet attach veth1 --hook tc        tc ingress (tcx), for container ports
  xdpnet --netns blue attach eth0      inside network namespace "blue"`)
    .action((iface: string, o: { hook: Hook; mode?: XdpMode }, cmd: Command) => {
      if (o.hook === 'tc' && o.mode) throw new UsageError('--mode applies to --hook xdp only');
      const ctx = context(cmd);
      const a = attach(ctx.inst, iface, { hook: o.hook, mode: o.mode, netns: ctx.netns });
      console.log(`attached ${iface} (${describe(a)})`);
    });

  program
    .command('detach')
    .description('detach xdpnet from an interface and remove its pins')
    .argument('[iface]', 'interface name')
    .option('--all', 'detach every interface of this host (or of --netns)')
    .action((iface: string | undefined, o: { all?: boolean }, cmd: Command) => {
      if (!iface === !o.all) throw new UsageError('name one interface or use --all', 'e.g. xdpnet detach eth0');
      const ctx = context(cmd);
      if (o.all) {
        const gone = detachAll(ctx.inst);
        console.log(gone.length ? gone.map((a) => `detached ${a.iface ?? `ifindex ${a.ifindex} (gone)`}`).join('\n') : 'nothing attached');
        return;
      }
      const a = detach(ctx.inst, iface!, ctx.netns);
      console.log(`detached ${iface} (${describe(a)})`);
    });

  program
    .command('status')
    .description('list attached interfaces: hook, mode, program id, since when')
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const all = listAttachments(ctx.inst);
      if (o.json) return console.log(json(all.map(toJson)));
      if (!all.length) return console.log('nothing attached');
      console.log(table(['IFACE', 'HOOK', 'MODE', 'PROG', 'SINCE'], all.map((a) => [
        a.iface ?? `ifindex ${a.ifindex} (gone)`, a.hook, a.mode ?? '-', a.progId,
        `${a.since.toISOString().replace('T', ' ').slice(0, 19)} (${ago(a.since)})`,
      ])));
    });
}
