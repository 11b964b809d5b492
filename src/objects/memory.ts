// What the dataplane's maps cost in kernel memory: how the per-CPU caches are
// sized from the configuration, the kernel's own accounting of a map (the
// memlock figure of /proc/PID/fdinfo), and an estimate of it from a map's
// definition so docs/memory.md can be computed for hosts we do not have.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { XdpnetError } from '../errors.js';
import { BpfMap, type BpfObject } from '../sys/libbpf.js';
import { setConsts } from './btf.js';
import type { InstancePaths } from './paths.js';

/**
 * A cache with one part per possible CPU (CPU * part + set * ways + way), one
 * cache line an entry. `part` is a power of two from `minPart` to the size
 * compiled into the object (`maxPart`); the BPF side reads it from the
 * `const volatile` named `part`. perFlow entries a flow a CPU keeps its set
 * conflicts rare (bpf/lib/bridge.h and nat_hot.h say what was measured).
 */
export interface PerCpuCache {
  map: string;
  part: string;
  entryBytes: number;
  ways: number;
  perFlow: number;
  minPart: number;
  maxPart: number;
}

/** The bridge's decision cache (bpf/lib/bridge.h): keys are MAC pairs a port and VLAN. */
export const BR_CACHE: PerCpuCache = {
  map: 'xn_br_cache', part: 'xn_br_cache_part', entryBytes: 64, ways: 2, perFlow: 16, minPart: 256, maxPart: 16384,
};
/** NAT's hot copies of steady flows (bpf/lib/nat_hot.h), sized from the conntrack capacity. */
export const NAT_HOT: PerCpuCache = {
  map: 'xn_nat_hot', part: 'xn_nat_hot_part', entryBytes: 64, ways: 4, perFlow: 4, minPart: 256, maxPart: 32768,
};

/** Flows (active MAC pairs) a bridge cache is sized for when `bridge add --flows` is not given. */
export const BRIDGE_FLOWS = { default: 4096, min: 1, max: 16_777_216 } as const;

const pow2ceil = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/**
 * Entries a CPU for `flows` flows spread over `cpus` CPUs: perFlow entries for
 * each flow a CPU sees with RSS spreading them evenly (a CPU that gets more
 * misses more: a cache, not a table, so it only costs speed).
 */
export function cachePart(c: PerCpuCache, flows: number, cpus: number): number {
  return Math.min(c.maxPart, Math.max(c.minPart, pow2ceil((c.perFlow * flows) / cpus)));
}

/** max_entries of a pinned map, if there is one. */
export function pinnedEntries(inst: InstancePaths, map: string): number | undefined {
  return BpfMap.usePin(join(inst.maps, map), (m) => m.info.maxEntries);
}

/**
 * Sizes cache c of an opened object before load: as pinned when the instance
 * has it (libbpf adopts a pin only if max_entries matches, and every program
 * must index it alike), else for `flows`. Returns the part a CPU.
 */
export function sizeCache(o: BpfObject, inst: InstancePaths, c: PerCpuCache, flows: number, cpus: number): number {
  const pinned = pinnedEntries(inst, c.map);
  const part = pinned === undefined ? cachePart(c, flows, cpus) : pinned / cpus;
  if (!Number.isInteger(part) || part < c.ways || part > c.maxPart || (part & (part - 1)) !== 0) {
    throw new XdpnetError(`${join(inst.maps, c.map)} has ${pinned} entries: not a power-of-two part of ${c.ways} to ${c.maxPart} for each of ${cpus} CPUs`,
      `it was made for another CPU count or build: detach everything in this instance and remove the pin`);
  }
  o.setMaxEntries(c.map, part * cpus);
  setConsts(o, { [c.part]: part });
  return part;
}

const RINGBUF = 27; // BPF_MAP_TYPE_RINGBUF

/**
 * The kernel's charge for a map (memlock in its fdinfo: bpf_map_memory_usage()), in bytes. Before
 * 6.4 that figure is an estimate, (key + value) × entries, which is 0 for a ring buffer: there the
 * ring's own formula (6.4's ringbuf_map_mem_usage) stands in.
 */
