// Program time per frame of packet-rate rows, for comparing code: two (or
// more) built trees take turns (A B, B A, ...) running the same row through
// their own bench (`node TREE/dist/bench/main.js --only ROW --reps 1`), while
// this process samples run_time_ns / run_cnt of every program attached in the
// bench's forwarding and sink namespaces. The kernel keeps those figures only
// while stats are on: held on here with BPF_ENABLE_STATS for this process's
// life (~20 ns a run on every program meanwhile). Program time leaves out what
// the rest of the machine does, so it is steadier than packet rates on a busy
// host; rates and ratios to the same run's ceiling are reported beside it.
// A tree may name a directory of other objects to load (DIR@OBJDIR, as
// XDPNET_BPF_DIR): an experiment build of the same sources. The sink's own
// time is printed beside the forwarder's: both run in the same softirq on the
// same CPU, so fwd - sink moves less with the machine's load than fwd alone.
// Not part of `make bench`:
//   node dist/bench/progtime.js --from FILE   (the summary again from a --json file)
//   node dist/bench/progtime.js --rows redirect-ceiling,xdpnet-bridge [--trees DIR[@OBJDIR],DIR] [--pairs 3] [--duration 3] [--json FILE]
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { enableRunTimeStats, progRunStats } from '../src/sys/libbpf.js';

const HERE = fileURLToPath(new URL('../../', import.meta.url));
const { values: a } = parseArgs({
  options: {
    rows: { type: 'string' }, trees: { type: 'string', default: HERE }, pairs: { type: 'string', default: '3' },
    duration: { type: 'string', default: '3' }, json: { type: 'string' }, cpu: { type: 'string' },
    'bench-args': { type: 'string', default: '' }, from: { type: 'string' },
  },
});
const saved = a.from ? JSON.parse(readFileSync(a.from, 'utf8')) as { trees: string[]; rows: string[]; runs: RowRun[] } : undefined;
if (saved) { a.rows = saved.rows.join(','); a.trees = saved.trees.join(','); a.pairs = '0'; }
if (!a.rows) throw new Error('--rows ROW,ROW is required (bench row names, e.g. redirect-ceiling,xdpnet-bridge)');
const rows = a.rows.split(',');
const trees = a.trees!.split(',').map((t) => t.replace(/\/$/, ''));
const dirOf = (tree: string) => tree.split('@')[0];
for (const t of saved ? [] : trees) {
  if (!existsSync(`${dirOf(t)}/dist/bench/main.js`)) throw new Error(`${t}: no dist/bench/main.js (run make all there)`);
  const objs = t.split('@')[1];
  if (objs && !existsSync(`${objs}/bridge.bpf.o`)) throw new Error(`${t}: no bridge.bpf.o in ${objs}`);
}

interface Sample { t: number; ns: bigint; cnt: bigint }
interface Prog { id: number; name: string; where: string; first: Sample; last: Sample }
/** One row of one bench run: its rate and the programs that ran in it. */
interface RowRun { tree: string; pair: number; row: string; mpps: number; progs: Array<{ name: string; where: string; frames: number; nsPerRun: number }> }

