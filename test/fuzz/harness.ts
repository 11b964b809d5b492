// What every fuzzed program shares: running one frame, and reporting the
// figures (`make fuzz` collects them in bench/results/fuzz.md through the file
// XDPNET_FUZZ_REPORT names).
import { appendFileSync, existsSync } from 'node:fs';
import { BpfError } from '../../src/errors.js';
import type { BpfProgram, FrameRunner } from '../../src/sys/libbpf.js';
import type { Rng } from './gen.js';

const EINVAL = 22;

/** When a run started: wall and CPU clocks, for the rate report() prints. */
export function started(): { wall: bigint; cpu: NodeJS.CpuUsage } {
  return { wall: process.hrtime.bigint(), cpu: process.cpuUsage() };
}

export function report(program: string, seed: number, frames: number, mismatches: number, refused: number, since: ReturnType<typeof started>): void {
  if (stopRequested()) program += ' (stopped)';
  // refused: frames the kernel's test run will not take (shorter than an Ethernet header, or tc with an
  // IPv4/IPv6 EtherType but less than that header); a NIC never delivers them to tc either
  const wall = Number(process.hrtime.bigint() - since.wall) / 1e9;
  const c = process.cpuUsage(since.cpu);
  const cpu = (c.user + c.system) / 1e6; // the kernel's test runs are the system part
  const rate = (s: number) => Math.round((frames + refused) / s);
  console.log(`fuzz ${program}: ${frames} frames, ${mismatches} mismatches, ${refused} refused by the kernel (seed ${seed}); ` +
    `${wall.toFixed(1)} s, ${rate(wall)} frames/s, ${rate(cpu)} a CPU second`);
  const file = process.env.XDPNET_FUZZ_REPORT;
  if (file) appendFileSync(file, `| ${program} | ${frames} | ${mismatches} | ${refused} | ${seed} | ${wall.toFixed(0)} s | ${rate(wall)} | ${rate(cpu)} |\n`);
}

/**
 * Called after every checked batch: each 10^6 frames (and only at batch ends,
 * where the maps have just been checked) a line of JSON goes to the file
 * XDPNET_FUZZ_PROGRESS names, so a long run stopped early still says how far
 * it got with how many mismatches (test/fuzz/parallel.mjs reads it).
 */
export function progress(program: string, seed: number, frames: number, mismatches: number, refused: number, since: ReturnType<typeof started>): void {
  const file = process.env.XDPNET_FUZZ_PROGRESS;
  const step = Number(process.env.XDPNET_FUZZ_PROGRESS_EVERY ?? 1_000_000);
  if (!file || Math.floor(frames / step) === Math.floor((lastProgress.get(program) ?? 0) / step)) return;
  lastProgress.set(program, frames);
  const wall = Number(process.hrtime.bigint() - since.wall) / 1e9;
  appendFileSync(file, `${JSON.stringify({ program, seed, frames, mismatches, refused, seconds: Math.round(wall) })}\n`);
}
const lastProgress = new Map<string, number>();

/**
 * True once the file XDPNET_FUZZ_STOP names exists (test/fuzz/parallel.mjs
 * makes it when told to stop): the loop ends after the batch it has just
 * checked, reports how far it got, and the suite cleans up after itself. A
 * signal cannot do that: the loop never yields to a handler.
 */
export function stopRequested(): boolean {
  const file = process.env.XDPNET_FUZZ_STOP;
  return !!file && existsSync(file);
}

/**
 * Finds the first bad frame of a batch whose map check failed. The maps are
 * checked once a batch (counters summed over CPUs, drops by reason, the FDB),
 * against what the reference predicts of every frame so far; frames are a
 * function of the seed, so the frames since the last reset of maps and
 * reference (the epoch) are run again from that reset, and the maps are
 * checked after each frame of the failing batch. Returns what to print.
 */
