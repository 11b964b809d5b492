// Network-namespace topologies for benchmark scenarios. Every namespace is
// named xnb-<pid>-<role>, so runs never collide and nothing outside them is
// touched; interfaces are created directly inside their namespaces. destroy()
// (also run on SIGINT/SIGTERM and at exit) kills our children by PID, detaches
// our XDP and tc programs and deletes the namespaces, which deletes their veths.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { enterNetns } from '../src/dataplane/host.js';
import { BenchObject, type BenchConsts, type BenchProgram } from '../src/objects/bench.js';
import { tcFlavour } from '../src/dataplane/links.js';
import {
  BPF_TCX_INGRESS, BPF_XDP, XDP_FLAGS_DRV_MODE, clsactCreate, clsactDestroy, linkCreate, tcFilterAttach, tcFilterDetach,
} from '../src/sys/libbpf.js';
import { CLONE_NEWNET, close as closeFd, ifNameToIndex, openRead, setns } from '../src/sys/libc.js';

const PREFIX = 'xnb-';
/** br_netfilter is loaded: it hooks every new namespace's bridges unless told not to. */
export const BR_NETFILTER = existsSync('/proc/sys/net/bridge');
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** One end of a veth pair: namespace role, interface name, optional address (CIDR). */
export interface End {
  ns: string;
  name: string;
  addr?: string;
}

const live = new Set<Topology>();
let cleanupInstalled = false;

export class Topology {
  readonly prefix = `${PREFIX}${process.pid}`;
  private namespaces: string[] = [];
  private links: number[] = [];
  private objects: BenchObject[] = [];
  private children = new Set<ChildProcess>();
  private xdpnetRoles = new Set<string>(); // namespaces whose xdpnet state destroy() removes
  private stops: Array<() => void> = []; // daemons started in our namespaces (e.g. Open vSwitch), stopped before they go
  private tcFilters: Array<() => void> = []; // clsact filters (and the qdiscs we added), removed in their namespace

  /** queues: rx and tx queues of every veth (a veth redirect picks the peer's queue by CPU). */
  constructor(readonly queues = 1) {
    installCleanup();
    live.add(this);
  }

  nsName(role: string): string {
    return `${this.prefix}-${role}`;
  }

  /** A namespace with lo up and IPv6 off (no autoconf/DAD frames polluting counters). */
  addNs(role: string): string {
    const ns = this.nsName(role);
    ip('netns', 'add', ns);
    this.namespaces.push(ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    this.sysctl(role, { 'net.ipv6.conf.all.disable_ipv6': 1, 'net.ipv6.conf.default.disable_ipv6': 1 });
    return ns;
  }

  /** Sets per-namespace sysctls (net.*) inside the role's namespace only. */
  sysctl(role: string, values: Record<string, string | number>): void {
    const kv = Object.entries(values).map(([k, v]) => `${k}=${v}`);
    execFileSync('ip', ['netns', 'exec', this.nsName(role), 'sysctl', '-qw', ...kv]);
  }

  veth(a: End, b: End): void {
    // Made from inside a's namespace: Debian's 6.1 looks for an existing link of the new name in
    // the caller's namespace, so `ip link add eth0 netns X` failed (EEXIST) in a VM with its own
    // eth0 (6.18 looks in X).
    const q = this.queues > 1 ? ['numtxqueues', String(this.queues), 'numrxqueues', String(this.queues)] : [];
    ip('-n', this.nsName(a.ns), 'link', 'add', a.name, ...q, 'type', 'veth', 'peer', 'name', b.name, ...q, 'netns', this.nsName(b.ns));
    for (const e of [a, b]) {
      // A veth passes an skb to its peer's receive queue of the same number as
      // the transmit queue it picked: XPS makes that the sending CPU's, so each
      // CPU keeps its own queue end to end, as a NIC's RSS and XPS would.
      for (let i = 0; this.queues > 1 && i < this.queues; i++) {
        execFileSync('ip', ['netns', 'exec', this.nsName(e.ns), 'sh', '-c', `echo ${(1 << i).toString(16)} > /sys/class/net/${e.name}/queues/tx-${i}/xps_cpus`]);
      }
      if (e.addr) ip('-n', this.nsName(e.ns), 'addr', 'add', e.addr, 'dev', e.name);
      ip('-n', this.nsName(e.ns), 'link', 'set', e.name, 'up');
    }
  }

  /** A Linux bridge (STP off, so ports forward at once) over existing interfaces. */
  bridge(role: string, name: string, ports: string[]): void {
    const ns = this.nsName(role);
    ip('-n', ns, 'link', 'add', name, 'type', 'bridge', 'stp_state', '0');
    for (const p of ports) ip('-n', ns, 'link', 'set', p, 'master', name);
    ip('-n', ns, 'link', 'set', name, 'up');
  }

  /** A static bridge FDB entry: mac is reached through port dev. */
  fdb(role: string, mac: string, dev: string): void {
    execFileSync('bridge', ['-n', this.nsName(role), 'fdb', 'add', mac, 'dev', dev, 'master', 'static']);
  }

  /** Runs the xdpnet CLI inside the role's namespace; destroy() removes what it made there. */
  xdpnet(role: string, ...args: string[]): string {
    this.xdpnetRoles.add(role);
    return execFileSync(process.execPath, [CLI, '--netns', this.nsName(role), ...args], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'],
    });
  }

