// `make bench`: packet-rate scenarios side by side in one run. Each scenario
// builds a namespace topology gen → … → sink; a generator child process sends
// 128-byte UDP frames from the gen namespace, xn_sink counts what arrives.
//   node dist/bench/main.js [--only a,b] [--duration s] [--reps n (5)] [--flows n] [--size bytes] [--cpu n (the last)] [--md FILE]
//   node dist/bench/main.js --only a,b --layout split|spread   (packet rows on more than one CPU: bench/multicore.ts)
//   node dist/bench/main.js --render        (latest.md and the README's table again from latest.json)
//   node dist/bench/main.js --role sink|gen --iface IF [--peer IP] …   (bench/run, vagrant)
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { requirePrivileges } from '../src/dataplane/host.js';
import type { GenOptions, GenResult } from './gen.js';
import { genRole, sinkRole } from './remote.js';
import { CEILING, SCENARIOS, TC_CEILING, type Scenario } from './scenarios.js';
import { isAlive, Topology, reapStale } from './topology.js';
import { reapStaleOvs } from './peers.js';
import { measureTcp, TCP_CC, TCP_REFERENCE, TCP_SCENARIOS, tcpReference, type TcpRow } from './tcp.js';
import { measureChurn, type ChurnResult } from './churn.js';
import { CT_SCALE, measureCtScale, type CtScaleResult } from './ctscale.js';
import { allowCongestionControl, reapCongestionHolds, releaseCongestionControl, type CcChoice } from './congestion.js';

interface Row {
  scenario: string;
  about: string;
  deliveredMpps: number;
  generatedMpps: number;
  ratio: number | null;
  runs: Array<{ deliveredMpps: number; generatedMpps: number; seconds: number }>;
}

const GEN_JS = fileURLToPath(new URL('./gen.js', import.meta.url));
const RESULTS = fileURLToPath(new URL('../../bench/results/', import.meta.url));

const CHURN = 'fdb-churn';
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Where the work runs. one: the generator and the whole path in its softirq on
 * one CPU. split: the generator alone on its CPU, every other namespace's veth
 * receive work (the forwarder, the sink) in NAPI threads on another. spread:
 * a generator on each CPU, veths with a queue per CPU, so each CPU carries its
 * own share of the path end to end.
 */
const LAYOUTS = ['one', 'split', 'spread'] as const;
type Layout = (typeof LAYOUTS)[number];
interface RunOptions { seconds: number; reps: number; flows: number; size: number; varyMac: boolean; cpu?: string; layout: Layout }

/** Builds the scenario, attaches the sink; returns how to run the generator and read the sink. */
function prepare(t: Topology, s: Scenario, o: RunOptions) {
  const e = s.build(t);
  const sink = t.attachXdp(e.sink.ns, e.sink.iface, 'sink');
  const cpus = availableParallelism();
  if (o.layout === 'split') t.threadNapi(e.gen.ns, o.cpu === '0' ? 1 : 0);
  const gen1 = (seconds: number, cpu: string | undefined): Promise<GenResult> => {
    const spec: GenOptions = {
      netns: t.nsName(e.gen.ns), iface: e.gen.iface, srcMac: t.mac(e.gen.ns, e.gen.iface),
      dstMac: e.gen.dstMac ?? t.mac(e.sink.ns, e.sink.iface), srcIp: e.gen.ip, dstIp: e.sink.ip,
      sport: 1024, dport: 9, size: o.size, flows: s.flows ?? o.flows, varyMac: s.varyMac ?? o.varyMac, seconds,
      vxlan: e.gen.vxlan,
    };
    // The whole path runs in the generator's softirq context on its CPU, so
    // pinning it (--cpu) steadies the figures on a machine that is not idle.
    const argv = [process.execPath, GEN_JS, JSON.stringify(spec)];
    if (cpu !== undefined) argv.unshift('taskset', '-c', cpu);
    return t.run('generator', argv[0], argv.slice(1)).then((out) => JSON.parse(out) as GenResult);
  };
  const gen = async (seconds: number): Promise<GenResult> => {
    if (o.layout !== 'spread') return gen1(seconds, o.cpu);
    const rs = await Promise.all(Array.from({ length: cpus }, (_, i) => gen1(seconds, String(i))));
    return { packets: rs.reduce((s, r) => s + r.packets, 0), seconds: Math.max(...rs.map((r) => r.seconds)) };
  };
  return { gen, delivered: () => Number(sink.count().packets), deliveredBytes: () => Number(sink.count().bytes) };
}