export function replay(o: {
  rng: Rng;
  epoch: Epoch;
  first: number; // the failing batch: frames first..last
  last: number;
  reset(): void; // maps and reference as at the epoch's start
  step(i: number): { frame: Buffer; how: string[] }; // generates, runs and accounts frame i
  check(): string; // '' or how the maps differ from the reference's prediction
}): string {
  o.reset();
  o.rng.state = o.epoch.rng;
  for (let i = o.epoch.i; i <= o.last; i++) {
    const { frame, how } = o.step(i);
    if (i < o.first) continue;
    const bad = o.check();
    if (bad) return `run again from frame ${o.epoch.i}, the maps first disagree after frame ${i} (seed ${o.rng.seed}, ${how.join(' + ') || 'unmutated'}): ${bad}\n  ${frame.toString('hex')}`;
  }
  return `run again from frame ${o.epoch.i}, one frame at a time, frames ${o.first}..${o.last} agreed with the reference: the batch's mismatch did not repeat`;
}
/** Where a run last reset its maps and reference: frame i, drawn from rng state `rng`. */
export interface Epoch { i: number; rng: number }

/**
 * A run's mismatches: the first five in full, the rest only counted. While a
 * batch is replayed its frames' failures were counted the first time, so
 * `muted` drops them.
 */
export class Mismatches {
  readonly list: string[] = [];
  muted = false;
  constructor(private readonly seed: number) {}

  fail(i: number, f: Buffer, how: string[], what: string): void {
    if (this.muted) return;
    this.list.push(this.list.length < 5 ? `frame ${i} (seed ${this.seed}, ${how.join(' + ') || 'unmutated'}): ${what}\n  ${f.toString('hex')}` : '');
  }
}

/**
 * The loop every fuzzed program runs: frames until `frames` have run (what the
 * kernel refuses does not count), the maps checked every BATCH frames; on the
 * first batch whose maps disagree it replays the batch (replay()) to name the
 * first bad frame, records that as a mismatch and stops, as the maps are then
 * the replay's. After a good batch, `needsReset()` may start a new epoch. Ends
 * with report() and returns the frames run and refused.
 */
export function runBatches(o: {
  program: string; // as report() names it: 'bridge xdp'
  rng: Rng;
  frames: number;
  since: ReturnType<typeof started>;
  mismatches: Mismatches;
  step(i: number): { frame: Buffer; how: string[]; ran: boolean };
  checkMaps(): string;
  reset(): void;
  needsReset(): boolean;
}): { run: number; refused: number } {
  const BATCH = 2000;
  const { rng: r, mismatches: m } = o;
  let run = 0;
  let refused = 0;
  let epoch: Epoch = { i: 0, rng: r.state };
  let batchStart = 0;
  for (let i = 0; run < o.frames; i++) {
    if (o.step(i).ran) run++;
    else refused++;
    if ((i + 1) % BATCH !== 0 && run < o.frames) continue;
    const bad = o.checkMaps();
    if (bad) {
      m.muted = true;
      const first = replay({ rng: r, epoch, first: batchStart, last: i, reset: o.reset, step: o.step, check: o.checkMaps });
      m.muted = false;
      m.fail(i, Buffer.alloc(0), [], `maps after frames ${batchStart}..${i}: ${bad}\n  ${first}`);
      break;
    }
    batchStart = i + 1;
    if (o.needsReset()) {
      o.reset();
      epoch = { i: i + 1, rng: r.state };
    }
    progress(o.program, r.seed, run, m.list.length, refused, o.since);
    if (stopRequested()) break;
  }
  report(o.program, r.seed, run, m.list.length, refused, o.since);
  return { run, refused };
}

/**
 * Runs one program on frame after frame through a FrameRunner (one FFI call a
 * frame, nothing allocated): the result, or undefined if the kernel refuses
 * the frame (EINVAL). The output is a view, valid until the next run.
 */
export class Runner {
  private readonly fr: FrameRunner;
  constructor(private readonly prog: BpfProgram, private readonly hook: 'xdp' | 'tc') {
    this.fr = prog.frameRunner(4096, hook === 'xdp' ? 24 : 44);
  }

  run(ifindex: number, f: Buffer): { retval: number; data: Buffer } | undefined {
    if (this.hook === 'xdp') {
      this.fr.ctx.writeUInt32LE(f.length, 4); // struct xdp_md: data_end
      this.fr.ctx.writeUInt32LE(ifindex, 12); // ingress_ifindex
    } else {
      this.fr.ctx.writeUInt32LE(ifindex, 40); // struct __sk_buff: ifindex
    }
    const ret = this.fr.run(f);
    if (ret === -EINVAL && f.length < 14 + 40) return undefined;
    if (ret < 0) throw new BpfError('test-run program', this.prog.name, -ret);
    return { retval: this.fr.retval, data: this.fr.output };
  }

  close(): void {
    this.fr.close();
  }
}
