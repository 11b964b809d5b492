// conntrack list|flush|gc|timeouts: the NAT flows the datapath tracks.
import { Command } from 'commander';
import { flushFlows, gcFlows, listFlows, parsePrefix, TIMEOUT_NAMES, timeouts } from '../dataplane/nat.js';
import { UsageError } from '../errors.js';
import type { NatConfigT } from '../objects/nat.js';
import { context } from './context.js';
import { json, table } from './format.js';

export function conntrackCommands(program: Command): void {
  const ct = program
    .command('conntrack')
    .description('connection tracking of NAT flows: list, flush, garbage-collect, timeouts');

  ct.command('list')
    .description('tracked flows: original tuple, translated tuple, state, idle time and timeout')
    .option('--src <cidr>', 'only flows whose original source is in this prefix')
    .option('--dst <cidr>', 'only flows whose original destination is in this prefix')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Examples:
  xdpnet conntrack list
  xdpnet conntrack list --src 172.17.0.0/16 --json
  xdpnet conntrack list --dst 10.0.0.5`)
    .action((o: { src?: string; dst?: string; json?: boolean }, cmd: Command) => {
      if (o.src) parsePrefix(o.src, '--src');
      if (o.dst) parsePrefix(o.dst, '--dst');
      const ctx = context(cmd);
      const rows = listFlows(ctx.inst, o);
      if (o.json) return console.log(json(rows));
      if (!rows.length) return console.log('no tracked flows');
      console.log(table(['PROTO', 'STATE', 'ORIGINAL', 'TRANSLATED', 'IDLE', 'TIMEOUT'], rows.map((r) => [
        r.proto, r.state + (r.expired ? ' (expired)' : ''), `${r.src}:${r.sport} > ${r.dst}:${r.dport}`,
        `${r.toSrc}:${r.toSport} > ${r.toDst}:${r.toDport}`, `${r.idleSec}s`, `${r.timeoutSec}s`,
      ])));
    });

  ct.command('flush')
    .description('forget every tracked flow (their next packets are new flows, under the rules as they are)')
    .action((_o: unknown, cmd: Command) => {
      const ctx = context(cmd);
      console.log(`flushed ${flushFlows(ctx.inst)} flows`);
    });

  ct.command('gc')
    .description('one garbage-collection pass: remove expired flows, both entries of each (`xdpnet daemon` runs it periodically)')
    .action((_o: unknown, cmd: Command) => {
      const ctx = context(cmd);
      const r = gcFlows(ctx.inst);
      console.log(`${r.removed} expired flows removed, ${r.remaining} tracked`);
    });

  ct.command('timeouts')
    .description('show or set idle timeouts in seconds by state (0 restores the default, nf_conntrack\'s)')
    .argument('[name=secs...]', `any of: ${TIMEOUT_NAMES.join(', ')}`)
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Examples:
  xdpnet conntrack timeouts
  xdpnet conntrack timeouts udp=60 tcp_established=86400`)
    .action((args: string[], o: { json?: boolean }, cmd: Command) => {
      const set: Partial<NatConfigT> = {};
      for (const a of args) {
        const m = /^([a-z_]+)=(\d+)$/.exec(a);
        if (!m) throw new UsageError(`expected NAME=SECONDS, got '${a}'`, `e.g. udp=60; names: ${TIMEOUT_NAMES.join(', ')}`);
        if (!TIMEOUT_NAMES.includes(m[1] as keyof NatConfigT)) throw new UsageError(`unknown timeout '${m[1]}'`, `one of: ${TIMEOUT_NAMES.join(', ')}`);
        set[m[1] as keyof NatConfigT] = Number(m[2]);
      }
      const ctx = context(cmd);
      const t = timeouts(ctx.inst, set);
      console.log(o.json ? json(t) : table(['STATE', 'TIMEOUT'], Object.entries(t).map(([k, v]) => [k, `${v}s`])));
    });
}
