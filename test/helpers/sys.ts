// Namespaces, veths and the CLI for root-tier tests. Everything created here
// is recorded and removed by cleanup(), even when a test fails.
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { COUNTER } from '../../src/objects/counter.js';
import { BpfObject, probeTcx } from '../../src/sys/libbpf.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = `${ROOT}dist/src/cli/main.js`;

let probed: 'tcx' | 'clsact' | undefined;

/**
 * The tc flavour the CLI attaches with in this run: XDPNET_TC's (suites run
 * again with clsact, see e2e/clsact.test.ts), else what the kernel has (tcx
 * on 6.6+, clsact on e.g. 6.1), probed as links.ts does.
 */
export function tcFlavour(): 'tcx' | 'clsact' {
  const env = process.env.XDPNET_TC;
  if (env === 'tcx' || env === 'clsact') return env;
  if (!probed) {
    // A pin root of its own: without one libbpf pins the object's maps in the bpffs root, and leaves them.
    const pins = mkdtempSync('/sys/fs/bpf/xdpnet-probe-');
    try {
      const o = BpfObject.open(`${ROOT}build/bpf/${COUNTER.object}.bpf.o`, { programs: [COUNTER.programs.tc], pinRoot: pins }).load();
      try {
        probed = probeTcx(o.program(COUNTER.programs.tc).fd) ? 'tcx' : 'clsact';
      } finally {
        o.close();
      }
    } finally {
      rmSync(pins, { recursive: true, force: true });
    }
  }
  return probed;
}

/** The ingress tc filters of an interface, by `tc` itself (clsact only; tcx links are not filters). */
export function tcFilters(ns: string, dev: string): Array<{ pref: number; kind: string; options?: { handle?: string; prog?: { id: number } } }> {
  const out = spawnSync('ip', ['netns', 'exec', ns, 'tc', '-j', 'filter', 'show', 'dev', dev, 'ingress'], { encoding: 'utf8' });
  if (out.status) return []; // no clsact qdisc
  return (JSON.parse(out.stdout || '[]') as Array<{ pref: number; kind: string; options?: { handle?: string; prog?: { id: number } } }>)
    .filter((f) => f.options); // tc lists each priority's classifier once more without options
}

let seq = 0;
const created: string[] = [];

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A fresh network namespace with lo up; name is unique to this process. */
export function netns(tag: string): string {
  const name = `xnt${process.pid}-${tag}${seq++}`;
  sh('ip', ['netns', 'add', name]);
  created.push(name);
  sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

/** A veth pair between two namespaces, up, with optional addresses. */
export function veth(nsA: string, a: string, nsB: string, b: string, addrA?: string, addrB?: string): void {
  sh('ip', ['-n', nsA, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', nsB]);
  if (addrA) sh('ip', ['-n', nsA, 'addr', 'add', addrA, 'dev', a]);
  if (addrB) sh('ip', ['-n', nsB, 'addr', 'add', addrB, 'dev', b]);
  sh('ip', ['-n', nsA, 'link', 'set', a, 'up']);
  sh('ip', ['-n', nsB, 'link', 'set', b, 'up']);
}

export function inNs(ns: string, cmd: string, args: string[]): SpawnSyncReturns<string> {
  return spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8' });
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A time limit stretched by XDPNET_TIMEOUT_SCALE, which vagrant/guest/test.sh sets under qemu's
 * emulation (everything there runs about ten times slower). Tests and hooks with a limit of their own
 * need it: theirs overrides vitest's --testTimeout.
 */
export const slow = (ms: number): number => ms * Math.max(1, Number(process.env.XDPNET_TIMEOUT_SCALE) || 1);

/** 30 s, stretched by how overloaded the machine is (the load average per CPU), up to 5 minutes: a hung
 * command still fails, a slow machine does not fail a test that checks state, not speed. */
export const cliTimeoutMs = (): number => slow(Math.round(Math.min(300_000, 30_000 * Math.max(1, loadavg()[0] / availableParallelism()))));

export function xdpnet(args: string[], env: Record<string, string> = {}, wrap: string[] = []): CliResult {
  const argv = [...wrap, process.execPath, CLI, ...args];
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', env: { ...process.env, ...env }, timeout: cliTimeoutMs(), maxBuffer: 256 << 20 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the CLI, expecting success with nothing on stderr; returns its stdout. */
export function ok(args: string[]): string {
  const r = xdpnet(args);
  // Other engineers' runs on this machine take the same state lock: waiting for it is not an error.
  expect(r.stderr.replace('xdpnet: waiting for another xdpnet command to finish\n', ''), `xdpnet ${args.join(' ')}`).toBe('');
  expect(r.code, `xdpnet ${args.join(' ')}`).toBe(0);
  return r.stdout;
}

/** The CLI bound to a namespace, named when called (suites make theirs in beforeAll): run, ok (nothing on stderr), okJson. */
export function cliIn(ns: () => string) {
  const run = (...args: string[]) => xdpnet(['--netns', ns(), ...args]);
  const okIn = (...args: string[]) => ok(['--netns', ns(), ...args]);
  return { run, ok: okIn, okJson: <T>(...args: string[]): T => JSON.parse(okIn(...args, '--json')) as T };
}

/** The MAC address of an interface in a namespace. */
const nsLink = (ns: string, dev: string) => JSON.parse(sh('ip', ['-n', ns, '-j', 'link', 'show', 'dev', dev]))[0] as { address: string; ifindex: number };
export const nsMac = (ns: string, dev = 'eth0') => nsLink(ns, dev).address;
export const nsIfindex = (ns: string, dev: string) => nsLink(ns, dev).ifindex;

/** Detaches everything the namespaces had, deletes their bridges (so nothing stays pinned) and the namespaces. */
export function cleanup(): void {
  for (const ns of created.splice(0)) {
    xdpnet(['--netns', ns, 'nat', 'flush']);
    xdpnet(['--netns', ns, 'detach', '--all']);
    const bridges = xdpnet(['--netns', ns, 'bridge', 'show', '--json']);
    for (const b of bridges.code ? [] : (JSON.parse(bridges.stdout) as Array<{ name: string }>)) xdpnet(['--netns', ns, 'bridge', 'del', b.name, '--force']);
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(`/run/xdpnet/agent/ns-${ns}`, { recursive: true, force: true }); // a killed agent's socket
    rmSync(`/run/xdpnet/cni/ns-${ns}`, { recursive: true, force: true }); // the CNI plugin's records of containers whose DEL never came
  }
}

/** Runs fn with the process on CPU 0 only: cached decisions are per CPU, a test that migrated between frames would miss them. */
export function onCpu0<T>(fn: () => T): T {
  const cpus = sh('taskset', ['-pc', String(process.pid)]).trim().split(': ')[1];
  sh('taskset', ['-apc', '0', String(process.pid)]);
  try {
    return fn();
  } finally {
    sh('taskset', ['-apc', cpus, String(process.pid)]);
  }
}

/** Blocks this thread for ms (tests that wait for a datapath clock to move). */
export const sleep = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
