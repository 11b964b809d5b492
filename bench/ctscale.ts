// Conntrack scale: a million tracked flows without losing established ones,
// and the CLI's time to list and garbage-collect them. On the xdpnet-masq
// topology (gen → f0 [tc NAT] fwd [XDP NAT] f1 → sink) with a table sized by
// `--conntrack-max`:
//   1. 1000 flows (UDP, destination port 9) are established first, and their
//      translations recorded;
//   2. the generator fills the table with 1M other flows (destination ports
//      100-161: bench.bpf.c varies them past 16384 flows) until every one is
//      tracked: real frames through the NAT programs, no map seeding;
//   3. the first 1000 flows are sent again: each must still be tracked with
//      the same translation (no new flow created, none failed, every frame
//      delivered), i.e. the LRU evicted nothing;
//   4. `conntrack list` (text and --json) and `conntrack gc` are timed from the
//      CLI over the full table: gc with nothing expired, then with every flow
//      expired (all removed).
// UDP flows get an hour's timeout for the run, so none expires before step 4.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GenOptions, GenResult } from './gen.js';
import type { Scenario } from './scenarios.js';
import type { Topology } from './topology.js';

export const CT_SCALE = 'conntrack-1m';
const FILL = 1_000_000;
const ESTABLISHED = 1000;
const TABLE_FLOWS = 1_048_576; // room for FILL + ESTABLISHED (and what --conntrack-max adds for the LRU)
const GEN_JS = fileURLToPath(new URL('./gen.js', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export interface CtScaleResult {
  tableFlows: number;
  filled: number;
  fillSeconds: number;
  fillDeliveredMpps: number;
  established: { flows: number; stillTracked: number; sameTranslation: number; created: number; generated: number; delivered: number };
  counters: { insertFailed: number; portExhausted: number; restored: number };
  cli: { listSec: number; listRows: number; listJsonSec: number; listJsonRows: number; gcNoneSec: number; gcAllSec: number; gcRemoved: number; statsSec: number };
}

interface Ct { entries: number; created: number; insertFailed: number; portExhausted: number; restored: number }

export async function measureCtScale(t: Topology, masq: Scenario, o: { cpu?: string; size: number }): Promise<CtScaleResult> {
  const e = masq.build(t);
  const fwd = t.nsName('fwd');
  // The scenario's rule, again, on a table sized for the run (a new table needs no rule using the old one).
  t.xdpnet('fwd', 'nat', 'flush');
  t.xdpnet('fwd', 'nat', 'masquerade', 'add', '--src', '10.99.0.0/24', '--out', 'f1', '--conntrack-max', String(TABLE_FLOWS));
  t.xdpnet('fwd', 'conntrack', 'timeouts', 'udp=3600');
  const sink = t.attachXdp(e.sink.ns, e.sink.iface, 'sink');
  const delivered = () => Number(sink.count().packets);
  const ct = (): Ct => JSON.parse(t.xdpnet('fwd', 'stats', '--json')).conntrack as Ct;
  const gen = async (flows: number, dport: number, seconds: number): Promise<GenResult> => {
    const spec: GenOptions = {
      netns: t.nsName(e.gen.ns), iface: e.gen.iface, srcMac: t.mac(e.gen.ns, e.gen.iface), dstMac: e.gen.dstMac!,
      srcIp: e.gen.ip, dstIp: e.sink.ip, sport: 1024, dport, size: o.size, flows, varyMac: false, seconds,
    };
    const argv = [process.execPath, GEN_JS, JSON.stringify(spec)];
    if (o.cpu !== undefined) argv.unshift('taskset', '-c', o.cpu);
    return JSON.parse(await t.run('generator', argv[0], argv.slice(1))) as GenResult;
  };
  /** Times one CLI invocation, output to a file; returns seconds and the file's text. */
  const dir = mkdtempSync(join(tmpdir(), 'xdpnet-ctscale-'));
  const timed = (...args: string[]): { sec: number; out: string } => {
    const file = join(dir, 'out');
    const t0 = process.hrtime.bigint();
    const r = spawnSync('sh', ['-c', `exec "$0" "$@" > ${file}`, process.execPath, CLI, '--netns', fwd, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r.status !== 0) throw new Error(`xdpnet ${args.join(' ')} failed (${r.status})`);
    return { sec, out: readFileSync(file, 'latin1') };
  };
  const rowsOf = (text: string, re: RegExp) => text.split('\n').filter((l) => re.test(l));

  try {
    // 1. Established flows and their translations ("ORIGINAL -> TRANSLATED" as `conntrack list` prints them).
    await gen(ESTABLISHED, 9, 1);
    const established = new Map(rowsOf(timed('conntrack', 'list').out, /:9\s/).map((l) => {
      const m = /(\S+ > \S+)\s+(\S+ > \S+)/.exec(l)!;
      return [m[1], m[2]] as const;
    }));
    if (established.size !== ESTABLISHED) throw new Error(`${established.size} of ${ESTABLISHED} flows established`);

    // 2. Fill: cycle the million flows until each is tracked (a frame lost on the way leaves its flow for the next cycle).
    let fillSeconds = 0;
    let fillDelivered = 0;
    for (let i = 0; i < 8 && ct().entries < 2 * (FILL + ESTABLISHED); i++) {
      const before = delivered();
      const r = await gen(FILL, 100, 6);
      fillSeconds += r.seconds;
      fillDelivered += delivered() - before;
      process.stderr.write(`  ${CT_SCALE}: fill pass ${i + 1}: ${r.packets} frames, ${ct().entries} entries\n`);
    }
    const full = ct();

    // 3. The established flows again: still there, same translation, no new flow.
    const before = delivered();
    const r = await gen(ESTABLISHED, 9, 1);
    const after = ct();
    const list = timed('conntrack', 'list');
    const now = new Map(rowsOf(list.out, /:9\s/).map((l) => {
      const m = /(\S+ > \S+)\s+(\S+ > \S+)/.exec(l)!;
      return [m[1], m[2]] as const;
    }));
    const same = [...established].filter(([k, v]) => now.get(k) === v).length;

    // 4. The CLI over the full table.
    const json = timed('conntrack', 'list', '--json');
    const stats = timed('stats', '--json');
    const gcNone = timed('conntrack', 'gc');
    t.xdpnet('fwd', 'conntrack', 'timeouts', 'udp=1');
    await new Promise((res) => setTimeout(res, 2500));
    const gcAll = timed('conntrack', 'gc');
    return {
      tableFlows: TABLE_FLOWS,
      filled: Math.floor(full.entries / 2),
      fillSeconds,
      fillDeliveredMpps: fillDelivered / fillSeconds / 1e6,
      established: {
        flows: ESTABLISHED, stillTracked: now.size, sameTranslation: same, created: after.created - full.created,
        generated: r.packets, delivered: delivered() - before,
      },
      counters: { insertFailed: after.insertFailed, portExhausted: after.portExhausted, restored: after.restored },
      cli: {
        listSec: list.sec, listRows: rowsOf(list.out, /^udp/).length,
        listJsonSec: json.sec, listJsonRows: rowsOf(json.out, /^[[,]\{/).length,
        gcNoneSec: gcNone.sec, gcAllSec: gcAll.sec, gcRemoved: Number(/^(\d+) expired/.exec(gcAll.out)?.[1] ?? -1),
        statsSec: stats.sec,
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
