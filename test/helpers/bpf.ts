// Loading objects for BPF_PROG_RUN tests: a private pin root on bpffs per
// test file, removed afterwards.
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBpffs } from '../../src/dataplane/host.js';
import { readCounters } from '../../src/dataplane/slots.js';
import { u32 } from '../../src/objects/codec.js';
import { mapBytes, type MapShape } from '../../src/objects/memory.js';
import { STATS_MAPS } from '../../src/objects/stats.js';
import { objectPath } from '../../src/objects/paths.js';
import { BPF_TCX_INGRESS, BpfObject, clsactCreate, linkCreate, tcFilterAttach, tcFilterDetach } from '../../src/sys/libbpf.js';
import { close } from '../../src/sys/libc.js';
import { ROOT, tcFlavour } from './sys.js';

/**
 * What the kernel charges a map of this shape (memlock in its fdinfo). Kernels before 6.4 (no
 * map_mem_usage ops: array_map_mem_usage is the array map's) put an estimate there instead of the real
 * use: max_entries x (key + value, value per CPU for per-CPU maps, rounded to 8), rounded to a page
 * (bpf_map_memory_footprint). mapBytes (and docs/memory.md) is the real use.
 */
export function kernelCharge(shape: MapShape, cpus: number): number {
  realUsage ??= /^\S+ \S+ array_map_mem_usage$/m.test(readFileSync('/proc/kallsyms', 'utf8'));
  if (realUsage) return mapBytes(shape, cpus);
  const up = (x: number, to: number) => Math.ceil(x / to) * to;
  const value = shape.kind === 'percpu-array' ? up(shape.valueSize, 8) * cpus : shape.valueSize;
  return up(shape.maxEntries * up(shape.keySize + value, 8), 4096);
}
let realUsage: boolean | undefined;

export const XDP = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;
export const TC = { OK: 0, SHOT: 2, REDIRECT: 7 } as const;

/** A struct xdp_md for BPF_PROG_RUN: a frame of len bytes received on ifindex. */
export function xdpMd(ifindex: number, len: number): Buffer {
  const ctx = Buffer.alloc(24);
  ctx.writeUInt32LE(len, 4); // data_end: the kernel wants the frame's length
  ctx.writeUInt32LE(ifindex, 12); // ingress_ifindex
  return ctx;
}
/** A struct __sk_buff for BPF_PROG_RUN, up to ifindex: a frame received on ifindex. */
export function skbMd(ifindex: number): Buffer {
  const ctx = Buffer.alloc(44);
  ctx.writeUInt32LE(ifindex, 40);
  return ctx;
}

/** The built object the loader would pick: build/bpf, or build/bpf-compat (XDPNET_BPF_COMPAT=1, or a kernel without bpf_loop). */
export function builtObject(name: string): string {
  return objectPath(name);
}
export function fixtureObject(name: string): string {
  return join(ROOT, 'build/fixtures', `${name}.bpf.o`);
}

export class PinRoot {
  readonly dir: string;
  private objects: BpfObject[] = [];
  constructor(tag: string) {
    this.dir = join(ensureBpffs(), `xdpnet-test-${process.pid}-${tag}`);
    mkdirSync(this.dir, { recursive: true });
  }
  open(path: string, configure?: (o: BpfObject) => void): BpfObject {
    const o = BpfObject.open(path, { pinRoot: this.dir });
    this.objects.push(o);
    configure?.(o);
    return o.load();
  }
  cleanup(): void {
    for (const o of this.objects.splice(0)) o.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Gives the interfaces counter slots 1, 2, … in the object's maps, as attaching them would; returns them by ifindex. */
export function giveSlots(o: BpfObject, ifindexes: number[]): Map<number, number> {
  const slots = o.map(STATS_MAPS.ifSlots);
  for (const k of [...slots.keys()]) slots.delete(k);
  ifindexes.forEach((ifindex, i) => slots.update(u32(ifindex), u32(i + 1)));
  return new Map(ifindexes.map((ifindex, i) => [ifindex, i + 1]));
}

/** An interface's counters summed over CPUs, found through its slot (undefined: it has none). */
export function ifCounters(o: BpfObject, ifindex: number) {
  return readCounters(o.map(STATS_MAPS.ifSlots), o.map(STATS_MAPS.ifStats)).get(ifindex);
}

/**
 * Runs a tc program on an interface's ingress the way the CLI would (a tcx
 * link, or a direct-action filter on a clsact qdisc where the kernel has no
 * tcx or XDPNET_TC=clsact says so); returns what takes it off again.
 */
export function tcIngress(progFd: number, ifindex: number, what: string): () => void {
  if (tcFlavour() === 'clsact') {
    const f = { ifindex, handle: 1, priority: 1 };
    clsactCreate(ifindex, what);
    tcFilterAttach(progFd, f, what);
    return () => void tcFilterDetach(f, what);
  }
  const fd = linkCreate(progFd, ifindex, BPF_TCX_INGRESS, 0, what);
  return () => close(fd);
}
