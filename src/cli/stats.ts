// stats [--json] [--watch [SECS]]
import { Command } from 'commander';
import { readStats, type Stats } from '../dataplane/stats.js';
import { UsageError } from '../errors.js';
import { context } from './context.js';
import { json, si, table } from './format.js';

function render(s: Stats): string {
  const rows = s.interfaces.map((i) => [i.iface ?? `ifindex ${i.ifindex}`, i.rxPackets, i.rxBytes]);
  const drops = Object.entries(s.drops);
  return [
    rows.length ? table(['IFACE', 'RX-PACKETS', 'RX-BYTES'], rows) : 'nothing attached',
    `drops: ${drops.length ? drops.map(([r, n]) => `${r}=${n}`).join(' ') : 'none'}`,
  ].join('\n');
}

function renderRates(prev: Stats, cur: Stats): string {
  const dt = (cur.at - prev.at) / 1000;
  const rows = cur.interfaces.map((i) => {
    const p = prev.interfaces.find((x) => x.ifindex === i.ifindex);
    const dp = i.rxPackets - (p?.rxPackets ?? i.rxPackets);
    const db = i.rxBytes - (p?.rxBytes ?? i.rxBytes);
    return [i.iface ?? `ifindex ${i.ifindex}`, si(dp / dt, 'pps'), si((db * 8) / dt, 'bit/s'), i.rxPackets, i.rxBytes];
  });
  return table(['IFACE', 'RX-RATE', 'RX-BITRATE', 'RX-PACKETS', 'RX-BYTES'], rows);
}

function positive(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${what} must be a positive number, got ${v}`);
  return n;
}

export function statsCommand(program: Command): void {
  program
    .command('stats')
    .description('per-interface packet and byte counters (summed over CPUs) and drops by reason')
    .option('--json', 'machine-readable output (with --watch: one JSON object per line)')
    .option('--watch [secs]', 'refresh every SECS seconds (default 1) and show rates')
    .option('--count <n>', 'with --watch: stop after N refreshes')
    .addHelpText('after', `
Examples:
  xdpnet stats
  xdpnet stats --watch            rates, refreshed every second (Ctrl-C to stop)
  xdpnet stats --watch 5 --json   a JSON line every 5 s, for scripts`)
    .action(async (o: { json?: boolean; watch?: string | true; count?: string }, cmd: Command) => {
      const interval = o.watch === undefined ? 0 : o.watch === true ? 1 : positive(o.watch, '--watch');
      const count = o.count === undefined ? Infinity : positive(o.count, '--count');
      const ctx = context(cmd);
      let prev = readStats(ctx.inst);
      if (!interval) return console.log(o.json ? json(prev) : render(prev));
      const tty = process.stdout.isTTY && !o.json;
      for (let i = 0; i < count; i++) {
        await new Promise((r) => setTimeout(r, interval * 1000));
        const cur = readStats(ctx.inst);
        if (o.json) console.log(JSON.stringify(cur));
        else process.stdout.write(`${tty ? '\x1b[H\x1b[2J' : ''}${renderRates(prev, cur)}\n`);
        prev = cur;
      }
    });
}
