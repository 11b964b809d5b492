// `make fuzz`: the six fuzzed programs as six vitest processes at once (each
// program's run is one long single-threaded loop, so this is how a run uses
// more than one core), then bench/results/fuzz.md from their rows.
// Usage: node test/fuzz/parallel.mjs FRAMES REPORT [PROGRAM,...] (default: all
// six, named as in the report: 'bridge tc,nat xdp'). SIGINT/SIGTERM stop the
// runs gracefully (each ends after its current batch, reports how far it got
// and cleans up) and the report is still written; a program that gives no
// row gets the one of its last progress line (every 10^6 frames).
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

const [frames, report, only] = process.argv.slice(2);
if (!/^\d+$/.test(frames ?? '') || !report) {
  console.error('usage: node test/fuzz/parallel.mjs FRAMES REPORT.md [PROGRAM,...]');
  process.exit(2);
}
const ALL = [
  ['bridge', 'XDP \\(', 'bridge xdp'], ['bridge', 'tc \\(', 'bridge tc'],
  ['vxlan', 'XDP \\(', 'vxlan uplink xdp'], ['vxlan', 'tc \\(', 'vxlan uplink tc'],
  ['nat', 'XDP \\(', 'nat xdp'], ['nat', 'tc \\(', 'nat tc'],
];
const LANES = only ? ALL.filter(([, , name]) => only.split(',').includes(name)) : ALL;
if (!LANES.length) {
  console.error(`no such program: ${only} (programs: ${ALL.map(([, , n]) => n).join(', ')})`);
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), 'xdpnet-fuzz-'));
const rows = join(dir, 'rows.md');
const progressFile = join(dir, 'progress.jsonl');
const stopFile = join(dir, 'stop');
const load0 = loadavg();
const t0 = Date.now();
const date = new Date().toISOString().slice(0, 16).replace('T', ' ');
console.log(`fuzz: ${LANES.length} programs in parallel, ${frames} frames each; logs in ${dir}`);

const children = LANES.map(([file, test, name], i) => {
  const log = join(dir, `${i}.log`);
  writeFileSync(log, '');
  const c = spawn('npx', ['vitest', 'run', '--config', 'test/vitest.config.ts', '--testTimeout=0', `test/fuzz/${file}.test.ts`, '-t', test], {
    env: { ...process.env, XDPNET_FUZZ_FRAMES: frames, XDPNET_FUZZ_REPORT: rows, XDPNET_FUZZ_PROGRESS: progressFile, XDPNET_FUZZ_STOP: stopFile },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // out of the terminal's process group: Ctrl-C reaches this script, which stops the runs cleanly
  });
  c.stdout.on('data', (d) => appendFileSync(log, d));
  c.stderr.on('data', (d) => appendFileSync(log, d));
  return { name, log, child: c, done: new Promise((resolve) => c.on('close', (code) => resolve(code ?? 1))) };
});

let stopped = false;
const stop = () => {
  if (stopped) return;
  stopped = true;
  console.log('fuzz: stopping the runs after their current batch (a report of how far they got follows)');
  writeFileSync(stopFile, '');
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

const codes = await Promise.all(children.map((c) => c.done));
const minutes = ((Date.now() - t0) / 60000).toFixed(1);
const load1 = loadavg();

// Finished programs have a row; the others their last progress line.
const done = existsSync(rows) ? readFileSync(rows, 'utf8') : '';
const last = new Map();
if (existsSync(progressFile)) for (const l of readFileSync(progressFile, 'utf8').split('\n').filter(Boolean)) {
  const p = JSON.parse(l);
  last.set(p.program, p);
}
let table = done;
for (const { name } of children) {
  if (done.includes(`| ${name} |`) || done.includes(`| ${name} (stopped) |`)) continue;
  const p = last.get(name);
  table += p
    ? `| ${name} (stopped) | ${p.frames} | ${p.mismatches} | ${p.refused} | ${p.seed} | ${p.seconds} s | ${Math.round((p.frames + p.refused) / p.seconds)} | |\n`
    : `| ${name} (stopped) | < 1000000 | | | | | | |\n`;
}
const order = (l) => children.findIndex(({ name }) => l.startsWith(`| ${name} |`) || l.startsWith(`| ${name} (`));
table = table.split('\n').filter(Boolean).sort((a, b) => order(a) - order(b)).join('\n');
writeFileSync(report, `# Fuzz run

${date} UTC, kernel ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}, ${Number(frames).toLocaleString('en')} frames a program,
the ${children.length} programs in parallel on ${(await import('node:os')).cpus().length} cores (\`make fuzz\`, test/fuzz/parallel.mjs).
${minutes} minutes in all; load average ${load0.map((x) => x.toFixed(1)).join(' ')} at the start, ${load1.map((x) => x.toFixed(1)).join(' ')} at the end
(the machine is shared: other test runs were going on).${stopped ? '\n**Stopped before the end**: rows marked (stopped) give the frames run and checked so far.' : ''}

| program | frames | mismatches | refused by the kernel | seed | time | frames/s | frames per CPU second |
|---|---|---|---|---|---|---|---|
${table}

"frames" ran and were checked; the kernel refused the rest (see docs/reliability.md). A seed repeats its
program's run frame for frame: \`XDPNET_FUZZ_SEED=N XDPNET_FUZZ_FRAMES=M npx vitest run --config test/vitest.config.ts test/fuzz/FILE.test.ts -t NAME\`.
`);
for (const { name, log } of children) {
  const text = readFileSync(log, 'utf8');
  const line = text.split('\n').find((l) => l.includes(`fuzz ${name}:`) || l.includes(`fuzz ${name} (stopped):`));
  const p = last.get(name);
  if (line) console.log(line.replace(/\x1b\[[0-9;]*m/g, '').trim());
  else if (stopped) console.log(`fuzz ${name}: stopped${p ? ` after ${p.frames} frames, ${p.mismatches} mismatches` : ''}`);
  else console.log(`fuzz ${name}: no result; its log:\n${text.slice(-3000)}`);
}
console.log(`fuzz: report in ${report}`);
const failed = codes.some((c) => c !== 0);
if (!failed) rmSync(dir, { recursive: true, force: true });
process.exit(failed || stopped ? 1 : 0);
