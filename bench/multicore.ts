// Per-core scaling of the packet-rate rows (issue #17): each row runs in three
// layouts (bench/main.ts --layout) taking turns, row by row and rep by rep, so
// the machine's drift falls on all three alike:
//   one     the generator and the whole path on one CPU (what `make bench` measures);
//   split   the generator alone on that CPU, the forwarder and the sink in NAPI
//           threads on another: the path's own rate without the generator's cost;
//   spread  a generator per CPU, veths with a queue per CPU: the path on every CPU at once.
// spread / one is how the row scales with cores; on a path with no shared writes
// it is the CPU count. Not part of `make bench`:
//   node dist/bench/multicore.js [--rows a,b] [--reps 3] [--duration 3] [--md FILE]
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));
const DEFAULT_ROWS = ['redirect-ceiling', 'linux-bridge', 'xdpnet-bridge', 'xdpnet-bridge-macs', 'xdpnet-vxlan-encap',
  'xdpnet-vxlan-decap', 'iptables-masq-10k', 'xdpnet-masq-10k', 'xdpnet-masq-xdp-10k'];
const LAYOUTS = ['one', 'split', 'spread'] as const;

const { values: a } = parseArgs({
  options: {
    rows: { type: 'string', default: DEFAULT_ROWS.join(',') }, reps: { type: 'string', default: '3' },
    duration: { type: 'string', default: '3' }, md: { type: 'string' },
  },
});
const rows = a.rows!.split(',');
const reps = Number(a.reps);
if (!(reps > 0)) throw new Error(`--reps needs a positive number, got ${a.reps}`);
if (availableParallelism() < 2) throw new Error('multicore needs at least 2 CPUs');

/** One row in one layout, one run: its delivered Mpps (bench/main.ts's own line). */
function run(row: string, layout: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, '--only', row, '--reps', '1', '--duration', a.duration!, '--layout', layout],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('exit', (code) => {
      const m = new RegExp(`^\\s+${row} run 1/1: ([\\d.]+) Mpps delivered`, 'm').exec(err);
      if (code === 0 && m) resolve(Number(m[1]));
      else reject(new Error(`${row} --layout ${layout}: bench exited ${code}\n${err.trim()}`));
    });
  });
}

const median = (xs: number[]) => { const y = [...xs].sort((p, q) => p - q); const h = y.length >> 1; return y.length % 2 ? y[h] : (y[h - 1] + y[h]) / 2; };
const runs = new Map<string, number[]>(); // `${row}/${layout}` → Mpps per rep
for (let rep = 0; rep < reps; rep++) {
  for (const [i, row] of rows.entries()) {
    const order = (rep + i) % 2 ? [...LAYOUTS].reverse() : LAYOUTS;
    for (const layout of order) {
      const mpps = await run(row, layout);
      process.stderr.write(`rep ${rep + 1}/${reps} ${row} ${layout}: ${mpps.toFixed(3)} Mpps\n`);
      runs.set(`${row}/${layout}`, [...(runs.get(`${row}/${layout}`) ?? []), mpps]);
    }
  }
}

const cpu = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
const m = (row: string, l: string) => median(runs.get(`${row}/${l}`)!);
const out = [`Measured ${new Date().toISOString().slice(0, 16)}Z on ${cpu} (${availableParallelism()} vCPUs), kernel ${release()}; ` +
  `128-byte frames, median of ${reps} runs a layout, layouts taking turns (bench/multicore.ts).`, '',
  '| row | one CPU, Mpps | split: generator / path, Mpps | spread: every CPU, Mpps | split / one | spread / one |',
  '|---|---:|---:|---:|---:|---:|'];
for (const row of rows) {
  const [one, split, spread] = LAYOUTS.map((l) => m(row, l));
  out.push(`| ${row} | ${one.toFixed(3)} | ${split.toFixed(3)} | ${spread.toFixed(3)} | ${(split / one).toFixed(2)} | ${(spread / one).toFixed(2)} |`);
}
const md = `${out.join('\n')}\n\nRuns (Mpps): ${JSON.stringify(Object.fromEntries(runs))}\n`;
process.stdout.write(md);
if (a.md) writeFileSync(a.md, md);
