// Preconditions every privileged command checks first, each with an error
// that says what is wrong and what to do: root, kernel, bpffs, netns.
import { execFileSync } from 'node:child_process';
import { closeSync, readFileSync, existsSync, fstatSync, mkdirSync, openSync, statSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { XdpnetError } from '../errors.js';
import { CLONE_NEWNET, close, ifIndexToName, ifNameToIndex, mount, openRead, setns, tryLockExclusive, unlock } from '../sys/libc.js';
import { getRoute } from '../sys/rtnl.js';
import { errnoName } from '../errors.js';
import { bpffsRoot } from '../objects/paths.js';

export { bpffsRoot };

const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;
const CAP_BPF = 39n;

/** Effective capabilities of this process (from /proc). */
function capEff(): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

export function requirePrivileges(): void {
  const caps = capEff();
  const has = (c: bigint) => (caps >> c) & 1n;
  if (has(CAP_NET_ADMIN) && (has(CAP_BPF) || has(CAP_SYS_ADMIN))) return;
  throw new XdpnetError(
    'permission denied: xdpnet needs root (CAP_BPF and CAP_NET_ADMIN)',
    'run it as root, e.g. with sudo',
  );
}

/** Lock files, one per instance: namespaces' states are disjoint, so their commands need not wait for each other. */
export const LOCK_DIR = '/run/xdpnet';
export const lockFile = (instance: string) => `${LOCK_DIR}/${instance}.lock`;

/**
 * Serializes the commands that change an instance's state: each reads maps,
 * decides and writes (flood lists, counter slots, rules), so two at once (a
 * CNI runtime adding containers in parallel) could each lose the other's
 * change. Waits for the holder, saying so after a second; returns the
 * release. The lock goes with the process, however it ends.
 */
export function lockState(instance: string): () => void;
/** With a timeout: undefined when the holder keeps the lock longer (a CNI runtime should try again later). */
export function lockState(instance: string, o: { timeoutMs: number }): (() => void) | undefined;
export function lockState(instance: string, o?: { timeoutMs: number }): (() => void) | undefined {
  const file = lockFile(instance);
  const open = () => {
    try {
      mkdirSync(LOCK_DIR, { recursive: true, mode: 0o700 });
      return openSync(file, 'a', 0o600);
    } catch (e) {
      throw new XdpnetError(`cannot open ${file}: ${(e as Error).message}`);
    }
  };
  let fd = open();
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const start = Date.now();
  let said = false;
  for (;;) {
    const r = tryLockExclusive(fd);
    if (r === true && isAtPath(fd, file)) return () => { unlock(fd); closeSync(fd); };
    if (r === true) {
      // The holder removed the file as its last act (its instance was gone, see forgetIfGone):
      // a lock on that file excludes no one any more, the one at the path now does.
      closeSync(fd);
      fd = open();
      continue;
    }
    if (r !== false) throw new XdpnetError(`cannot lock ${file}: ${errnoName(-r)}`);
    if (o && Date.now() - start > o.timeoutMs) {
      closeSync(fd);
      return undefined;
    }
    if (!said && Date.now() - start > 1000) {
      process.stderr.write('xdpnet: waiting for another xdpnet command to finish\n');
      said = true;
    }
    Atomics.wait(nap, 0, 0, 5);
  }
}

function isAtPath(fd: number, file: string): boolean {
  try {
    const [a, b] = [fstatSync(fd), statSync(file)];
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false; // removed
  }
}

/**
 * Turns IPv4 forwarding on for one interface (in the current namespace): neither bpf_fib_lookup
 * nor the kernel routes a packet that arrived on an interface that does not forward. Per
 * interface, not the global ip_forward: only what enters the datapath's own interfaces is routed.
 * 'set' when it was off, 'on' when it already was, 'failed' when it cannot be written.
 */
export function enableForwarding(dev: string): 'set' | 'on' | 'failed' {
  const path = `/proc/sys/net/ipv4/conf/${dev}/forwarding`;
  try {
    if (readFileSync(path, 'utf8').trim() === '1') return 'on';
    writeFileSync(path, '1');
    return 'set';
  } catch {
    return 'failed';
  }
}

/**
 * enableForwarding as the note a command prints: nothing when it was already on, else what it
 * did (why: what needs it) or what the user must do (unless: what is dropped without it).
 */
export function forwardingNotes(dev: string, why: string, unless: string): string[] {
  const r = enableForwarding(dev);
  if (r === 'on') return [];
  return [r === 'set' ? `set net.ipv4.conf.${dev}.forwarding=1 (${why})` : `could not set net.ipv4.conf.${dev}.forwarding=1: set it, or ${unless}`];
}

export function kernelRelease(): string {
  return release();
}

function isBpffs(path: string): boolean {
  // mountinfo: "... mount-point ... - fstype source opts"
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => {
      const [pre, post] = l.split(' - ');
      return pre?.split(' ')[4] === path && post?.startsWith('bpf ');
    });
}

