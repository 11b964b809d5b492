// stats [--json] [--watch [SECS]]
import { Command } from 'commander';
import { ctCounters, type CtCounters } from '../dataplane/conntrack.js';
import { readStats, type IfaceStats, type Stats } from '../dataplane/stats.js';
import { UsageError } from '../errors.js';
import { positive } from './args.js';
import { context, eachInstance } from './context.js';
import { json, si, table } from './format.js';

/** JSON times are ISO 8601 strings everywhere (status' since, monitor's time): `at` too. */
const jsonStats = (s: Stats) => ({ ...s, at: new Date(s.at).toISOString() });

const name = (i: IfaceStats) => i.iface ?? `ifindex ${i.ifindex}`;

/** NAT alone on an interface counts its drops only: the other columns say '-', not 0. */
const counted = (i: IfaceStats, v: number | string): number | string => (i.natOnly ? '-' : v);
const natNote = (s: Stats) => (s.interfaces.some((i) => i.natOnly) ? ['-: not counted (NAT alone runs there: it counts drops)'] : []);

function render(s: Stats): string {
  const rows = s.interfaces.map((i) => [name(i), ...[i.rxPackets, i.rxBytes, i.txPackets, i.txBytes, i.flooded, i.learned, i.learnRefused, i.arpReplied].map((v) => counted(i, v)), i.dropped]);
  const drops = s.interfaces.filter((i) => Object.keys(i.drops).length)
    .map((i) => `${name(i)}: ${Object.entries(i.drops).map(([r, n]) => `${r}=${n}`).join(' ')}`);
  return [
    rows.length ? table(['IFACE', 'RX-PACKETS', 'RX-BYTES', 'TX-PACKETS', 'TX-BYTES', 'FLOODED', 'LEARNED', 'LEARN-REFUSED', 'ARP-REPLIED', 'DROPPED'], rows) : 'nothing attached',
    ...natNote(s),
    `drops: ${drops.length ? drops.join('; ') : 'none'}`,
    `caches: ${cachesText(s.caches)}`,
  ].join('\n');
}

/** Hit ratio of each cache that was looked up: `bridge 98.2% hits (982 of 1000)`. */
function cachesText(c: Stats['caches']): string {
  const used = Object.entries(c).filter(([, n]) => n.hits + n.misses);
  return used.length
    ? used.map(([k, n]) => `${k} ${((100 * n.hits) / (n.hits + n.misses)).toFixed(1)}% hits (${n.hits} of ${n.hits + n.misses})`).join(', ')
    : 'no lookups';
}

function renderRates(prev: Stats, cur: Stats): string {
  const dt = (cur.at - prev.at) / 1000;
  const rows = cur.interfaces.map((i) => {
    const p = prev.interfaces.find((x) => x.ifindex === i.ifindex) ?? i;
    const rate = (f: 'rxPackets' | 'txPackets' | 'dropped') => si((i[f] - p[f]) / dt, 'pps');
    const bits = (f: 'rxBytes' | 'txBytes') => si(((i[f] - p[f]) * 8) / dt, 'bit/s');
    return [name(i), ...[rate('rxPackets'), bits('rxBytes'), rate('txPackets'), bits('txBytes')].map((v) => counted(i, v)), rate('dropped'), counted(i, i.rxPackets), counted(i, i.txPackets)];
  });
  return [table(['IFACE', 'RX-RATE', 'RX-BITRATE', 'TX-RATE', 'TX-BITRATE', 'DROP-RATE', 'RX-PACKETS', 'TX-PACKETS'], rows), ...natNote(cur)].join('\n');
}

function ctText(c: CtCounters): string {
  return `conntrack: ${c.entries} of ${c.max} entries (${((100 * c.entries) / c.max).toFixed(1)}%); created=${c.created} ` +
    `insert_failed=${c.insertFailed} port_exhausted=${c.portExhausted} port_retries=${c.portRetries} expired=${c.expired} restored=${c.restored}`;
}

export function statsCommand(program: Command): void {
  program
    .command('stats')
    .description('per-interface counters (summed over CPUs): rx, tx, flooded, learned, learning refused (--max-learned reached or FDB full), ARP requests answered by the bridge, dropped (an interface NAT alone runs on: its drops only); drops by reason; hit ratios of the datapath\'s caches (bridge decisions, VXLAN next hops, NAT\'s hot copy)')
    .option('--json', 'machine-readable output (with --watch: one JSON object per line)')
    .option('--watch [secs]', 'refresh every SECS seconds (default 1) and show rates')
    .option('--count <n>', 'with --watch: stop after N refreshes')
    .option('-A, --all-namespaces', 'every instance on this host (the host and each network namespace), once')
    .addHelpText('after', `
Examples:
  xdpnet stats
  xdpnet stats --watch            rates, refreshed every second (Ctrl-C to stop)
  xdpnet stats --watch 5 --json   a JSON line every 5 s, for scripts
  xdpnet stats --all-namespaces   the host and every namespace, one section each`)
    .action(async (o: { json?: boolean; watch?: string | true; count?: string; allNamespaces?: boolean }, cmd: Command) => {
      if (o.count !== undefined && o.watch === undefined) throw new UsageError('--count needs --watch', 'e.g. xdpnet stats --watch 1 --count 5');
      const interval = o.watch === undefined ? 0 : o.watch === true ? 1 : positive(o.watch, '--watch');
      const count = o.count === undefined ? Infinity : positive(o.count, '--count');
      if (o.allNamespaces && interval) throw new UsageError('--all-namespaces shows counters once: drop --watch, or watch one namespace with --netns');
      const ctx = context(cmd);
      if (o.allNamespaces) {
        if (ctx.netns) throw new UsageError('--all-namespaces and --netns exclude each other');
        const all = eachInstance((inst) => ({ stats: readStats(inst), ct: ctCounters(inst) }));
        if (o.json) return console.log(json(all.map((x) => ({ netns: x.netns, ...jsonStats(x.stats), ...(x.ct ? { conntrack: x.ct } : {}) }))));
        return console.log(all.length ? all.map((x) => `${x.netns}:\n${(render(x.stats) + (x.ct ? `\n${ctText(x.ct)}` : '')).replace(/^/gm, '  ')}`).join('\n') : 'no instances');
      }
      let prev = readStats(ctx.inst);
      const ct = ctCounters(ctx.inst); // NAT conntrack, when the instance has NAT
      if (!interval) return console.log(o.json ? json(ct ? { ...jsonStats(prev), conntrack: ct } : jsonStats(prev)) : render(prev) + (ct ? `\n${ctText(ct)}` : ''));
      const tty = process.stdout.isTTY && !o.json;
      for (let i = 0; i < count; i++) {
        await new Promise((r) => setTimeout(r, interval * 1000));
        const cur = readStats(ctx.inst);
        if (o.json) console.log(JSON.stringify(jsonStats(cur)));
        else process.stdout.write(`${tty ? '\x1b[H\x1b[2J' : ''}${renderRates(prev, cur)}\n`);
        prev = cur;
      }
    });
}