  private removeXdpnet(role: string): void {
    const cli = (...args: string[]) =>
      execFileSync(process.execPath, [CLI, '--netns', this.nsName(role), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    cli('nat', 'flush');
    cli('detach', '--all');
    for (const b of JSON.parse(cli('bridge', 'show', '--json')) as Array<{ name: string }>) cli('bridge', 'del', b.name, '--force');
  }

  mac(role: string, iface: string): string {
    return (JSON.parse(ip('-n', this.nsName(role), '-j', 'link', 'show', 'dev', iface)) as Array<{ address: string }>)[0].address;
  }

  ifindex(role: string, iface: string): number {
    return this.inNs(role, () => ifNameToIndex(iface));
  }

  /** Runs fn with this thread in the role's namespace (ifindexes, links resolve there). */
  inNs<T>(role: string, fn: () => T): T {
    const home = openRead('/proc/thread-self/ns/net');
    if (home < 0) throw new Error(`cannot open own network namespace: errno ${-home}`);
    try {
      enterNetns(this.nsName(role));
      return fn();
    } finally {
      const ret = setns(home, CLONE_NEWNET);
      closeFd(home);
      if (ret < 0) throw new Error(`cannot return to the original network namespace: errno ${-ret}`);
    }
  }

  /** Loads one bench program with its consts and attaches it (native XDP) to iface. */
  attachXdp(role: string, iface: string, program: BenchProgram, consts: BenchConsts = {}): BenchObject {
    const obj = BenchObject.load(program, consts);
    this.objects.push(obj);
    this.inNs(role, () => {
      const ifindex = ifNameToIndex(iface);
      if (!ifindex) throw new Error(`no interface ${iface} in ${this.nsName(role)}`);
      this.links.push(linkCreate(obj.prog.fd, ifindex, BPF_XDP, XDP_FLAGS_DRV_MODE, `${program} to ${iface}`));
    });
    return obj;
  }

  /**
   * Loads one bench program with its consts and attaches it to iface's tc
   * ingress as xdpnet attaches its own tc programs (src/dataplane/links.ts):
   * a tcx link where the kernel has tcx, else a direct-action filter on a
   * clsact qdisc; XDPNET_TC=tcx|clsact forces one (the xdpnet rows inherit it).
   */
  attachTc(role: string, iface: string, program: BenchProgram, consts: BenchConsts = {}): BenchObject {
    const obj = BenchObject.load(program, consts);
    this.objects.push(obj);
    const what = `${program} to ${iface} (tc ingress)`;
    this.inNs(role, () => {
      const ifindex = ifNameToIndex(iface);
      if (!ifindex) throw new Error(`no interface ${iface} in ${this.nsName(role)}`);
      if (tcFlavour(obj.prog) === 'tcx') {
        this.links.push(linkCreate(obj.prog.fd, ifindex, BPF_TCX_INGRESS, 0, what));
        return;
      }
      const added = clsactCreate(ifindex, what);
      const f = { ifindex, handle: 1, priority: 1 };
      try {
        tcFilterAttach(obj.prog.fd, f, what);
      } catch (e) {
        if (added) clsactDestroy(ifindex, what);
        throw e;
      }
      this.tcFilters.push(() => this.inNs(role, () => {
        tcFilterDetach(f, what);
        if (added) clsactDestroy(ifindex, what);
      }));
    });
    return obj;
  }

  /**
   * Runs a command to completion as a tracked child; resolves with its stdout.
   * It leads its own process group, and destroy() kills the group by the
   * child's PID: whatever the command started goes with it.
   */
  run(what: string, cmd: string, args: string[]): Promise<string> {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
    this.children.add(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d));
    return new Promise((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => {
        this.children.delete(child);
        if (code === 0) resolve(out);
        else reject(new Error(`${what} failed (${signal ?? `exit ${code}`})`));
      });
    });
  }