/** Programs attached (XDP, tc) in a namespace: id and where. */
function attached(ns: string): Array<{ id: number; where: string }> {
  let out: string;
  try {
    out = execFileSync('nsenter', [`--net=/var/run/netns/${ns}`, 'bpftool', '-j', 'net', 'show'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return []; // the namespace went away between rows
  }
  const res: Array<{ id: number; where: string }> = [];
  for (const o of JSON.parse(out) as Array<Record<string, Array<Record<string, unknown>>>>) {
    for (const x of o.xdp ?? []) {
      for (const m of (x.multi_attachments as Array<{ id: number }> | undefined) ?? [x as { id: number }]) if (m.id) res.push({ id: m.id, where: `${ns.split('-').pop()}:${x.devname}/xdp` });
    }
    for (const x of o.tc ?? []) if (x.id) res.push({ id: x.id as number, where: `${ns.split('-').pop()}:${x.devname}/tc-${x.kind}` });
  }
  return res;
}

async function benchRun(tree: string, pair: number, only: string[]): Promise<RowRun[]> {
  const [dir, objs] = tree.split('@');
  const args = [`${dir}/dist/bench/main.js`, '--only', only.join(','), '--reps', '1', '--duration', a.duration!,
    ...(a.cpu ? ['--cpu', a.cpu] : []), ...a['bench-args']!.split(' ').filter(Boolean)];
  const env = objs ? { ...process.env, XDPNET_BPF_DIR: objs } : process.env;
  const child = spawn(process.execPath, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const progs = new Map<number, Prog>();
  const done: RowRun[] = [];
  let taken = new Set<number>(); // programs already assigned to a finished row
  const sample = () => {
    for (const role of ['fwd', 'sink']) {
      const ns = `xnb-${child.pid}-${role}`;
      if (!existsSync(`/var/run/netns/${ns}`)) continue;
      for (const { id, where } of attached(ns)) {
        if (taken.has(id)) continue;
        const st = progRunStats(id);
        if (!st) continue;
        const s = { t: Date.now(), ns: st.runTimeNs, cnt: st.runCnt };
        const p = progs.get(id);
        if (p) p.last = s;
        else progs.set(id, { id, name: st.name, where, first: s, last: s });
      }
    }
  };
  const timer = setInterval(sample, 200);
  let err = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    err += d;
    for (;;) {
      const nl = err.indexOf('\n');
      if (nl < 0) break;
      const line = err.slice(0, nl);
      err = err.slice(nl + 1);
      const m = /^\s+(\S+) run \d+\/\d+: ([\d.]+) Mpps delivered/.exec(line);
      if (!m) continue;
      // The row ended: its programs are the ones seen since the last row ended.
      const mine = [...progs.values()].filter((p) => !taken.has(p.id));
      done.push({
        tree, pair, row: m[1], mpps: Number(m[2]),
        progs: mine.filter((p) => p.last.cnt > p.first.cnt).map((p) => ({
          name: p.name, where: p.where, frames: Number(p.last.cnt - p.first.cnt),
          nsPerRun: Number(p.last.ns - p.first.ns) / Number(p.last.cnt - p.first.cnt),
        })),
      });
      taken = new Set([...taken, ...mine.map((p) => p.id)]);
    }
  });
  child.stdout.resume();
  const code = await new Promise<number | null>((res) => child.on('exit', res));
  clearInterval(timer);
  if (code !== 0) throw new Error(`${tree}: bench exited ${code}`);
  return done;
}

const median = (xs: number[]) => { const y = [...xs].sort((p, q) => p - q); const h = y.length >> 1; return y.length % 2 ? y[h] : (y[h - 1] + y[h]) / 2; };
/** The forwarder's program time per frame: every fwd program's time over the frames of the busiest one. */
const fwdNs = (r: RowRun) => {
  const f = r.progs.filter((p) => p.where.startsWith('fwd:'));
  const frames = Math.max(0, ...f.map((p) => p.frames));
  return frames ? f.reduce((s, p) => s + p.nsPerRun * p.frames, 0) / frames : NaN;
};

const sinkNs = (r: RowRun) => r.progs.find((p) => p.where.startsWith('sink:'))?.nsPerRun ?? NaN;

const statsFd = saved ? -1 : enableRunTimeStats();
const all: RowRun[] = saved?.runs ?? [];
for (let pair = 0; pair < Number(a.pairs); pair++) {
  // Row by row, the trees back to back (A B, then B A): the machine's load
  // drifts over minutes, and what runs seconds apart sees the same.
  for (const [i, row] of rows.entries()) {
    const order = (pair + i) % 2 ? [...trees].reverse() : trees;
    for (const tree of order) {
      const got = await benchRun(tree, pair, [row]);
      for (const r of got) {
        process.stdout.write(`pair ${pair + 1} ${tree} ${r.row}: ${r.mpps.toFixed(3)} Mpps; ` +
          `${r.progs.map((p) => `${p.name}@${p.where} ${p.nsPerRun.toFixed(1)} ns x ${p.frames}`).join(', ')}\n`);
      }
      all.push(...got);
    }
  }
}
void statsFd; // closed at exit, which ends the accounting

console.log('\nmedians over pairs: forwarder program ns/frame, its excess over the sink program of the same run, Mpps, ratio to the same run\'s ceiling');
for (const row of rows) {
  for (const tree of trees) {
    const rs = all.filter((r) => r.row === row && r.tree === tree);
    if (!rs.length) continue;
    const ratios = rs.map((r) => r.mpps / (all.find((c) => c.row === 'redirect-ceiling' && c.tree === tree && c.pair === r.pair)?.mpps ?? NaN));
    const over = rs.map((r) => fwdNs(r) - sinkNs(r));
    console.log(`${row.padEnd(22)} ${tree.padEnd(16)} fwd ${median(rs.map(fwdNs)).toFixed(1).padStart(6)} ns [${rs.map((r) => fwdNs(r).toFixed(1)).join(' ')}]` +
      `  fwd-sink ${median(over).toFixed(1).padStart(6)} [${over.map((x) => x.toFixed(1)).join(' ')}]` +
      `  ${median(rs.map((r) => r.mpps)).toFixed(3)} Mpps [${rs.map((r) => r.mpps.toFixed(2)).join(' ')}]  ratio ${median(ratios).toFixed(2)}`);
  }
}
if (a.json) writeFileSync(a.json, `${JSON.stringify({ date: new Date().toISOString(), trees, rows, duration: Number(a.duration), runs: all }, null, 2)}\n`);