async function measure(s: Scenario, o: RunOptions, label = (i: number) => `${i + 1}/${o.reps}`): Promise<Row> {
  const t = new Topology(o.layout === 'spread' ? availableParallelism() : 1);
  try {
    const { gen, delivered, deliveredBytes } = prepare(t, s, o);
    const runs: Row['runs'] = [];
    const bytesBefore = deliveredBytes();
    const before0 = delivered();
    for (let i = 0; i < o.reps; i++) {
      const before = delivered();
      const r = await gen(o.seconds);
      runs.push({ deliveredMpps: (delivered() - before) / r.seconds / 1e6, generatedMpps: r.packets / r.seconds / 1e6, seconds: r.seconds });
      process.stderr.write(`  ${s.name} run ${label(i)}: ${runs[i].deliveredMpps.toFixed(3)} Mpps delivered\n`);
    }
    if (s.deliveredExtra !== undefined) {
      // The frames the sink counted must have the expected size (e.g. decapsulated); the
      // bridge's own few frames (a handful of 60-byte ones per run) move the average by < 0.01.
      const frames = delivered() - (before0 ?? 0);
      const size = frames ? (deliveredBytes() - bytesBefore) / frames : 0;
      if (Math.abs(size - (Math.max(60, o.size) + s.deliveredExtra)) > 0.5) throw new Error(`${s.name}: sink frames average ${size} bytes, expected ${Math.max(60, o.size) + s.deliveredExtra}`);
    }
    return {
      scenario: s.name, about: s.about, ratio: null, runs,
      deliveredMpps: median(runs.map((r) => r.deliveredMpps)),
      generatedMpps: median(runs.map((r) => r.generatedMpps)),
    };
  } finally {
    t.destroy();
  }
}

/**
 * Rows on the NAT rows' routed path, read against the tc hook's own ceiling
 * (the same skb path with a bare tc redirect where xdpnet's NAT runs): how
 * much of a tc row's cost is its program, and what the skb path leaves for
 * any program that runs on skbs (the kernel's, OVS's, the flowtable's).
 */
const TC_CEILING_ROWS = ['redirect-ceiling', 'kernel-routing', 'iptables-masq', 'iptables-masq-10k', 'xdpnet-masq', 'xdpnet-masq-10k',
  'xdpnet-masq-xdp', 'xdpnet-masq-xdp-10k', 'ovs-masq', 'ovs-masq-10k', 'nft-flowtable-masq', 'nft-flowtable-masq-10k'];

/** Each row's runs over the reference row's runs of the same rep, the median (null: not both in the run). */
function perRep(r: Pick<Row, 'runs'>, ref: Pick<Row, 'runs'> | undefined): number | null {
  return ref?.runs.length === r.runs.length ? median(r.runs.map((x, i) => x.deliveredMpps / ref.runs[i].deliveredMpps)) : null;
}

function tcCeilingRatios(rows: Row[]): Array<{ scenario: string; deliveredMpps: number; ratio: number }> {
  const ref = rows.find((r) => r.scenario === TC_CEILING);
  if (!ref) return [];
  return TC_CEILING_ROWS.flatMap((name) => {
    const r = rows.find((x) => x.scenario === name);
    const ratio = r ? perRep(r, ref) : null;
    return r && ratio !== null ? [{ scenario: name, deliveredMpps: r.deliveredMpps, ratio }] : [];
  });
}

function printTable(rows: Row[]): void {
  const w = Math.max(8, ...rows.map((r) => r.scenario.length));
  console.log(`${'scenario'.padEnd(w)}  delivered Mpps  generated Mpps  vs ceiling`);
  for (const r of rows) {
    console.log(`${r.scenario.padEnd(w)}  ${r.deliveredMpps.toFixed(3).padStart(14)}  ${r.generatedMpps.toFixed(3).padStart(14)}  ${
      r.ratio === null ? '         -' : r.ratio.toFixed(2).padStart(10)}`);
  }
  const tc = tcCeilingRatios(rows);
  if (tc.length) console.log(`\nvs ${TC_CEILING}: ${tc.map((x) => `${x.scenario} ${x.ratio.toFixed(2)}`).join(', ')}`);
}

