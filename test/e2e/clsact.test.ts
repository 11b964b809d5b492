// The classic tc path (clsact qdisc + direct-action cls_bpf filter), which
// kernels without tcx (before 6.6: Debian 12's 6.1, Ubuntu 22.04's 5.15) get
// automatically; XDPNET_TC=clsact forces it here. First what only filters
// have: sharing the qdisc with someone else's filter, replacing in place,
// recovering after a crash. Then every suite that uses tc runs again on it.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, unlinkSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, CLI, inNs, netns, ROOT, sh, sleep, tcFilters, tcFlavour, veth, xdpnet } from '../helpers/sys.js';

const kernelTc = tcFlavour(); // what the kernel itself offers, probed before forcing clsact
process.env.XDPNET_TC = 'clsact';

const XN_PREF = 0x786e; // links.ts: the interface's own filter
const FOREIGN_PREF = 100; // before ours, like a filter someone added by hand
const FOREIGN_OBJ = `${ROOT}build/fixtures/foreign_tc.bpf.o`;

function ok(args: string[]): string {
  const r = xdpnet(args);
  expect(r.stderr, `xdpnet ${args.join(' ')}`).toBe('');
  expect(r.code, `xdpnet ${args.join(' ')}`).toBe(0);
  return r.stdout;
}