export function mapMemlock(m: BpfMap): number {
  const line = /^memlock:\s*(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${m.fd}`, 'utf8'));
  if (!line) throw new XdpnetError(`no memlock in the fdinfo of map ${m.name}`);
  const bytes = Number(line[1]);
  if (bytes === 0 && m.info.type === RINGBUF) return mapBytes({ kind: 'ringbuf', keySize: 0, valueSize: 0, maxEntries: m.info.maxEntries }, 0);
  return bytes;
}

/** bpf_map_type names of the maps xdpnet makes. */
export const MAP_TYPE_NAMES: Record<number, string> = {
  1: 'hash', 2: 'array', 5: 'percpu_hash', 6: 'percpu_array', 9: 'lru_hash', 11: 'lpm_trie', 25: 'devmap_hash', [RINGBUF]: 'ringbuf',
};

export interface MapMemory {
  map: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  bytes: number;
}

/** Every map pinned in the instance with the kernel's charge for it, biggest first. */
export function instanceMemory(inst: InstancePaths): MapMemory[] {
  if (!existsSync(inst.maps)) return [];
  return readdirSync(inst.maps).flatMap((name) => BpfMap.usePin(join(inst.maps, name), (m): MapMemory => ({
    map: name, type: m.info.type, keySize: m.info.keySize, valueSize: m.info.valueSize, maxEntries: m.info.maxEntries,
    bytes: mapMemlock(m),
  })) ?? []).sort((a, b) => b.bytes - a.bytes || a.map.localeCompare(b.map));
}

// The kernel's formulas (kernel/bpf/arraymap.c array_map_mem_usage,
// hashtab.c htab_map_mem_usage), with its struct sizes on x86-64 as measured
// against memlock by test/bpf/memory.test.ts.
const PAGE = 4096;
const ARRAY_HEAD = 312; // struct bpf_array without its values
const HTAB_HEAD = 832; // struct bpf_htab
const HTAB_BUCKET = 16; // struct bucket
const HTAB_ELEM = 48; // struct htab_elem without key and value
const HTAB_LOCKS = 8 * 4; // HASHTAB_MAP_LOCK_COUNT ints a CPU
const RINGBUF_HEAD = 304; // struct bpf_ringbuf_map
const RINGBUF_META_PAGES = 3; // RINGBUF_NR_META_PAGES: the header, the consumer's and the producer's page
const up8 = (n: number) => Math.ceil(n / 8) * 8;
const pageUp = (n: number) => Math.ceil(n / PAGE) * PAGE;

export interface MapShape {
  kind: 'array' | 'percpu-array' | 'hash' | 'lru-hash' | 'ringbuf';
  keySize: number;
  valueSize: number;
  maxEntries: number;
  mmapable?: boolean;
}

/** Estimated kernel memory of a map of this shape on a host with `cpus` possible CPUs. */
export function mapBytes(s: MapShape, cpus: number): number {
  const v = up8(s.valueSize);
  switch (s.kind) {
    case 'array':
      return s.mmapable ? pageUp(ARRAY_HEAD) + pageUp(s.maxEntries * v) : ARRAY_HEAD + s.maxEntries * v;
    case 'percpu-array':
      return ARRAY_HEAD + s.maxEntries * (8 + v * cpus);
    case 'hash':
    case 'lru-hash': {
      // a preallocated hash keeps one spare element a CPU (not an LRU one) and a pointer to it
      const lru = s.kind === 'lru-hash';
      const elems = s.maxEntries + (lru ? 0 : cpus);
      return HTAB_HEAD + HTAB_BUCKET * pow2ceil(s.maxEntries) + HTAB_LOCKS * cpus
        + (HTAB_ELEM + up8(s.keySize) + v) * elems + (lru ? 0 : 8 * cpus);
    }
    case 'ringbuf': {
      // its pages, and page pointers for them with the data pages mapped twice (wrap-around reads)
      const data = s.maxEntries / PAGE;
      return RINGBUF_HEAD + (RINGBUF_META_PAGES + data) * PAGE + (RINGBUF_META_PAGES + 2 * data) * 8;
    }
  }
}
