// bpf/mapcount.bpf.c: how many entries a big hash table (the conntrack
// table) holds, counted in the kernel, so a metrics scrape copies no entry
// out (walking 2M conntrack entries from here took 1-1.4 s). The best way the
// kernel runs, found by loading each (not guessed from the kernel's version):
//   'kfunc' (Linux 6.6+): the hash map's own per-CPU element count, which the
//           kernel keeps through inserts, deletes and LRU evictions, read with
//           bpf_map_sum_elem_count() from an iter/bpf_map program: no walk.
//   'walk'  (older kernels): an iter/bpf_map_elem program visits every element
//           in the kernel and counts it.
//   'batch' (a kernel that refuses both): every key read out in batches.
// Each is exact: the entries in the map when the count runs.
import { release } from 'node:os';
import { BpfObject, type BpfIter, type BpfMap } from '../sys/libbpf.js';
import { Btf } from './btf.js';
import { requireKernelFeatures } from './features.js';
import { objectPath, objectSet } from './paths.js';

export const MAPCOUNT = {
  object: 'mapcount',
  programs: { kfunc: 'xn_cnt_sum', walk: 'xn_cnt_walk' },
} as const;

export const COUNT_METHODS = ['kfunc', 'walk', 'batch'] as const;
export type CountMethod = (typeof COUNT_METHODS)[number];

/** Counts a hash map's entries. One per process (a daemon keeps it between scrapes); nothing of it is pinned. */
export class MapCounter {
  private sumIter?: BpfIter;

  private constructor(
    readonly method: CountMethod,
    private obj?: BpfObject,
    private bss?: BpfMap,
    private targetAt = 0, // offset of xn_cnt_target in .bss
  ) {}

  /** The counter using `method`, or the best one the kernel loads. Throws when the kernel refuses `method`. */
  static open(method?: CountMethod): MapCounter {
    if (method) return MapCounter.load(method);
    for (const m of COUNT_METHODS) {
      try {
        return MapCounter.load(m);
      } catch {
        // the kernel refused this program (no such kfunc, no element iterators): the next way
      }
    }
    throw new Error('unreachable: batch needs no program');
  }

  private static load(method: CountMethod): MapCounter {
    if (method === 'batch') return new MapCounter(method);
    requireKernelFeatures(release(), objectSet().set);
    const obj = BpfObject.open(objectPath(MAPCOUNT.object), { programs: [MAPCOUNT.programs[method]] });
    try {
      const at = new Btf(obj.btf()).variable('.bss', 'xn_cnt_target');
      obj.load();
      const bss = [...obj.mapNames()].find((n) => n.endsWith('.bss'));
      if (!at || !bss) throw new Error(`${obj.path} has no xn_cnt_target in .bss`);
      return new MapCounter(method, obj, obj.map(bss), at.offset);
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  /** Zeroes the programs' per-read state and names the map xn_cnt_sum counts. */
  private reset(targetId = 0): void {
    const v = Buffer.alloc(this.bss!.info.valueSize);
    v.writeUInt32LE(targetId, this.targetAt);
    this.bss!.update(Buffer.alloc(4), v);
  }

  /** Entries in a hash map (hash, LRU hash, and their per-CPU kinds). */
  entries(map: BpfMap): number {
    if (this.method === 'batch') return map.count();
    const prog = MAPCOUNT.programs[this.method];
    let it: BpfIter;
    if (this.method === 'kfunc') {
      this.reset(map.info.id);
      it = this.sumIter ??= this.obj!.attachIter(prog); // over every map: one link serves every count
    } else {
      this.reset();
      it = this.obj!.attachIter(prog, map);
    }
    try {
      const out = it.read();
      if (out.length !== 8) throw new Error(`${prog} wrote ${out.length} bytes for map ${map.name} (id ${map.info.id}), not 8`);
      return Number(out.readBigInt64LE(0));
    } finally {
      if (it !== this.sumIter) it.close();
    }
  }

  close(): void {
    this.sumIter?.close();
    this.obj?.close();
  }
}

let shared: MapCounter | undefined;

/** The process's counter, loaded on first use. */
export function mapCounter(): MapCounter {
  return (shared ??= MapCounter.open());
}
