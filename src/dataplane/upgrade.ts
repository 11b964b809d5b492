// Hitless upgrade: the installed build's programs replace the running ones in
// place, and the maps stay. In order, so that a failure or a kill leaves one
// build or the other fully working on every hook, and a re-run finishes:
//   1. every object in use is checked against the instance's map layout
//      record (objects/layout.ts); one that does not fit stops it all here
//   2. each is loaded once (adopting the maps) and its programs pinned
//      under progs/<object>-<build> (objects/builds.ts)
//   3. every hook is switched: bpf_link_update for XDP and tcx links, a
//      filter replaced at its handle and priority for clsact, devmap entries
//      rewritten with the new egress program, tracepoint links re-pinned
//   4. the old builds' program pins go.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BRIDGE, BRIDGE_BUILD } from '../objects/bridge.js';
import { BuildChanged, forgetBuilds, installedBuild, openPrograms, pinnedBuilds, type BuildSpec, type ProgramSet } from '../objects/builds.js';
import { COUNTER_BUILD } from '../objects/counter.js';
import { MONITOR, OBSERVER_BUILD, replaceObservers } from '../objects/monitor.js';
import { NAT_BUILD } from '../objects/nat.js';
import type { InstancePaths } from '../objects/paths.js';
import { progId } from '../sys/libbpf.js';
import { ifIndexToName } from '../sys/libc.js';
import { repointEgress } from './bridge-maps.js';
import { hookName, listLinks, programName, replaceProgram } from './links.js';

const BUILDS: BuildSpec[] = [COUNTER_BUILD, BRIDGE_BUILD, NAT_BUILD, OBSERVER_BUILD];

export interface Replaced {
  /** link: XDP or tcx link; filter: clsact filter; devmap: a port's egress program; observer: a tracepoint link. */
  kind: 'link' | 'filter' | 'devmap' | 'observer';
  iface: string | null;
  ifindex: number | null;
  hook: string | null;
  program: string;
  from: number;
  to: number;
}

export interface UpgradeReport {
  /** Objects whose build changed: the builds that ran, the one that runs now. */
  builds: Array<{ object: string; from: string[]; to: string }>;
  replaced: Replaced[];
}

/** The object and full name of a running program, by the name the kernel keeps (15 characters). */
function ownerOf(kernelName: string): { spec: BuildSpec; program: string } | undefined {
  for (const spec of BUILDS) {
    const program = spec.programs.find((p) => p.slice(0, 15) === kernelName);
    if (program) return { spec, program };
  }
  return undefined;
}

/** Objects the instance uses: pinned builds, or programs running on its hooks (an instance made before builds were pinned). */
function objectsInUse(inst: InstancePaths): BuildSpec[] {
  const used = new Set(BUILDS.filter((b) => pinnedBuilds(inst, b.object).length));
  for (const l of listLinks(inst)) {
    const o = l.iface ? ownerOf(programName(l.progId) ?? '') : undefined;
    if (o) used.add(o.spec);
  }
  if (MONITOR.observer.programs.some((p) => existsSync(join(inst.links, `observe-${p}`)))) used.add(OBSERVER_BUILD);
  return BUILDS.filter((b) => used.has(b));
}

/**
 * `xdpnet upgrade`: moves every hook of the instance onto the installed
 * build, keeping the maps. Refuses, changing nothing, when a map's layout
 * differs from the record. Idempotent: a second run replaces nothing.
 */
export function upgradeInstance(inst: InstancePaths): UpgradeReport {
  const specs = objectsInUse(inst);
  // 1. every object checked before anything is loaded or touched
  const before = specs.map((s) => ({ s, running: pinnedBuilds(inst, s.object), ...installedBuild(inst, s.object, s.configure?.(inst)) }));
  // 2. loaded once each (or opened from the pins a killed run left)
  const sets = new Map<BuildSpec, ProgramSet>();
  try {
    for (const { s } of before) sets.set(s, openPrograms(inst, s.object, s.configure?.(inst), { upgrade: true }));
    const replaced = [...replaceHooks(inst, sets)];
    // 4. the old programs go once nothing runs them
    for (const set of sets.values()) forgetBuilds(inst, set.object, set.build);
    const builds = before.flatMap(({ s, running }) => {
      const to = sets.get(s)!.build;
      return running.length === 1 && running[0] === to ? [] : [{ object: s.object, from: running.filter((b) => b !== to), to }];
    });
    return { builds, replaced };
  } finally {
    for (const set of sets.values()) set.close();
  }
}

/** 3. Every hook onto the new programs, each in one step. */
function* replaceHooks(inst: InstancePaths, sets: Map<BuildSpec, ProgramSet>): Generator<Replaced> {
  for (const l of listLinks(inst)) {
    if (!l.iface) continue; // defunct: nothing runs there
    const o = ownerOf(programName(l.progId) ?? '');
    const set = o && sets.get(o.spec);
    if (!o || !set) continue; // not one of ours (cannot happen through xdpnet)
    const prog = set.program(o.program);
    const to = progId(prog.fd, o.program);
    if (to === l.progId) continue;
    replaceProgram(inst, l, prog);
    yield { kind: l.tc === 'clsact' ? 'filter' : 'link', iface: l.iface, ifindex: l.ifindex, hook: hookName(l), program: o.program, from: l.progId, to };
  }
  const bridge = sets.get(BRIDGE_BUILD);
  if (bridge) {
    const egress = bridge.program(BRIDGE.programs.egress);
    const to = progId(egress.fd, BRIDGE.programs.egress);
    for (const e of repointEgress(inst, egress, to)) {
      yield { kind: 'devmap', iface: ifIndexToName(e.ifindex) ?? null, ifindex: e.ifindex, hook: 'devmap', program: BRIDGE.programs.egress, from: e.from, to };
    }
  }
  const observer = sets.get(OBSERVER_BUILD);
  if (observer) {
    for (const r of replaceObservers(inst, observer)) yield { kind: 'observer', iface: null, ifindex: null, hook: 'tracepoint', ...r };
  }
}

/**
 * Runs a load; when it finds another build of an object running in the
 * instance (a new one was installed), upgrades the instance first and loads
 * again: re-running an attach after installing a build upgrades in place.
 */
export function withInstalledBuild<T>(inst: InstancePaths, load: () => T): T {
  try {
    return load();
  } catch (e) {
    if (!(e instanceof BuildChanged)) throw e;
    upgradeInstance(inst);
    return load();
  }
}