/** The bpffs root xdpnet pins under: mounted on demand, like `mount -t bpf bpf /sys/fs/bpf`. */
export function ensureBpffs(root = bpffsRoot()): string {
  if (isBpffs(root)) return root;
  if (!existsSync(root)) {
    try {
      mkdirSync(root); // not recursive: Node's recursive mkdir spins forever under /proc
    } catch (e) {
      throw bpffsError(root, (e as NodeJS.ErrnoException).code ?? 'error');
    }
  }
  const ret = mount('bpf', root, 'bpf');
  if (ret < 0) throw bpffsError(root, errnoName(-ret));
  return root;
}

function bpffsError(root: string, why: string): XdpnetError {
  return new XdpnetError(
    `bpffs is not mounted at ${root} and mounting it failed: ${why}`,
    `mount it yourself: mount -t bpf bpf ${root}`,
  );
}

/**
 * Moves this process into a named network namespace (as `ip netns` names
 * them) while keeping the host's mounts, so pins stay on the host's bpffs.
 */
export function enterNetns(name: string): void {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new XdpnetError(`invalid network namespace name: ${name}`);
  const fd = openRead(`/var/run/netns/${name}`);
  if (fd < 0) {
    throw new XdpnetError(`network namespace ${name} not found (${errnoName(-fd)})`, 'list them with `ip netns list`');
  }
  const ret = setns(fd, CLONE_NEWNET);
  close(fd);
  if (ret < 0) throw new XdpnetError(`cannot enter network namespace ${name}: ${errnoName(-ret)}`);
}

/**
 * Runs fn inside a named network namespace (none: the current one) and comes
 * back: for work across instances (metrics, --all-namespaces, the daemon), and
 * for the cluster agent, whose own sockets (etcd) stay in the namespace it
 * started in while its dataplane work happens in another.
 */
export function withNetns<T>(name: string | undefined, fn: () => T): T {
  if (!name) return fn();
  const here = openRead('/proc/thread-self/ns/net');
  if (here < 0) throw new XdpnetError(`cannot open this thread's network namespace: ${errnoName(-here)}`);
  try {
    enterNetns(name);
    try {
      return fn();
    } finally {
      if (setns(here, CLONE_NEWNET) < 0) throw new XdpnetError('cannot return to the starting network namespace');
    }
  } finally {
    close(here);
  }
}

/** The network namespace of an instance ("ns-NAME" → NAME; the host's: undefined). */
export const instanceNetns = (instName: string): string | undefined => (instName.startsWith('ns-') ? instName.slice(3) : undefined);

export interface Route { dst: string; dev?: string; gateway?: string; type?: string; prefsrc?: string }

/**
 * The kernel's route to an address (`ip route get`, optionally from a source
 * and out of an interface), asked over rtnetlink in the current namespace;
 * undefined if there is none (or no such interface).
 */
export function routeGet(dst: string, o: { from?: string; oif?: string } = {}): Route | undefined {
  const oif = o.oif ? ifNameToIndex(o.oif) : 0;
  if (o.oif && !oif) return undefined;
  const r = getRoute(dst, { from: o.from, oif });
  if (!r) return undefined;
  const dev = r.oif ? ifIndexToName(r.oif) : undefined;
  return { dst, type: r.type, ...(dev ? { dev } : {}), ...(r.gateway ? { gateway: r.gateway } : {}), ...(r.prefsrc ? { prefsrc: r.prefsrc } : {}) };
}

/**
 * Runs `ip -j ARGS` in the current network namespace (after setns, /sys still
 * shows the host's) and parses its JSON. On failure returns orElse when given
 * (for questions like "is there a route"), else throws naming the command.
 */
export function ipJson<T>(args: string[], orElse?: T): T {
  try {
    return JSON.parse(execFileSync('ip', ['-j', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) || '[]') as T;
  } catch (e) {
    if (orElse !== undefined) return orElse;
    throw new XdpnetError(`ip ${args.join(' ')} failed: ${(e as { stderr?: string }).stderr?.trim() || (e as Error).message}`);
  }
}