  /**
   * Moves the receive work of every veth outside the role's namespace to its own
   * kernel thread (threaded NAPI) pinned to cpu: what each device's XDP and
   * stack do then runs there, not in the sender's softirq. Call once the
   * programs are attached (a veth has NAPI only with XDP or GRO on).
   */
  threadNapi(exceptRole: string, cpu: number): void {
    // PID → name (napi/DEV-ID), from one pgrep: no reading /proc of a thread that may be gone meanwhile
    const napiThreads = () => new Map(execFileSync('pgrep', ['-l', '^napi/'], { encoding: 'utf8' }).split('\n').filter(Boolean).map((l) => l.split(' ') as [string, string]));
    let before: Map<string, string>;
    try {
      before = napiThreads();
    } catch {
      before = new Map(); // pgrep exits 1 when there is none
    }
    const where = this.namespaces.filter((ns) => ns !== this.nsName(exceptRole));
    const devs = new Set<string>();
    for (const ns of where) {
      for (const l of JSON.parse(ip('-n', ns, '-j', 'link', 'show', 'type', 'veth')) as Array<{ ifname: string }>) {
        try {
          execFileSync('ip', ['netns', 'exec', ns, 'sh', '-c', `echo 1 > /sys/class/net/${l.ifname}/threaded`], { stdio: 'ignore' });
          devs.add(l.ifname);
        } catch {
          /* no NAPI (no XDP, no GRO): its frames are received where they are sent */
        }
      }
    }
    // New since we started and named for one of our devices (napi/DEV-ID): not another run's.
    const mine = [...napiThreads()].filter(([p, name]) => !before.has(p) && devs.has(/^napi\/(.+)-\d+$/.exec(name)?.[1] ?? '')).map(([p]) => p);
    if (!mine.length) throw new Error(`no NAPI threads appeared in ${where.join(', ')}`);
    for (const pid of mine) execFileSync('taskset', ['-p', '-c', String(cpu), pid], { stdio: 'ignore' });
  }

  /** Runs fn on destroy(), before the namespaces are deleted (last registered, first run). */
  onDestroy(fn: () => void): void {
    this.stops.push(fn);
  }

  destroy(): void {
    if (!live.delete(this)) return;
    for (const c of this.children) {
      try {
        if (c.pid) process.kill(-c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    this.children.clear();
    for (const stop of this.stops.splice(0).reverse()) {
      try {
        stop();
      } catch (e) {
        console.error(`warning: ${(e as Error).message}`);
      }
    }
    for (const role of this.xdpnetRoles) {
      try {
        this.removeXdpnet(role);
      } catch (e) {
        console.error(`warning: could not remove xdpnet state of ${role}: ${(e as Error).message}`);
      }
    }
    this.xdpnetRoles.clear();
    for (const off of this.tcFilters.splice(0)) {
      try {
        off();
      } catch (e) {
        console.error(`warning: ${(e as Error).message}`);
      }
    }
    for (const fd of this.links.splice(0)) closeFd(fd); // closing the link detaches the program
    for (const o of this.objects.splice(0)) o.close();
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        ip('netns', 'del', ns);
      } catch (e) {
        console.error(`warning: could not delete netns ${ns}: ${(e as Error).message}`);
      }
    }
  }
}

function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  const all = () => [...live].forEach((t) => t.destroy());
  process.once('exit', all);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      all();
      process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
    });
  }
}

/** Deletes namespaces left by earlier runs whose process is gone (killed with SIGKILL). */
export function reapStale(): void {
  for (const line of ip('netns', 'list').split('\n')) {
    const m = /^(xnb-(\d+)-\S+)/.exec(line);
    if (!m || isAlive(Number(m[2]))) continue;
    try {
      ip('netns', 'del', m[1]);
    } catch {
      /* raced with another reaper */
    }
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