function printTcpTable(rows: TcpRow[]): void {
  const w = Math.max(8, ...rows.map((r) => r.scenario.length));
  console.log(`\n${'scenario'.padEnd(w)}  streams   Gbit/s  vs kernel row (${TCP_REFERENCE} or its overlay twin)`);
  for (const r of rows) {
    console.log(`${r.scenario.padEnd(w)}  ${String(r.streams).padStart(7)}  ${r.gbps.toFixed(2).padStart(7)}  ${(r.ratio === null ? '-' : r.ratio.toFixed(2)).padEnd(4)}` +
      `  runs ${(r.runs ?? [r.gbps]).map((g) => g.toFixed(1)).join(' ')}`);
  }
}

/** xdpnet's row, the peer's row of the same job (Mpps, or Gbit/s for TCP rows), the job. */
const PEER_PAIRS: Array<[string, string, string]> = [
  ['xdpnet-bridge', 'ovs-bridge', 'bridge, 1 flow'],
  ['xdpnet-bridge-macs', 'ovs-bridge-macs', 'bridge, 1024 MACs'],
  ['xdpnet-vxlan-encap', 'ovs-vxlan-encap', 'VXLAN encap'],
  ['xdpnet-vxlan-decap', 'ovs-vxlan-decap', 'VXLAN decap'],
  ['xdpnet-masq', 'ovs-masq', 'masquerade, 1 flow'],
  ['xdpnet-masq-10k', 'ovs-masq-10k', 'masquerade, 10k flows'],
  ['xdpnet-masq', 'nft-flowtable-masq', 'masquerade, 1 flow'],
  ['xdpnet-masq-10k', 'nft-flowtable-masq-10k', 'masquerade, 10k flows'],
  ['tcp-xdpnet-bridge', 'tcp-ovs-bridge', 'TCP over a bridge, 1 stream (Gbit/s)'],
];

