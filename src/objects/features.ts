// What xdpnet's BPF objects need from the running kernel, probed before the
// first load (libbpf loads a tiny program or map per feature) instead of
// guessed from the version string, which distributions' backports make
// unreliable. A test checks these tables against the helper calls and map
// types of the built objects, so they cannot drift from the C code.
import { existsSync } from 'node:fs';
import { XdpnetError } from '../errors.js';
import { probeHelper, probeMapFlags, probeMapType, probeProgType } from '../sys/libbpf.js';

export const PROG_TYPES = { tc: 3 /* SCHED_CLS */, xdp: 6, tracing: 26 /* tp_btf: the monitor's observer; iter: objects/mapcount.ts */ } as const;
export type ProgKind = keyof typeof PROG_TYPES;

interface Feature { name: string; since: string }

/** Program types, by uapi number. */
export const PROGS: Record<number, Feature> = {
  3: { name: 'BPF_PROG_TYPE_SCHED_CLS (tc programs)', since: '4.1' },
  6: { name: 'BPF_PROG_TYPE_XDP', since: '4.8' },
  26: { name: 'BPF_PROG_TYPE_TRACING with kernel BTF (tp_btf programs)', since: '5.5' },
};

/** Map types, by uapi number. */
export const MAPS: Record<number, Feature> = {
  1: { name: 'BPF_MAP_TYPE_HASH', since: '3.19' },
  2: { name: 'BPF_MAP_TYPE_ARRAY', since: '3.19' },
  5: { name: 'BPF_MAP_TYPE_PERCPU_HASH', since: '4.6' },
  6: { name: 'BPF_MAP_TYPE_PERCPU_ARRAY', since: '4.6' },
  9: { name: 'BPF_MAP_TYPE_LRU_HASH', since: '4.10' },
  11: { name: 'BPF_MAP_TYPE_LPM_TRIE', since: '4.11' },
  25: { name: 'BPF_MAP_TYPE_DEVMAP_HASH', since: '5.4' },
  27: { name: 'BPF_MAP_TYPE_RINGBUF', since: '5.8' },
};

export const BPF_F_MMAPABLE = 1 << 10;
/** Map flags, probed on an array map. */
export const MAP_FLAGS: Record<number, Feature> = {
  [BPF_F_MMAPABLE]: { name: 'BPF_F_MMAPABLE (memory-mapped array maps)', since: '5.5' },
};

/** Helpers, by uapi number, and the program types that call them. */
export const HELPERS: Record<number, Feature & { progs: ProgKind[] }> = {
  1: { name: 'bpf_map_lookup_elem', since: '3.19', progs: ['tc', 'xdp', 'tracing'] },
  2: { name: 'bpf_map_update_elem', since: '3.19', progs: ['tc', 'xdp', 'tracing'] },
  3: { name: 'bpf_map_delete_elem', since: '3.19', progs: ['tc', 'xdp'] },
  5: { name: 'bpf_ktime_get_ns', since: '4.1', progs: ['tc', 'xdp', 'tracing'] },
  7: { name: 'bpf_get_prandom_u32', since: '4.1', progs: ['tc', 'xdp'] },
  8: { name: 'bpf_get_smp_processor_id', since: '4.1', progs: ['tc', 'xdp'] },
  9: { name: 'bpf_skb_store_bytes', since: '4.1', progs: ['tc'] },
  11: { name: 'bpf_l4_csum_replace', since: '4.1', progs: ['tc'] },
  13: { name: 'bpf_clone_redirect', since: '4.2', progs: ['tc'] },
  18: { name: 'bpf_skb_vlan_push', since: '4.3', progs: ['tc'] },
  19: { name: 'bpf_skb_vlan_pop', since: '4.3', progs: ['tc'] },
  23: { name: 'bpf_redirect', since: '4.4', progs: ['tc', 'xdp'] },
  26: { name: 'bpf_skb_load_bytes', since: '4.5', progs: ['tc'] },
  34: { name: 'bpf_get_hash_recalc', since: '4.8', progs: ['tc'] },
  38: { name: 'bpf_skb_change_tail', since: '4.9', progs: ['tc'] },
  39: { name: 'bpf_skb_pull_data', since: '4.9', progs: ['tc'] },
  43: { name: 'bpf_skb_change_head', since: '4.10', progs: ['tc'] },
  44: { name: 'bpf_xdp_adjust_head', since: '4.10', progs: ['xdp'] },
  50: { name: 'bpf_skb_adjust_room', since: '4.13', progs: ['tc'] },
  51: { name: 'bpf_redirect_map', since: '4.14', progs: ['xdp'] },
  54: { name: 'bpf_xdp_adjust_meta', since: '4.15', progs: ['xdp'] },
  65: { name: 'bpf_xdp_adjust_tail', since: '4.18', progs: ['xdp'] },
  69: { name: 'bpf_fib_lookup', since: '4.18', progs: ['tc', 'xdp'] },
  118: { name: 'bpf_jiffies64', since: '5.5', progs: ['tc', 'xdp'] },
  127: { name: 'bpf_seq_write', since: '5.8', progs: ['tracing'] },
  131: { name: 'bpf_ringbuf_reserve', since: '5.8', progs: ['tc', 'xdp', 'tracing'] },
  132: { name: 'bpf_ringbuf_submit', since: '5.8', progs: ['tc', 'xdp', 'tracing'] },
  152: { name: 'bpf_redirect_neigh', since: '5.10', progs: ['tc'] },
  155: { name: 'bpf_redirect_peer', since: '5.10', progs: ['tc'] },
  160: { name: 'bpf_ktime_get_coarse_ns', since: '5.11', progs: ['tc', 'xdp'] },
  163: { name: 'bpf_check_mtu', since: '5.12', progs: ['tc', 'xdp'] },
  181: { name: 'bpf_loop', since: '5.17', progs: ['tc', 'xdp'] },
  188: { name: 'bpf_xdp_get_buff_len', since: '5.18', progs: ['xdp'] },
  189: { name: 'bpf_xdp_load_bytes', since: '5.18', progs: ['xdp'] },
};