describe('clsact: beside other users\' filters, in place, after a crash', () => {
  let a: string;
  let b: string;
  const tc = (...args: string[]) => sh('ip', ['netns', 'exec', b, 'tc', ...args]);
  const ours = () => tcFilters(b, 'xn1').filter((f) => f.pref === XN_PREF);
  const foreign = () => tcFilters(b, 'xn1').filter((f) => f.pref === FOREIGN_PREF);
  const status = () => JSON.parse(ok(['--netns', b, 'status', '--json'])) as Array<{ iface: string | null; hook: string; tc: string | null; progId: number }>;
  const rx = () => (JSON.parse(ok(['--netns', b, 'stats', '--json'])) as { interfaces: Array<{ rxPackets: number }> }).interfaces[0]?.rxPackets ?? 0;
  /** What the foreign filter counted, read by bpftool from its program's map. */
  const foreignSeen = (): number => {
    const [f] = foreign();
    const prog = JSON.parse(sh('bpftool', ['-j', 'prog', 'show', 'id', String(f.options!.prog!.id)])) as { map_ids: number[] };
    const v = JSON.parse(sh('bpftool', ['-j', 'map', 'lookup', 'id', String(prog.map_ids[0]), 'key', '0', '0', '0', '0'])) as { value: number | string[] };
    return typeof v.value === 'number' ? v.value : Number(Buffer.from(v.value.map((x) => Number(x))).readBigUInt64LE());
  };
  const ping = (n = 10) => {
    const r = inNs(a, 'ping', ['-c', String(n), '-i', '0.01', '-q', '10.212.0.2']);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  };
  /** Pings, and checks that both the foreign filter and xdpnet's counter saw every echo request. */
  const bothRun = () => {
    const before = { f: foreignSeen(), x: rx() };
    ping();
    expect(foreignSeen() - before.f).toBeGreaterThanOrEqual(10);
    expect(rx() - before.x).toBeGreaterThanOrEqual(10);
  };

  beforeAll(() => {
    a = netns('ca');
    b = netns('cb');
    veth(a, 'xn0', b, 'xn1', '10.212.0.1/24', '10.212.0.2/24');
  });
  afterAll(cleanup);

  it('joins a clsact qdisc someone else made, runs after their filter, and leaves both when it goes', () => {
    tc('qdisc', 'add', 'dev', 'xn1', 'clsact');
    tc('filter', 'add', 'dev', 'xn1', 'ingress', 'pref', String(FOREIGN_PREF), 'bpf', 'da', 'obj', FOREIGN_OBJ, 'sec', 'tc');
    const theirs = foreign()[0].options!.prog!.id;
    ok(['--netns', b, 'attach', 'xn1', '--hook', 'tc']);
    const [s] = status();
    expect(s).toMatchObject({ iface: 'xn1', hook: 'tc', tc: 'clsact' });
    expect(ours()).toMatchObject([{ kind: 'bpf', options: { handle: '0x1', prog: { id: s.progId } } }]);
    expect(foreign()).toMatchObject([{ options: { prog: { id: theirs } } }]);
    bothRun();
    ok(['--netns', b, 'detach', 'xn1']);
    expect(ours()).toEqual([]);
    expect(foreign()).toMatchObject([{ options: { prog: { id: theirs } } }]); // untouched
    expect(tc('qdisc', 'show', 'dev', 'xn1')).toMatch(/clsact/); // not ours to delete
    const before = foreignSeen();
    ping();
    expect(foreignSeen() - before).toBeGreaterThanOrEqual(10);
  });

  it('keeps a qdisc it made while someone else\'s filter is on it', () => {
    tc('qdisc', 'del', 'dev', 'xn1', 'clsact');
    ok(['--netns', b, 'attach', 'xn1', '--hook', 'tc']); // xdpnet makes the qdisc now
    tc('filter', 'add', 'dev', 'xn1', 'ingress', 'pref', String(FOREIGN_PREF), 'bpf', 'da', 'obj', FOREIGN_OBJ, 'sec', 'tc');
    bothRun();
    ok(['--netns', b, 'detach', 'xn1']);
    expect(ours()).toEqual([]);
    expect(foreign()).toHaveLength(1);
    expect(tc('qdisc', 'show', 'dev', 'xn1')).toMatch(/clsact/);
  });

  it('a filter left behind without its pin (a crash between filter and pin) is replaced in place, not doubled', () => {
    ok(['--netns', b, 'attach', 'xn1', '--hook', 'tc']);
    const old = status()[0].progId;
    const links = `/sys/fs/bpf/xdpnet/ns-${b}/links`;
    for (const f of readdirSync(links)) if (/-tc-clsact$/.test(f)) unlinkSync(`${links}/${f}`); // what the crash lost
    expect(ours()).toHaveLength(1); // the filter runs on without the pin
    ok(['--netns', b, 'attach', 'xn1', '--hook', 'tc']);
    const [s] = status();
    expect(s.progId).toBe(old); // the same program, pinned once per instance (objects/builds.ts): put back at its filter
    expect(ours()).toMatchObject([{ options: { handle: '0x1', prog: { id: s.progId } } }]);
    expect(foreign()).toHaveLength(1);
    bothRun();
  });

  it('after kill -9 at any point of an attach, the next attach or detach leaves one consistent filter', () => {
    ok(['--netns', b, 'detach', 'xn1']);
    for (const ms of [40, 120, 200, 280, 360]) {
      const p = spawn(process.execPath, [CLI, '--netns', b, 'attach', 'xn1', '--hook', 'tc'], { stdio: 'ignore' });
      sleep(ms);
      p.kill('SIGKILL');
      const again = xdpnet(['--netns', b, 'attach', 'xn1', '--hook', 'tc']); // fails only if the killed one had finished
      expect(again.code === 0 || /already attached/.test(again.stderr), again.stderr).toBe(true);
      const [s] = status();
      expect(s).toMatchObject({ iface: 'xn1', tc: 'clsact' });
      expect(ours()).toMatchObject([{ options: { prog: { id: s.progId } } }]);
      ok(['--netns', b, 'detach', 'xn1']);
      expect(ours()).toEqual([]);
      expect(foreign()).toHaveLength(1);
    }
  });

  it('removes the qdisc it made once it is empty, and nothing stays on bpffs', () => {
    tc('filter', 'del', 'dev', 'xn1', 'ingress', 'pref', String(FOREIGN_PREF));
    tc('qdisc', 'del', 'dev', 'xn1', 'clsact');
    ok(['--netns', b, 'attach', 'xn1', '--hook', 'tc']);
    expect(tc('qdisc', 'show', 'dev', 'xn1')).toMatch(/clsact/);
    ok(['--netns', b, 'detach', 'xn1']);
    expect(tc('qdisc', 'show', 'dev', 'xn1')).not.toMatch(/clsact/);
    expect(existsSync(`/sys/fs/bpf/xdpnet/ns-${b}`)).toBe(false);
  });

  it('a filter deleted behind xdpnet\'s back shows as defunct and a re-attach restores it', () => {
    ok(['--netns', b, 'attach', 'xn1', '--hook', 'tc']);
    tc('filter', 'del', 'dev', 'xn1', 'ingress', 'pref', String(XN_PREF));
    expect(status()).toMatchObject([{ iface: null }]);
    ok(['--netns', b, 'attach', 'xn1', '--hook', 'tc']);
    expect(ours()).toMatchObject([{ options: { prog: { id: status()[0].progId } } }]);
    ok(['--netns', b, 'detach', 'xn1']);
  });
});

// Every suite that uses tc (bridge ports, NAT, VXLAN decap and slow paths, redirects), on clsact.
// Where the kernel has no tcx (6.1, 5.15) their own files already ran on clsact: not again.
if (kernelTc === 'tcx') {
  await import('./cli.test.js');
  await import('./bridge.test.js');
  await import('./bridge-cli.test.js');
  await import('./nat.test.js');
  await import('./vxlan.test.js');
  await import('./hygiene.test.js'); // the qdisc's mark folder among the pins
  await import('./bridge-del.test.js'); // a mark left by a kill before the filter was pinned
}
