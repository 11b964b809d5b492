// Programs loaded once per instance. Loading an object runs the verifier over
// every program in it (90-150 ms a port under load); so the first attach in an
// instance loads the whole object and pins its programs, and every later
// attach opens the pins (bpf_obj_get) and only makes its link or filter:
//   <inst>/progs/<object>-<build>/<program>
// <build> names what the programs came from: the .bpf.o's bytes, the load-time
// configuration (each map's size, the .rodata consts) and the ids of the
// instance's pinned maps they use (a map replaced since, e.g. a resized cache,
// makes the pinned programs stale). A load pins into <object>-<build>-tmp<pid>
// and renames it, so a build directory is always complete.
// Another build pinned means the installed object changed: BuildChanged, and
// dataplane/upgrade.ts swaps every program of the instance in place.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { release } from 'node:os';
import { basename, join } from 'node:path';
import { XdpnetError } from '../errors.js';
import { BpfMap, BpfObject, BpfProgram, objPin } from '../sys/libbpf.js';
import { requireKernelFeatures, type ObjectSet } from './features.js';
import { checkLayouts, objectLayouts, recordLayouts } from './layout.js';
import { objectPath, objectSet, type InstancePaths } from './paths.js';

/** Tests only: mixed into every build id, so that the same object counts as a new build (forces replacements). */
export const BUILD_SALT_ENV = 'XDPNET_BUILD_SALT';

/** An object's programs in an instance, opened from their pins (or just loaded). */
export interface ProgramSet {
  object: string;
  build: string;
  names: string[];
  /** The program's fd stays the set's: valid until close(). */
  program(name: string): BpfProgram;
  close(): void;
}

/** The instance runs another build of the object: the installed one replaces it with `xdpnet upgrade`. */
export class BuildChanged extends XdpnetError {
  constructor(readonly object: string, readonly running: string[], readonly installed: string | undefined, netns?: string) {
    super(`the installed ${object}.bpf.o (build ${installed ?? 'new'}) differs from the one this instance runs (build ${running.join(', ')})`,
      `replace the running programs in place: xdpnet${netns ? ` --netns ${netns}` : ''} upgrade`);
  }
}

export type Configure = (o: BpfObject) => void;

/** How an object is loaded in an instance: its name, programs and load-time configuration. */
export interface BuildSpec {
  object: string;
  programs: readonly string[];
  configure?: (inst: InstancePaths) => Configure;
}

const buildDir = (inst: InstancePaths, object: string, build: string) => join(inst.progs, `${object}-${build}`);
const TMP = /-tmp(\d+)$/;

/** Builds of the object with pinned programs in the instance. */
export function pinnedBuilds(inst: InstancePaths, object: string): string[] {
  if (!existsSync(inst.progs)) return [];
  return readdirSync(inst.progs).filter((d) => d.startsWith(`${object}-`) && !TMP.test(d)).map((d) => d.slice(object.length + 1));
}

/** Removes the object's pinned programs but those of `keep` (links and filters hold what they run). */
export function forgetBuilds(inst: InstancePaths, object: string, keep?: string): void {
  for (const b of pinnedBuilds(inst, object)) if (b !== keep) rmSync(buildDir(inst, object, b), { recursive: true, force: true });
}

/** The pinned program of a build, opened (the caller closes it). */
export function pinnedProgram(inst: InstancePaths, object: string, build: string, name: string): BpfProgram {
  return BpfProgram.fromPin(join(buildDir(inst, object, build), name));
}

/** Leftovers of a load killed before its rename (its process is gone). */
function removeDeadTmp(inst: InstancePaths): void {
  if (!existsSync(inst.progs)) return;
  for (const d of readdirSync(inst.progs)) {
    const m = TMP.exec(d);
    if (m && !existsSync(`/proc/${m[1]}`)) rmSync(join(inst.progs, d), { recursive: true, force: true });
  }
}

interface Prepared {
  obj: BpfObject;
  names: string[];
  /** Of the file and configuration; with the map ids it makes the build id. */
  config: string;
  /** undefined while a map the object pins does not exist yet (the load makes it, so it is a new build anyway). */
  build: string | undefined;
}

function prepare(inst: InstancePaths, object: string, configure?: Configure, programs?: string[]): Prepared {
  const { set } = objectSet();
  requireKernelFeatures(release(), set); // a clear error naming what is missing, not a verifier log
  const path = objectPath(object);
  const obj = BpfObject.open(path, { pinRoot: inst.maps, programs });
  try {
    configure?.(obj);
    const h = createHash('sha256').update(readFileSync(path)).update(`\0${process.env[BUILD_SALT_ENV] ?? ''}\0`);
    for (const m of obj.mapSpecs()) {
      h.update(`${m.name}:${m.maxEntries}:${m.keySize}:${m.valueSize}\0`);
      if (m.initial && !m.pinPath) h.update(m.initial); // .rodata: load-time consts
    }
    const config = h.digest('hex');
    return { obj, names: programs ?? obj.programNames(), config, build: buildId(obj, config, set) };
  } catch (e) {
    obj.close();
    throw e;
  }
}