/** The README's tables, from a run's report. */
function markdown(r: { date: string; kernel: string; cpu: string; nproc: number; rows: Row[]; tcp: TcpRow[]; tcpCc?: { cc: string; note: string | null } | null; skipped?: Array<{ scenario: string; why: string }>; churn: ChurnResult | null; ctScale: CtScaleResult | null }): string {
  const out = [`Measured ${r.date.slice(0, 10)} on ${r.cpu} (${r.nproc} vCPUs), kernel ${r.kernel}; 128-byte frames, one generator core, median of the runs (vs ceiling: of each run over the ceiling's run in the same rep).`, '',
    '| scenario | delivered Mpps | vs ceiling | vs Linux bridge |', '|---|---:|---:|---:|'];
  const br = r.rows.find((x) => x.scenario === 'linux-bridge')?.deliveredMpps;
  for (const x of r.rows) {
    out.push(`| ${x.scenario} | ${x.deliveredMpps.toFixed(3)} | ${x.ratio?.toFixed(2) ?? '-'} | ${br ? (x.deliveredMpps / br).toFixed(2) : '-'} |`);
  }
  const tc = tcCeilingRatios(r.rows);
  if (tc.length) {
    out.push('', `| on the tc hook's path | delivered Mpps | vs ${TC_CEILING} |`, '|---|---:|---:|');
    for (const x of tc) out.push(`| ${x.scenario} | ${x.deliveredMpps.toFixed(3)} | ${x.ratio.toFixed(2)} |`);
  }
  if (r.tcp.length) {
    out.push('', `| TCP (iperf3, ${r.tcpCc?.cc ?? TCP_CC}) | streams | Gbit/s | vs kernel row |`, '|---|---:|---:|---:|');
    for (const x of r.tcp) out.push(`| ${x.scenario} | ${x.streams} | ${x.gbps.toFixed(2)} | ${x.ratio?.toFixed(2) ?? '-'} |`);
    if (r.tcpCc?.note) out.push('', `TCP rows: ${r.tcpCc.note}.`);
  }
  // The same job done by xdpnet and by a peer that leaves the kernel path (issue #17's pairs).
  const rate = new Map<string, number>([...r.rows.map((x) => [x.scenario, x.deliveredMpps] as const),
    ...r.tcp.filter((x) => x.streams === 1).map((x) => [x.scenario, x.gbps] as const)]);
  const pairs = PEER_PAIRS.filter(([x, p]) => rate.has(x) && rate.has(p));
  if (pairs.length) {
    out.push('', '| job | xdpnet row | peer row | xdpnet / peer |', '|---|---|---|---:|');
    for (const [x, p, job] of pairs) out.push(`| ${job} | ${x} ${rate.get(x)!.toFixed(3)} | ${p} ${rate.get(p)!.toFixed(3)} | ${(rate.get(x)! / rate.get(p)!).toFixed(2)} |`);
  }
  if (r.skipped?.length) {
    out.push('', 'Skipped here:', ...r.skipped.map((x) => `- ${x.scenario}: ${x.why}`));
  }
  if (r.churn) {
    const c = r.churn;
    out.push('', `FDB churn: ${Math.round(c.updatesPerSec).toLocaleString('en')} updates/s through \`xdpnet fdb load\` end to end ` +
      `(Node start-up included; ${Math.round(c.loadUpdatesPerSec).toLocaleString('en')}/s in the bulk path itself) while forwarding; ` +
      `${c.generated} frames generated, ${c.delivered} delivered, ${c.flooded} flooded, drops ${JSON.stringify(c.drops)}.`);
  }
  if (r.ctScale) {
    const c = r.ctScale;
    out.push('', `Conntrack at scale: ${c.filled.toLocaleString('en')} flows tracked (table for ${c.tableFlows.toLocaleString('en')}); ` +
      `${c.established.stillTracked}/${c.established.flows} flows established before the fill still tracked, ${c.established.created} re-created, ` +
      `${c.established.delivered}/${c.established.generated} of their frames delivered; \`conntrack list\` ${c.cli.listSec.toFixed(1)} s ` +
      `(\`--json\` ${c.cli.listJsonSec.toFixed(1)} s), \`conntrack gc\` ${c.cli.gcNoneSec.toFixed(1)} s with nothing expired and ` +
      `${c.cli.gcAllSec.toFixed(1)} s removing all ${c.cli.gcRemoved.toLocaleString('en')} (Node start-up included).`);
  }
  return `${out.join('\n')}\n`;
}

/** The README's summary (between its bench markers): each job, xdpnet against the kernel path. */
const README_JOBS: Array<[string, string, string]> = [
  ['xdpnet-bridge', 'linux-bridge', 'bridge, 1 flow'],
  ['xdpnet-bridge-macs', 'linux-bridge-macs', 'bridge, 1024 source MACs'],
  ['xdpnet-vxlan-encap', 'kernel-vxlan-encap', 'VXLAN encap'],
  ['xdpnet-vxlan-decap', 'kernel-vxlan-decap', 'VXLAN decap'],
  ['xdpnet-masq-10k', 'iptables-masq-10k', 'masquerade, 10k flows'],
  ['xdpnet-masq-xdp-10k', 'iptables-masq-10k', 'masquerade, 10k flows, `--in-hook xdp`'],
];
const README = fileURLToPath(new URL('../../README.md', import.meta.url));
const README_BEGIN = '<!-- bench table: node dist/bench/main.js --render -->';
const README_END = '<!-- end of bench table -->';