/**
 * Helpers only the normal objects (build/bpf) call; the compat objects
 * (build/bpf-compat, compiled with -DXN_COMPAT) do without them, so a kernel
 * that lacks one gets those (objects/paths.ts objectSet).
 */
export const NORMAL_ONLY: readonly number[] = [181, 188, 189];

/** The oldest kernel the compat objects load on (bpf_check_mtu), and the normal ones. */
export const MIN_KERNEL = '5.12';
export const MIN_KERNEL_NORMAL = '5.18';

export type ObjectSet = 'normal' | 'compat';

export interface Probes {
  prog(type: number): boolean;
  map(type: number): boolean;
  mapFlags(type: number, flags: number): boolean;
  helper(progType: number, id: number): boolean;
}

// libbpf cannot probe a tracing program without a target to attach to: tp_btf
// programs need the type and the kernel's BTF, which 5.5+ with BTF has; their
// helpers are the generic ones, probed for tc and XDP.
const KERNEL: Probes = {
  prog: (t) => (t === PROG_TYPES.tracing ? existsSync('/sys/kernel/btf/vmlinux') : probeProgType(t)),
  map: probeMapType,
  mapFlags: probeMapFlags,
  helper: (prog, id) => prog === PROG_TYPES.tracing || probeHelper(prog, id),
};

/** The normal objects' helpers this kernel lacks (by name, oldest first), for the program types that call them. */
export function missingNormalOnly(p: Probes = KERNEL): Feature[] {
  return NORMAL_ONLY.filter((id) => HELPERS[id].progs.some((k) => !p.helper(PROG_TYPES[k], id))).map((id) => HELPERS[id]);
}

/** Every feature the object set needs that the kernel lacks, as "what (Linux N)". */
export function missingFeatures(p: Probes = KERNEL, set: ObjectSet = 'normal'): string[] {
  const out: string[] = [];
  const progOk = new Map<number, boolean>();
  for (const [t, f] of Object.entries(PROGS)) {
    progOk.set(Number(t), p.prog(Number(t)));
    if (!progOk.get(Number(t))) out.push(`${f.name} (Linux ${f.since})`);
  }
  for (const [t, f] of Object.entries(MAPS)) if (!p.map(Number(t))) out.push(`${f.name} (Linux ${f.since})`);
  for (const [flag, f] of Object.entries(MAP_FLAGS)) if (!p.mapFlags(2 /* ARRAY */, Number(flag))) out.push(`${f.name} (Linux ${f.since})`);
  for (const [id, h] of Object.entries(HELPERS)) {
    if (set === 'compat' && NORMAL_ONLY.includes(Number(id))) continue;
    const lacking = h.progs.filter((k) => progOk.get(PROG_TYPES[k]) && !p.helper(PROG_TYPES[k], Number(id)));
    if (lacking.length) out.push(`helper ${h.name} for ${lacking.join(' and ')} programs (Linux ${h.since})`);
  }
  return out;
}

let checked: ObjectSet | undefined;

/** Throws naming every feature the object set needs and the kernel lacks; probes once per process. */
export function requireKernelFeatures(release: string, set: ObjectSet, p: Probes = KERNEL): void {
  if (checked === set && p === KERNEL) return;
  const missing = missingFeatures(p, set);
  if (missing.length) {
    throw new XdpnetError(
      `kernel ${release} lacks what xdpnet's BPF programs need: ${missing.join('; ')}`,
      set === 'compat'
        ? `xdpnet needs Linux ${MIN_KERNEL} or newer with BPF enabled (see docs/kernels.md)`
        : `these are the normal objects' (XDPNET_BPF_COMPAT=0); without the variable, kernels from ${MIN_KERNEL} on get the compat objects (see docs/kernels.md)`,
    );
  }
  if (p === KERNEL) checked = set;
}
