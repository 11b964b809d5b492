// conntrack list|flush|gc|timeouts: the NAT flows the datapath tracks.
import { Command } from 'commander';
import { eachFlow, flushFlows, gcFlows, TIMEOUT_NAMES, timeouts } from '../dataplane/conntrack.js';
import { parsePrefix } from '../dataplane/inet.js';
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
      // Streamed in 1 MB pieces: a million flows never sit in memory as one string.
      let buf = '';
      const emit = (line: string) => {
        buf += line + '\n';
        if (buf.length > 1 << 20) flush();
      };
      const flush = () => {
        process.stdout.write(buf);
        buf = '';
      };
      let n = 0;
      // Fixed widths (an address column fits any IPv4 tuple), so no second pass over the rows.
      const row = (c: string[]) => [c[0].padEnd(5), c[1].padEnd(21), c[2].padEnd(45), c[3].padEnd(45), c[4].padEnd(7), c[5]].join('  ');
      eachFlow(ctx.inst, o, (r) => {
        if (o.json) return emit(`${n++ ? ',' : '['}${JSON.stringify(r)}`);
        if (!n++) emit(row(['PROTO', 'STATE', 'ORIGINAL', 'TRANSLATED', 'IDLE', 'TIMEOUT']));
        emit(row([r.proto, r.state + (r.expired ? ' (expired)' : ''), `${r.src}:${r.sport} > ${r.dst}:${r.dport}`,
          `${r.toSrc}:${r.toSport} > ${r.toDst}:${r.toDport}`, `${r.idleSec}s`, `${r.timeoutSec}s`]));
      });
      if (o.json) emit(n ? ']' : '[]');
      else if (!n) emit('no tracked flows');
      flush();
    });

  ct.command('flush')
    .description('forget every tracked flow (their next packets are new flows, under the rules as they are)')
    .option('--json', 'print how many flows were removed as JSON: {"removed": N}')
    .action((o: { json?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const n = flushFlows(ctx.inst);
      console.log(o.json ? json({ removed: n }) : `flushed ${n} flows`);
    });

  ct.command('gc')
    .description('one garbage-collection pass: remove expired flows, both entries of each (`xdpnet daemon` runs it periodically)')
    .option('--json', 'print how many flows were removed and are still tracked as JSON: {"removed": N, "remaining": N}')
    .action((o: { json?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const r = gcFlows(ctx.inst);
      console.log(o.json ? json(r) : `${r.removed} expired flows removed, ${r.remaining} tracked`);
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
