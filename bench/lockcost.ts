// What the port lock (anti-spoofing) costs the bridge's hit path, measured in
// the kernel with BPF_PROG_TEST_RUN (repeat N: the kernel's ns per run, the
// program alone), as bench/moncost.ts measures the monitor: xn_br_xdp and
// xn_br_tc forward a cached known-unicast IPv4 frame from an unlocked port and
// from a port locked to the frame's MAC and address; with --base DIR, also
// from an unlocked port of objects built before the lock existed (the one
// flag test unlocked ports pay). Rows interleaved rep by rep.
// Not part of `make bench`: node dist/bench/lockcost.js [--reps 15] [--repeat 1000000] [--base DIR]
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { enterNetns } from '../src/dataplane/host.js';
import { BpfProgram } from '../src/sys/libbpf.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const { values: a } = parseArgs({ options: { reps: { type: 'string', default: '15' }, repeat: { type: 'string', default: '1000000' }, base: { type: 'string' } } });
const ip = (...x: string[]) => execFileSync('ip', x, { encoding: 'utf8' });
const SRC_MAC = '02:00:00:00:00:01';
const DST_MAC = '02:00:00:00:00:02';

/** An Ethernet/IPv4/UDP frame 10.0.0.1 → 10.0.0.2, 64 bytes. */
function frame(): Buffer {
  const f = Buffer.alloc(64);
  Buffer.from(DST_MAC.replace(/:/g, ''), 'hex').copy(f, 0);
  Buffer.from(SRC_MAC.replace(/:/g, ''), 'hex').copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  Buffer.from([0x45, 0, 0, 50, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]).copy(f, 14);
  f.writeUInt16BE(1111, 34);
  f.writeUInt16BE(2222, 36);
  f.writeUInt16BE(30, 38);
  return f;
}

/** A test run resolves the ctx's ifindex in the caller's namespace: runs enter the port's first. */
interface Row { prog: BpfProgram; ctx: Buffer; hook: 'xdp' | 'tc'; ns: string }

/** A bridge in a namespace of its own: xdp and tc ports, unlocked (u) and locked (l), and the destination. */
function setup(name: string, objects?: string, locked = true) {
  const env = objects ? { ...process.env, XDPNET_BPF_DIR: objects } : process.env;
  const cli = (...x: string[]) => execFileSync(process.execPath, [CLI, '--netns', name, ...x], { encoding: 'utf8', env });
  ip('netns', 'add', name);
  const ports = ['dst', 'xu', 'tu', ...(locked ? ['xl', 'tl'] : [])];
  for (const p of ports) {
    ip('-n', name, 'link', 'add', p, 'type', 'veth', 'peer', 'name', `${p}x`);
    ip('-n', name, 'link', 'set', p, 'up');
    ip('-n', name, 'link', 'set', `${p}x`, 'up');
  }
  cli('bridge', 'add', 'br0');
  for (const p of ports) {
    const lock = p.endsWith('l') ? ['--lock', '--lock-mac', SRC_MAC, '--lock-ip', '10.0.0.1'] : [];
    cli('attach', p, '--bridge', 'br0', '--hook', p.startsWith('t') ? 'tc' : 'xdp', ...lock);
  }
  cli('fdb', 'add', DST_MAC, '--bridge', 'br0', '--port', 'dst');
  const status = JSON.parse(cli('status', '--json')) as Array<{ iface: string; ifindex: number; hook: string; progId: number }>;
  const row = (p: string): Row => {
    const s = status.find((x) => x.iface === p)!;
    const hook = s.hook as 'xdp' | 'tc';
    const ctx = Buffer.alloc(hook === 'xdp' ? 24 : 44);
    if (hook === 'xdp') {
      ctx.writeUInt32LE(64, 4);
      ctx.writeUInt32LE(s.ifindex, 12);
    } else {
      ctx.writeUInt32LE(s.ifindex, 40);
    }
    return { prog: BpfProgram.fromId(s.progId), ctx, hook, ns: name };
  };
  return {
    rows: Object.fromEntries(ports.filter((p) => p !== 'dst').map((p) => [p, row(p)])) as Record<string, Row>,
    destroy: () => {
      try { cli('detach', '--all'); cli('bridge', 'del', 'br0', '--force'); } catch { /* best effort */ }
      ip('netns', 'del', name);
    },
  };
}

const ns = `xnlc${process.pid}`;
const now = setup(ns);
let base: ReturnType<typeof setup> | undefined;
try {
  if (a.base) base = setup(`${ns}b`, a.base, false);
  const runs: Array<[string, Row]> = [
    ['xdp unlocked', now.rows.xu], ['xdp locked', now.rows.xl], ['tc unlocked', now.rows.tu], ['tc locked', now.rows.tl],
    ...(base ? [['xdp before', base.rows.xu], ['tc before', base.rows.tu]] as Array<[string, Row]> : []),
  ];
  const f = frame();
  const per: Record<string, number[]> = Object.fromEntries(runs.map(([n]) => [n, []]));
  execFileSync('taskset', ['-apc', '0', String(process.pid)]); // the decision cache is per CPU: stay on one
  const run = (r: Row, repeat: number) => {
    enterNetns(r.ns);
    return r.prog.testRun({ data: f, ctx: r.ctx, repeat });
  };
  for (const [, r] of runs) run(r, 1000); // learn, cache
  const repeat = Number(a.repeat);
  for (let rep = 0; rep < Number(a.reps); rep++) {
    for (const [name, r] of runs) {
      const res = run(r, repeat);
      if (res.retval !== (r.hook === 'xdp' ? 4 : 7)) throw new Error(`${name}: verdict ${res.retval}, not a redirect`);
      per[name].push(res.durationNs);
    }
  }
  const mean = (x: number[]) => x.reduce((p, q) => p + q, 0) / x.length;
  console.log(`cached known unicast, ns per run (mean of ${a.reps} interleaved reps of ${repeat}; each rep is a whole ns)`);
  for (const [name] of runs) {
    const m = mean(per[name]);
    const ref = name.startsWith('xdp') ? mean(per['xdp unlocked']) : mean(per['tc unlocked']);
    const vs = name.endsWith('unlocked') ? '' : `${(((m - ref) / ref) * 100).toFixed(1)}% vs ${name.split(' ')[0]} unlocked`;
    console.log(`${name.padEnd(13)} ${m.toFixed(2)} (min ${Math.min(...per[name])}, max ${Math.max(...per[name])})  ${vs}`);
  }
  for (const [, r] of runs) r.prog.close();
} finally {
  base?.destroy();
  now.destroy();
}