// Compat builds are named compat-<hash>: never the id of a normal build, and `status` tells which set runs.

function buildId(obj: BpfObject, config: string, set: ObjectSet): string | undefined {
  const h = createHash('sha256').update(config);
  for (const m of obj.mapSpecs()) {
    if (!m.pinPath) continue;
    const id = BpfMap.usePin(m.pinPath, (x) => x.info.id);
    if (id === undefined) return undefined;
    h.update(`${basename(m.pinPath)}=${id}\0`);
  }
  return `${set === 'compat' ? 'compat-' : ''}${h.digest('hex').slice(0, 16)}`;
}

/** The object sets the instance's pinned programs come from. */
export function runningSets(inst: InstancePaths): ObjectSet[] {
  if (!existsSync(inst.progs)) return [];
  const sets = new Set<ObjectSet>();
  for (const d of readdirSync(inst.progs)) if (!TMP.test(d)) sets.add(/-compat-[0-9a-f]{16}$/.test(d) ? 'compat' : 'normal');
  return [...sets].sort();
}

const complete = (dir: string, names: string[]) => names.every((n) => existsSync(join(dir, n)));

/**
 * The object's programs in the instance: the pinned ones when they are of the
 * installed build, else the object is checked against the instance's map
 * layouts, loaded once (adopting or creating the pinned maps) and its
 * programs pinned. Another build already pinned throws BuildChanged unless
 * `upgrade` (the caller then replaces what runs, see dataplane/upgrade.ts).
 */
export function openPrograms(inst: InstancePaths, object: string, configure?: Configure, o: { upgrade?: boolean; netns?: string } = {}): ProgramSet {
  removeDeadTmp(inst);
  const p = prepare(inst, object, configure);
  const { obj, names } = p;
  try {
    if (p.build && complete(buildDir(inst, object, p.build), names)) {
      obj.close();
      return fromPins(inst, object, p.build, names);
    }
    const others = pinnedBuilds(inst, object).filter((b) => b !== p.build);
    if (others.length && !o.upgrade) throw new BuildChanged(object, others, p.build, o.netns);
    const layouts = objectLayouts(obj);
    checkLayouts(inst, object, layouts);
    obj.load();
    recordLayouts(inst, layouts);
    const build = p.build ?? buildId(obj, p.config, objectSet().set)!;
    const dir = buildDir(inst, object, build);
    const tmp = `${dir}-tmp${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true, mode: 0o700 });
    for (const n of names) objPin(obj.program(n).fd, join(tmp, n));
    rmSync(dir, { recursive: true, force: true }); // an incomplete one (not made by this code)
    renameSync(tmp, dir);
    return { object, build, names, program: (n) => obj.program(n), close: () => obj.close() };
  } catch (e) {
    obj.close();
    throw e;
  }
}

function fromPins(inst: InstancePaths, object: string, build: string, names: string[]): ProgramSet {
  const open = new Map<string, BpfProgram>();
  return {
    object, build, names,
    program(n) {
      if (!names.includes(n)) throw new XdpnetError(`program ${n} not found in ${object}.bpf.o`);
      let p = open.get(n);
      if (!p) open.set(n, (p = pinnedProgram(inst, object, build, n)));
      return p;
    },
    close() {
      for (const p of open.values()) p.close();
      open.clear();
    },
  };
}

/**
 * What the installed object would be in this instance, checked against the
 * map layouts (throws naming every map that does not fit), without loading
 * or changing anything: `upgrade` checks every object before it touches one.
 */
export function installedBuild(inst: InstancePaths, object: string, configure?: Configure): { build: string | undefined; pinned: boolean } {
  const p = prepare(inst, object, configure);
  try {
    if (p.build && complete(buildDir(inst, object, p.build), p.names)) return { build: p.build, pinned: true };
    checkLayouts(inst, object, objectLayouts(p.obj));
    return { build: p.build, pinned: false };
  } finally {
    p.obj.close();
  }
}

/** Creates (or adopts) the object's pinned maps without loading a program (bridges exist before their ports). */
export function pinMaps(inst: InstancePaths, object: string, configure?: Configure): void {
  const { obj } = prepare(inst, object, configure, []);
  try {
    const layouts = objectLayouts(obj);
    checkLayouts(inst, object, layouts);
    obj.load();
    recordLayouts(inst, layouts);
  } finally {
    obj.close();
  }
}