function readmeTable(r: { date: string; kernel: string; cpu: string; nproc: number; rows: Row[]; tcp: TcpRow[] }): string {
  const rate = new Map(r.rows.map((x) => [x.scenario, x] as const));
  const out = [`Packet rate, 128-byte frames, one core (\`make bench\`, ${r.date.slice(0, 10)}, ${r.cpu}, ${r.nproc} vCPUs, kernel ${r.kernel}):`, '',
    '| job | xdpnet Mpps | kernel path Mpps | xdpnet / kernel | xdpnet vs bare XDP redirect |', '|---|---:|---:|---:|---:|'];
  for (const [x, k, job] of README_JOBS) {
    const a = rate.get(x), b = rate.get(k);
    if (a && b) out.push(`| ${job} | ${a.deliveredMpps.toFixed(2)} | ${b.deliveredMpps.toFixed(2)} (${k}) | ${(a.deliveredMpps / b.deliveredMpps).toFixed(1)}× | ${a.ratio?.toFixed(2) ?? '-'} |`);
  }
  const tcp = (s: string, n: number) => r.tcp.find((x) => x.scenario === s && x.streams === n);
  for (const n of [1, 4]) {
    const a = tcp('tcp-xdpnet-bridge', n), b = tcp(TCP_REFERENCE, n);
    if (a && b) out.push(`| TCP over the bridge, ${n} stream${n > 1 ? 's' : ''} (Gbit/s) | ${a.gbps.toFixed(1)} | ${b.gbps.toFixed(1)} (Linux bridge) | ${(a.gbps / b.gbps).toFixed(2)}× | |`);
  }
  return out.join('\n');
}

/** Replaces the README's summary between its markers (a full run, or --render). */
function writeReadme(report: Parameters<typeof readmeTable>[0]): void {
  const text = readFileSync(README, 'utf8');
  const i = text.indexOf(README_BEGIN), j = text.indexOf(README_END);
  if (i < 0 || j < i) throw new Error(`README.md has no bench table markers (${README_BEGIN} … ${README_END})`);
  writeFileSync(README, `${text.slice(0, i + README_BEGIN.length)}\n${readmeTable(report)}\n${text.slice(j)}`);
}

