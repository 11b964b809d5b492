// The TCP rows' congestion control. Setting it inside a namespace is refused
// (EPERM) unless the host's net.ipv4.tcp_allowed_congestion_control lists it,
// and some hosts allow only "reno bbr". A run adds it to the host's list and
// puts the list back when it ends, however it ends: each run that relies on
// the addition holds a file in HOLD_DIR naming the list as it was before any
// run changed it; the last holder to go restores that list, and a later run
// does it for holders killed with SIGKILL (reapCongestionHolds).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ALLOWED = '/proc/sys/net/ipv4/tcp_allowed_congestion_control';
const AVAILABLE = '/proc/sys/net/ipv4/tcp_available_congestion_control';
const DEFAULT = '/proc/sys/net/ipv4/tcp_congestion_control';
export const HOLD_DIR = '/run/xdpnet-bench';
const own = () => join(HOLD_DIR, `cc-${process.pid}.json`);

/** What the containers run and why. */
export interface CcChoice {
  /** Set in each container; null: they keep the host's default. */
  cc: string | null;
  /** Said in the results when the host was changed or the wish could not be met. */
  note?: string;
}

const read = (p: string) => readFileSync(p, 'utf8').trim();
const list = (p: string) => read(p).split(/\s+/).filter(Boolean);

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Hold files of live runs (the dead ones' removed), with the list from before the first change. */
function holders(): Array<{ pid: number; original: string }> {
  if (!existsSync(HOLD_DIR)) return [];
  return readdirSync(HOLD_DIR).flatMap((f) => {
    const m = /^cc-(\d+)\.json$/.exec(f);
    if (!m) return [];
    const pid = Number(m[1]);
    try {
      const { original } = JSON.parse(readFileSync(join(HOLD_DIR, f), 'utf8')) as { original: string };
      if (pid === process.pid || isAlive(pid)) return [{ pid, original }];
    } catch {
      /* half written: treat as gone */
    }
    rmSync(join(HOLD_DIR, f), { force: true });
    return [];
  });
}

/** Restores the list when no live run holds it any more (ours released first). */
function restoreIfLast(original: string): void {
  if (holders().some((h) => h.pid !== process.pid)) return;
  if (read(ALLOWED) !== original) writeFileSync(ALLOWED, original);
}

let held: string | undefined;

/** Gets `cc` allowed for the run's namespaces; falls back to the host's default, saying so. */
export function allowCongestionControl(cc: string): CcChoice {
  const fallback = (why: string): CcChoice => ({ cc: null, note: `${why}: the containers use the host's default, ${read(DEFAULT)}` });
  if (!list(AVAILABLE).includes(cc)) {
    try {
      execFileSync('modprobe', [`tcp_${cc}`], { stdio: 'ignore' });
    } catch {
      /* built in, or not there at all: the list says */
    }
    if (!list(AVAILABLE).includes(cc)) return fallback(`${cc} is not available in this kernel (${AVAILABLE}: ${read(AVAILABLE)})`);
  }
  const others = holders().filter((h) => h.pid !== process.pid);
  const allowed = list(ALLOWED);
  if (allowed.includes(cc) && !others.length) return { cc };
  try {
    if (held === undefined) {
      held = others[0]?.original ?? allowed.join(' ');
      mkdirSync(HOLD_DIR, { recursive: true });
      writeFileSync(own(), JSON.stringify({ original: held }));
      process.once('exit', releaseCongestionControl);
    }
    if (!allowed.includes(cc)) writeFileSync(ALLOWED, [...allowed, cc].join(' '));
  } catch (e) {
    releaseCongestionControl();
    return fallback(`cannot add ${cc} to net.ipv4.tcp_allowed_congestion_control (${(e as Error).message})`);
  }
  return { cc, note: held.split(' ').includes(cc) ? undefined
    : `${cc} added to net.ipv4.tcp_allowed_congestion_control ("${held}") for the run, restored after` };
}

/** Puts the host's list back unless another live run still needs the addition. */
export function releaseCongestionControl(): void {
  if (held === undefined) return;
  const original = held;
  held = undefined;
  rmSync(own(), { force: true });
  try {
    restoreIfLast(original);
  } catch (e) {
    console.error(`warning: could not restore ${ALLOWED} to "${original}": ${(e as Error).message}`);
  }
}

/** Restores the list for runs that died holding it (SIGKILL: no exit handler ran). */
export function reapCongestionHolds(): void {
  if (!existsSync(HOLD_DIR)) return;
  const dead = readdirSync(HOLD_DIR).flatMap((f) => {
    const m = /^cc-(\d+)\.json$/.exec(f);
    if (!m || isAlive(Number(m[1]))) return [];
    try {
      return [(JSON.parse(readFileSync(join(HOLD_DIR, f), 'utf8')) as { original: string }).original];
    } catch {
      return [];
    } finally {
      rmSync(join(HOLD_DIR, f), { force: true });
    }
  });
  if (dead.length && held === undefined) restoreIfLast(dead[0]);
}
