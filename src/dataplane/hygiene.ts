// State hygiene: xdpnet's pins are root's alone (dirs 0700, pins 0600), a
// symlink planted in the state tree is refused, and the state of a network
// namespace that no longer exists is found (and removed by the daemon). An
// instance's state lives on the host's bpffs under the namespace's name, so
// it outlives `ip netns del`; each namespace's identity (its netns cookie,
// which the kernel never reuses; the nsfs inode is reused at once) is
// recorded next to its lock, and state recorded for another namespace of the
// same name is stale: a new namespace never inherits it.
import { chmodSync, existsSync, lstatSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errnoName, XdpnetError } from '../errors.js';
import { listInstances, type InstancePaths } from '../objects/paths.js';
import { netnsCookie } from '../sys/libc.js';
import { bpffsRoot, LOCK_DIR, lockFile, withNetns } from './host.js';

const idFile = (instance: string) => join(LOCK_DIR, `${instance}.netns`);

/** The namespace's identity (its netns cookie), or undefined when it does not exist. */
export function netnsId(name: string): string | undefined {
  if (!existsSync(`/var/run/netns/${name}`)) return undefined;
  try {
    const cookie = withNetns(name, netnsCookie);
    if (typeof cookie === 'number') throw new XdpnetError(`cannot read the netns cookie of ${name}: ${errnoName(-cookie)}`);
    return `cookie:${cookie}`;
  } catch (e) {
    if (!existsSync(`/var/run/netns/${name}`)) return undefined; // deleted meanwhile
    throw e;
  }
}

/** Why an instance's state has no namespace to belong to any more, or undefined while it does. */
export function staleReason(inst: InstancePaths): string | undefined {
  if (!inst.name.startsWith('ns-')) return undefined;
  const name = inst.name.slice(3);
  const id = netnsId(name);
  if (id === undefined) return `network namespace ${name} no longer exists`;
  const recorded = existsSync(idFile(inst.name)) ? readFileSync(idFile(inst.name), 'utf8').trim() : '';
  // no record, or an empty one (an older xdpnet killed while writing it): nothing says it is another namespace's
  if (recorded && recorded !== id) return `network namespace ${name} was deleted and made again; this state was the old one's`;
  return undefined;
}

export function staleInstances(): Array<{ inst: InstancePaths; reason: string }> {
  return listInstances().flatMap((inst) => {
    const reason = staleReason(inst);
    return reason ? [{ inst, reason }] : [];
  });
}

/** Removes a stale instance's pins (its interfaces went with its namespace, so nothing is attached through them). */
export function removeStale(inst: InstancePaths): void {
  rmSync(inst.dir, { recursive: true, force: true });
  rmSync(idFile(inst.name), { force: true });
}

/**
 * The last act of a lock holder: an instance whose state is gone leaves neither its identity
 * record nor its lock file in /run (otherwise two files stay for every namespace ever used).
 * Only while holding the lock, at the end: a locker that finds its file unlinked locks the new one.
 */
export function forgetIfGone(inst: InstancePaths): void {
  if (existsSync(inst.dir)) return;
  rmSync(idFile(inst.name), { force: true });
  rmSync(lockFile(inst.name), { force: true });
}

/**
 * Before a command changes an instance: state left by an earlier namespace of
 * the same name goes (it is not this namespace's), then this namespace's
 * identity is recorded.
 */
export function claimInstance(inst: InstancePaths): void {
  if (!inst.name.startsWith('ns-')) return;
  const id = netnsId(inst.name.slice(3));
  if (id === undefined) return; // entering it fails next, with its own error
  if (staleReason(inst)) removeStale(inst);
  const file = idFile(inst.name);
  if (existsSync(file) && readFileSync(file, 'utf8').trim() === id) return;
  // Whole or not at all: a record a kill left empty would make the next command take this
  // namespace's state for another's and remove it (make test's crash trials did).
  writeFileSync(`${file}.new`, `${id}\n`, { mode: 0o600 });
  renameSync(`${file}.new`, file);
}

/** Refuses to work through a symlink anywhere in xdpnet's state tree (one planted there could redirect pins). */
export function refuseSymlinks(inst: InstancePaths): void {
  const top = join(bpffsRoot(), 'xdpnet');
  for (const dir of stateDirs(inst)) {
    if (!existsSync(dir) && !isLink(dir)) continue;
    if (isLink(dir)) throw planted(dir);
    if (dir === top) continue;
    for (const f of readdirSync(dir)) if (isLink(join(dir, f))) throw planted(join(dir, f));
  }
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** xdpnet's state folders: the top, the instance's, and the instance's maps, links and programs (one folder a build). */
function stateDirs(inst: InstancePaths): string[] {
  const builds = existsSync(inst.progs) && !isLink(inst.progs) ? readdirSync(inst.progs).map((d) => join(inst.progs, d)).filter((d) => isLink(d) || lstatSync(d).isDirectory()) : [];
  return [join(bpffsRoot(), 'xdpnet'), inst.dir, inst.maps, inst.links, inst.progs, ...builds];
}

function planted(path: string): XdpnetError {
  return new XdpnetError(`refusing to use ${path}: it is a symbolic link, and xdpnet makes none`, `inspect it, then remove it: rm ${path}`);
}

/** Dirs 0700, pins 0600: only root reads or changes the dataplane's state (bpffs honours modes for non-root users). */
export function tightenModes(inst: InstancePaths): void {
  const top = join(bpffsRoot(), 'xdpnet');
  for (const dir of stateDirs(inst)) {
    if (!existsSync(dir) || isLink(dir)) continue;
    chmodSync(dir, 0o700);
    if (dir === top) continue;
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      const s = lstatSync(p);
      if (s.isDirectory()) chmodSync(p, 0o700); // a build's programs, a clsact qdisc's mark
      else if (!s.isSymbolicLink()) chmodSync(p, 0o600);
    }
  }
}
