// What the monitor's event sites and the cache counters cost the bridge's hit
// path, measured in the kernel with BPF_PROG_TEST_RUN (repeat N: ns per run,
// the program alone, no transmit), so that other load on a shared machine
// disturbs it less than the packet-rate rows. xn_br_xdp forwards a cached
// known unicast frame p1 → p2 with the switch off, drops only, every trace,
// and traces sampled 1 in 64; beside objects built without the event sites
// (-DXN_MON_OFF) and without the cache counters (-DXN_CACHE_STATS_OFF).
// Not part of `make bench`: make bench-objects && node dist/bench/moncost.js [--reps 9] [--repeat 2000000]
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MON_FLAGS, setMonitor } from '../src/objects/monitor.js';
import { instancePaths } from '../src/objects/paths.js';
import { BpfProgram } from '../src/sys/libbpf.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const { values: a } = parseArgs({ options: { reps: { type: 'string', default: '9' }, repeat: { type: 'string', default: '2000000' } } });
const ns = `xnmc${process.pid}`;
const ip = (...x: string[]) => execFileSync('ip', x, { encoding: 'utf8' });
const CASES: Array<[string, number, number]> = [
  ['off', 0, 0], ['drops', MON_FLAGS.DROPS, 0], ['trace', MON_FLAGS.DROPS | MON_FLAGS.TRACE, 0], ['trace-s64', MON_FLAGS.DROPS | MON_FLAGS.TRACE, 63],
];

const NOMON = fileURLToPath(new URL('../../build/bpf-nomon/', import.meta.url));
const NOCACHE = fileURLToPath(new URL('../../build/bpf-nocache/', import.meta.url));

/** A bridge p1 → p2 (XDP ports, the destination in the FDB) in a namespace of its own; objects from dir when given. */
function setup(name: string, objects?: string) {
  const env = objects ? { ...process.env, XDPNET_BPF_DIR: objects } : process.env;
  const cli = (...x: string[]) => execFileSync(process.execPath, [CLI, '--netns', name, ...x], { encoding: 'utf8', env });
  ip('netns', 'add', name);
  for (const p of ['p1', 'p2']) {
    ip('-n', name, 'link', 'add', p, 'type', 'veth', 'peer', 'name', `${p}x`);
    ip('-n', name, 'link', 'set', p, 'up');
    ip('-n', name, 'link', 'set', `${p}x`, 'up');
  }
  cli('bridge', 'add', 'br0');
  for (const p of ['p1', 'p2']) cli('attach', p, '--bridge', 'br0', '--hook', 'xdp');
  const dst = '02:00:00:00:00:02';
  cli('fdb', 'add', dst, '--bridge', 'br0', '--port', 'p2');
  const status = JSON.parse(cli('status', '--json')) as Array<{ iface: string; ifindex: number; hook: string; progId: number }>;
  const p1 = status.find((s) => s.iface === 'p1' && s.hook === 'xdp')!;
  const frame = Buffer.alloc(64);
  Buffer.from(dst.replace(/:/g, ''), 'hex').copy(frame, 0);
  Buffer.from('020000000001', 'hex').copy(frame, 6);
  frame.writeUInt16BE(0x0800, 12);
  const ctx = Buffer.alloc(24);
  ctx.writeUInt32LE(frame.length, 4);
  ctx.writeUInt32LE(p1.ifindex, 12);
  return {
    prog: BpfProgram.fromId(p1.progId), frame, ctx, inst: instancePaths(name),
    destroy: () => {
      try { cli('detach', '--all'); cli('bridge', 'del', 'br0', '--force'); } catch { /* best effort */ }
      ip('netns', 'del', name);
    },
  };
}

const withSites = setup(ns);
let without: ReturnType<typeof setup> | undefined;
let noCache: ReturnType<typeof setup> | undefined;
try {
  without = setup(`${ns}n`, NOMON);
  noCache = setup(`${ns}c`, NOCACHE);
  const runs: Array<[string, ReturnType<typeof setup>, number, number]> = [
    ['compiled-out', without, 0, 0], ['no-cache-ctrs', noCache, 0, 0], ...CASES.map(([n, f, smp]) => [n, withSites, f, smp] as [string, ReturnType<typeof setup>, number, number]),
  ];
  const per: Record<string, number[]> = Object.fromEntries(runs.map(([n]) => [n, []]));
  execFileSync('taskset', ['-apc', '0', String(process.pid)]); // the cache is per CPU: stay on one
  const repeat = Number(a.repeat);
  for (const [, t] of runs) t.prog.testRun({ data: t.frame, ctx: t.ctx, repeat: 1000 }); // learn, cache
  for (let r = 0; r < Number(a.reps); r++) {
    for (const [name, t, flags, sample] of runs) {
      setMonitor(t.inst, flags, sample);
      // the kernel's own average (whole ns), which leaves out time the test was preempted: wall-clock time on a
      // shared machine mostly measures the neighbours
      const res = t.prog.testRun({ data: t.frame, ctx: t.ctx, repeat });
      per[name].push(res.durationNs);
      if (res.retval !== 4) throw new Error(`xn_br_xdp returned ${res.retval}, not XDP_REDIRECT`);
    }
  }
  setMonitor(withSites.inst, 0, 0);
  const mean = (x: number[]) => x.reduce((p, q) => p + q, 0) / x.length;
  const median = (x: number[]) => { const y = [...x].sort((p, q) => p - q); const h = y.length >> 1; return y.length % 2 ? y[h] : (y[h - 1] + y[h]) / 2; };
  const base = mean(per['compiled-out']);
  const pct = (m: number, b: number) => `${(((m - b) / b) * 100).toFixed(1)}%`;
  console.log(`xn_br_xdp, cached known unicast, ns per run (mean of ${a.reps} interleaved reps of ${repeat}; each rep is a whole ns)`);
  console.log('compiled-out: no monitor event sites (cache counters in); no-cache-ctrs: no cache counters (monitor sites in, switch off)');
  for (const [name] of runs) {
    const m = mean(per[name]);
    const vs = name === 'compiled-out' ? '' : name === 'no-cache-ctrs' ? `${pct(m, base)} vs compiled out`
      : `${pct(m, base)} vs compiled out${name === 'off' ? `, ${pct(m, mean(per['no-cache-ctrs']))} vs no-cache-ctrs` : ''}`;
    console.log(`${name.padEnd(13)} ${m.toFixed(2)} (median ${median(per[name])}, min ${Math.min(...per[name])}, max ${Math.max(...per[name])})  ${vs}`);
  }
  for (const [, t] of runs) t.prog.close();
} finally {
  noCache?.destroy();
  without?.destroy();
  withSites.destroy();
}