/** A full run replaces latest.json (the README's table); an --only run writes partial.json. */
function writeResults(report: object, partial: boolean): string {
  mkdirSync(RESULTS, { recursive: true });
  const file = `${RESULTS}${partial ? 'partial' : 'latest'}.json`;
  writeFileSync(`${file}.tmp`, `${JSON.stringify(report, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
  return file;
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      only: { type: 'string' }, duration: { type: 'string' }, reps: { type: 'string', default: '5' },
      flows: { type: 'string', default: '1' }, size: { type: 'string', default: '128' }, 'vary-mac': { type: 'boolean', default: false },
      cpu: { type: 'string' }, role: { type: 'string' }, iface: { type: 'string' }, peer: { type: 'string' }, idle: { type: 'string', default: '3' },
      render: { type: 'boolean', default: false }, md: { type: 'string' }, layout: { type: 'string', default: 'one' },
    },
  });
  if (a.render) { // latest.md again from latest.json (after the table's format changed)
    const latest = JSON.parse(readFileSync(`${RESULTS}latest.json`, 'utf8'));
    writeFileSync(`${RESULTS}latest.md`, markdown(latest));
    writeReadme(latest);
    return;
  }
  const num = (v: string | undefined, name: string) => {
    const n = Number(v);
    if (v === undefined || !(n > 0)) throw new Error(`--${name} needs a positive number, got ${v}`);
    return n;
  };
  requirePrivileges();
  const frame = { size: num(a.size, 'size'), flows: num(a.flows, 'flows'), varyMac: a['vary-mac']! };
  // Live frames must fit one page with XDP headroom and skb_shared_info tailroom.
  if (frame.size < 60 || frame.size > 3520) throw new Error(`--size must be 60..3520 bytes, got ${frame.size}`);
  const duration = a.duration === undefined ? undefined : num(a.duration, 'duration');

  if (a.role) {
    if (!a.iface) throw new Error('--role needs --iface');
    if (a.role === 'sink') return sinkRole({ iface: a.iface, seconds: duration, idle: num(a.idle, 'idle') });
    if (a.role === 'gen') {
      if (!a.peer) throw new Error('--role gen needs --peer IP');
      return genRole({ iface: a.iface, peer: a.peer, seconds: duration ?? 10, ...frame });
    }
    throw new Error(`unknown role ${a.role} (sink or gen)`);
  }

  const only = a.only?.split(',');
  const known = [...SCENARIOS, ...TCP_SCENARIOS].map((s) => s.name).concat(CHURN, CT_SCALE);
  const unknown = only?.filter((n) => !known.includes(n)) ?? [];
  if (unknown.length) throw new Error(`unknown scenario ${unknown.join(', ')}; known: ${known.join(', ')}`);
  reapStale();
  reapStaleOvs(isAlive);
  reapCongestionHolds();
  // The generator on the last CPU by default: the run's other processes keep off it, and rows vary less.
  const genCpu = a.cpu ?? (availableParallelism() > 1 ? String(availableParallelism() - 1) : undefined);
  const layout = a.layout as Layout;
  if (!LAYOUTS.includes(layout)) throw new Error(`--layout must be one of ${LAYOUTS.join(', ')}, got ${a.layout}`);
  if (layout !== 'one' && availableParallelism() < 2) throw new Error(`--layout ${layout} needs at least 2 CPUs`);
  const packetRows = SCENARIOS.map((s) => s.name);
  if (layout !== 'one' && !only?.every((n) => packetRows.includes(n))) throw new Error(`--layout ${layout} takes packet-rate rows only (--only ${packetRows.slice(0, 2).join(',')},...)`);
  const opts: RunOptions = { seconds: duration ?? 3, reps: num(a.reps, 'reps'), cpu: genCpu, layout, ...frame };
  const skipped: Array<{ scenario: string; why: string }> = [];
  const scenarios = SCENARIOS.filter((x) => !only || only.includes(x.name)).filter((s) => {
    const skip = s.unavailable?.();
    if (skip) skipped.push({ scenario: s.name, why: skip });
    if (skip) process.stderr.write(`${s.name}: skipped, ${skip}\n`);
    else process.stderr.write(`${s.name}: ${s.about}\n`);
    return !skip;
  });
  // The machine's speed drifts (other load, the hypervisor): scenarios take
  // turns, one run each, rep after rep, so drift falls on every row alike;
  // each row is the median of its runs.
  const byName = new Map<string, Row>();
  for (let rep = 0; rep < opts.reps; rep++) {
    for (const s of scenarios) {
      const r = await measure(s, { ...opts, reps: 1 }, () => `${rep + 1}/${opts.reps}`);
      const cur = byName.get(s.name);
      byName.set(s.name, cur ? { ...cur, runs: [...cur.runs, ...r.runs] } : r);
    }
  }
  const rows: Row[] = [...byName.values()].map((r) => ({
    ...r, deliveredMpps: median(r.runs.map((x) => x.deliveredMpps)), generatedMpps: median(r.runs.map((x) => x.generatedMpps)),
  }));
  // A row's ratio is the median of its runs each over the ceiling's run of the
  // same rep (minutes apart, not the whole bench): slow drift cancels.
  const ceiling = rows.find((r) => r.scenario === CEILING);
  for (const r of rows) r.ratio = perRep(r, ceiling);
  if (rows.length) printTable(rows);

  // TCP varies more from run to run than the bridges differ: scenarios take
  // turns, rep after rep, and each row is the median of its reps.
  const samples = new Map<string, TcpRow[]>();
  const tcpScenarios = TCP_SCENARIOS.filter((x) => !only || only.includes(x.name)).filter((s) => {
    const skip = s.unavailable?.();
    if (skip) skipped.push({ scenario: s.name, why: skip });
    if (skip) process.stderr.write(`${s.name}: skipped, ${skip}\n`);
    return !skip;
  });
  let tcpCc: CcChoice | null = null;
  if (tcpScenarios.length) {
    tcpCc = allowCongestionControl(TCP_CC);
    if (tcpCc.note) process.stderr.write(`TCP rows: ${tcpCc.note}\n`);
  }
  for (let rep = 0; rep < opts.reps && tcpScenarios.length; rep++) {
    for (const s of tcpScenarios) {
      process.stderr.write(`${s.name} (run ${rep + 1}/${opts.reps}): ${s.about}\n`);
      const t = new Topology();
      try {
        for (const r of await measureTcp(t, s, [1, 4], opts.seconds + 2, tcpCc!.cc)) {
          const k = `${r.scenario}/${r.streams}`;
          samples.set(k, [...(samples.get(k) ?? []), r]);
        }
      } finally {
        t.destroy();
      }
    }
  }
  releaseCongestionControl();
  const tcp: TcpRow[] = [...samples.values()].map((rs) => ({ ...rs[0], gbps: median(rs.map((r) => r.gbps)), runs: rs.map((r) => r.gbps) }));
  for (const r of tcp) {
    const ref = tcp.find((x) => x.scenario === tcpReference(r.scenario) && x.streams === r.streams);
    r.ratio = ref ? r.gbps / ref.gbps : null;
  }
  if (tcp.length) printTcpTable(tcp);

  let churn: ChurnResult | null = null;
  if (!only || only.includes(CHURN)) {
    const s = SCENARIOS.find((x) => x.name === 'xdpnet-bridge')!;
    process.stderr.write(`${CHURN}: \`xdpnet fdb load\` moving 100k MACs between ports while ${s.name} forwards\n`);
    const t = new Topology();
    try {
      const { gen, delivered } = prepare(t, s, opts);
      churn = await measureChurn(t, gen, delivered, opts.seconds + 2);
    } finally {
      t.destroy();
    }
    console.log(`\n${CHURN}: ${Math.round(churn.updatesPerSec).toLocaleString('en')} FDB updates/s end to end, ` +
      `${Math.round(churn.loadUpdatesPerSec).toLocaleString('en')}/s in the bulk path (${churn.updates} in ${churn.seconds.toFixed(2)} s); ` +
      `frames generated ${churn.generated}, delivered ${churn.delivered}, flooded ${churn.flooded}, dropped ${JSON.stringify(churn.drops)}`);
  }
  let ctScale: CtScaleResult | null = null;
  if (!only || only.includes(CT_SCALE)) {
    process.stderr.write(`${CT_SCALE}: 1000 established flows, then 1M more through xdpnet masquerade; the CLI lists and collects them\n`);
    const t = new Topology();
    try {
      ctScale = await measureCtScale(t, SCENARIOS.find((x) => x.name === 'xdpnet-masq')!, opts);
    } finally {
      t.destroy();
    }
    const c = ctScale;
    console.log(`\n${CT_SCALE}: ${c.filled} flows tracked (table for ${c.tableFlows}), filled in ${c.fillSeconds.toFixed(1)} s at ${c.fillDeliveredMpps.toFixed(3)} Mpps delivered; ` +
      `established ${c.established.sameTranslation}/${c.established.flows} still tracked with the same translation, ${c.established.created} re-created, ` +
      `${c.established.delivered}/${c.established.generated} frames delivered; counters ${JSON.stringify(c.counters)}\n` +
      `  conntrack list ${c.cli.listSec.toFixed(2)} s (${c.cli.listRows} rows), list --json ${c.cli.listJsonSec.toFixed(2)} s (${c.cli.listJsonRows} rows), ` +
      `gc ${c.cli.gcNoneSec.toFixed(2)} s (nothing expired), gc ${c.cli.gcAllSec.toFixed(2)} s (${c.cli.gcRemoved} expired flows removed), stats ${c.cli.statsSec.toFixed(2)} s`);
  }
  const cpu = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  const report = {
    date: new Date().toISOString(), kernel: release(), cpu, nproc: availableParallelism(),
    frameSize: opts.size, flows: opts.flows, varyMac: opts.varyMac, seconds: opts.seconds, reps: opts.reps, layout: opts.layout,
    genCpu: opts.cpu ?? null, rows, tcp, tcpCc: tcpCc && { cc: tcpCc.cc ?? 'host default', note: tcpCc.note ?? null }, skipped, churn, ctScale,
  };
  const file = writeResults(report, Boolean(only));
  if (!only) {
    writeFileSync(`${RESULTS}latest.md`, markdown(report));
    writeReadme(report);
  }
  if (a.md) writeFileSync(a.md, markdown(report)); // the tables of an --only run too (make vagrant-bench)
  console.log(`results: ${file}`);
}

main().catch((e: Error) => {
  console.error(`bench: ${e.message}${'hint' in e && e.hint ? `\n  hint: ${e.hint}` : ''}`);
  process.exit(1);
});
