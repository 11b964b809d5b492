// bpf/counter.bpf.c: counts rx packets/bytes per interface and passes them.
import type { BpfProgram } from '../sys/libbpf.js';
import { openPrograms, type BuildSpec, type ProgramSet } from './builds.js';
import type { InstancePaths } from './paths.js';
import { STATS_MAPS } from './stats.js';

export const COUNTER = {
  object: 'counter',
  programs: { xdp: 'xn_count_xdp', tc: 'xn_count_tc' },
  maps: STATS_MAPS,
} as const;

/** The counter's programs in the instance (loaded once, then from their pins: objects/builds.ts). */
export function counterPrograms(inst: InstancePaths, o: { upgrade?: boolean } = {}): ProgramSet {
  return openPrograms(inst, COUNTER.object, undefined, o);
}

export const COUNTER_BUILD: BuildSpec = { object: COUNTER.object, programs: Object.values(COUNTER.programs) };

/** One entry program of the counter; its fd is valid until close(). */
export function loadCounter(inst: InstancePaths, hook: 'xdp' | 'tc'): { prog: BpfProgram; close(): void } {
  const set = counterPrograms(inst);
  return { prog: set.program(COUNTER.programs[hook]), close: () => set.close() };
}
