// bpf/counter.bpf.c: counts rx packets/bytes per interface and passes them.
import type { BpfProgram } from '../sys/libbpf.js';
import { loadInInstance, type InstancePaths } from './paths.js';
import { STATS_MAPS } from './stats.js';

export const COUNTER = {
  object: 'counter',
  programs: { xdp: 'xn_count_xdp', tc: 'xn_count_tc' },
  maps: STATS_MAPS,
} as const;

/**
 * Loads one entry program of the counter object, adopting (or creating) the
 * instance's pinned maps. The caller owns the returned program's fd until it
 * is attached; the object is closed when the program is.
 */
export function loadCounter(inst: InstancePaths, hook: 'xdp' | 'tc'): { prog: BpfProgram; close(): void } {
  const name = COUNTER.programs[hook];
  const obj = loadInInstance(inst, COUNTER.object, [name]);
  return { prog: obj.program(name), close: () => obj.close() };
}
