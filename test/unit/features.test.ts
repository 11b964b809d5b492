import { describe, expect, it } from 'vitest';
import { HELPERS, MAPS, MIN_KERNEL, missingFeatures, PROG_TYPES, requireKernelFeatures, type Probes } from '../../src/objects/features.js';

/** A kernel that has everything except what `lacks` says no to. */
const kernel = (lacks: Partial<Probes>): Probes => ({
  prog: () => true, map: () => true, mapFlags: () => true, helper: () => true, ...lacks,
});

const version = (v: string) => v.split('.').map(Number).reduce((a, n) => a * 1000 + n, 0);

describe('kernel feature check', () => {
  it('passes a kernel with everything', () => {
    expect(missingFeatures(kernel({}))).toEqual([]);
    expect(() => requireKernelFeatures('6.18.0', kernel({}))).not.toThrow();
  });

  it('names a missing helper, the program types that need it and its kernel (5.15 has no bpf_loop, no bpf_xdp_load_bytes)', () => {
    const k515 = kernel({ helper: (_t, id) => id < 181 });
    const missing = [
      'helper bpf_loop for tc and xdp programs (Linux 5.17)',
      'helper bpf_xdp_get_buff_len for xdp programs (Linux 5.18)',
      'helper bpf_xdp_load_bytes for xdp programs (Linux 5.18)',
    ];
    expect(missingFeatures(k515)).toEqual(missing);
    expect(() => requireKernelFeatures('5.15.0-91-generic', k515)).toThrow(
      `kernel 5.15.0-91-generic lacks what xdpnet's BPF programs need: ${missing.join('; ')}`,
    );
  });

  it('names missing map types and flags, and every missing feature at once', () => {
    const old = kernel({ map: (t) => t !== 25, mapFlags: () => false, helper: (t, id) => !(t === PROG_TYPES.tc && id === 155) });
    expect(missingFeatures(old)).toEqual([
      'BPF_MAP_TYPE_DEVMAP_HASH (Linux 5.4)',
      'BPF_F_MMAPABLE (memory-mapped array maps) (Linux 5.5)',
      'helper bpf_redirect_peer for tc programs (Linux 5.10)',
    ]);
  });

  it('without a program type, names it once and not each of its helpers', () => {
    expect(missingFeatures(kernel({ prog: (t) => t !== PROG_TYPES.xdp, helper: (t) => t !== PROG_TYPES.xdp })))
      .toEqual(['BPF_PROG_TYPE_XDP (Linux 4.8)']);
  });

  it('states as minimum the newest feature of the tables', () => {
    const newest = [...Object.values(HELPERS), ...Object.values(MAPS)].map((f) => f.since).sort((x, y) => version(y) - version(x))[0];
    expect(MIN_KERNEL).toBe(newest);
  });
});
