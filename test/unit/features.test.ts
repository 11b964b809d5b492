import { describe, expect, it } from 'vitest';
import { HELPERS, MAPS, MIN_KERNEL, MIN_KERNEL_NORMAL, missingFeatures, NORMAL_ONLY, PROG_TYPES, requireKernelFeatures, type Probes } from '../../src/objects/features.js';
import { objectSet } from '../../src/objects/paths.js';

/** A kernel that has everything except what `lacks` says no to. */
const kernel = (lacks: Partial<Probes>): Probes => ({
  prog: () => true, map: () => true, mapFlags: () => true, helper: () => true, ...lacks,
});

const version = (v: string) => v.split('.').map(Number).reduce((a, n) => a * 1000 + n, 0);

describe('kernel feature check', () => {
  it('passes a kernel with everything', () => {
    expect(missingFeatures(kernel({}))).toEqual([]);
    expect(() => requireKernelFeatures('6.18.0', 'normal', kernel({}))).not.toThrow();
  });

  it('names a missing helper, the program types that need it and its kernel (5.15 has no bpf_loop, no bpf_xdp_load_bytes)', () => {
    const k515 = kernel({ helper: (_t, id) => id < 181 });
    const missing = [
      'helper bpf_loop for tc and xdp programs (Linux 5.17)',
      'helper bpf_xdp_get_buff_len for xdp programs (Linux 5.18)',
      'helper bpf_xdp_load_bytes for xdp programs (Linux 5.18)',
    ];
    expect(missingFeatures(k515, 'normal')).toEqual(missing);
    expect(() => requireKernelFeatures('5.15.0-91-generic', 'normal', k515)).toThrow(
      `kernel 5.15.0-91-generic lacks what xdpnet's BPF programs need: ${missing.join('; ')}`,
    );
    // ... none of which the compat objects need: 5.15 runs those
    expect(missingFeatures(k515, 'compat')).toEqual([]);
    expect(() => requireKernelFeatures('5.15.0-91-generic', 'compat', k515)).not.toThrow();
  });

  it('picks the compat objects where a helper of the normal ones is missing, and says why', () => {
    const env = process.env.XDPNET_BPF_COMPAT;
    delete process.env.XDPNET_BPF_COMPAT;
    try {
      expect(objectSet(kernel({}), () => true)).toEqual({ set: 'normal', why: "the kernel has bpf_loop, the 5.18 XDP helpers and 6.8's stack accounting" });
      // 6.1-6.7: every helper, but the normal NAT programs' call chains do not fit the verifier's 32-byte stack steps
      expect(objectSet(kernel({}), () => false)).toEqual({ set: 'compat', why: 'the verifier counts stack in 32-byte steps: kernel before 6.8' });
      expect(objectSet(kernel({ helper: (_t, id) => id < 181 }))).toEqual({
        set: 'compat', why: 'no bpf_loop, bpf_xdp_get_buff_len, bpf_xdp_load_bytes: kernel before 5.17' });
      expect(objectSet(kernel({ helper: (t, id) => !(t === PROG_TYPES.xdp && id === 189) }))).toEqual({
        set: 'compat', why: 'no bpf_xdp_load_bytes: kernel before 5.18' });
      process.env.XDPNET_BPF_COMPAT = '1';
      expect(objectSet(kernel({}), () => true).set).toBe('compat');
      process.env.XDPNET_BPF_COMPAT = '0';
      expect(objectSet(kernel({ helper: () => false })).set).toBe('normal');
      process.env.XDPNET_BPF_COMPAT = 'yes';
      expect(() => objectSet(kernel({}), () => true)).toThrow('XDPNET_BPF_COMPAT must be 1 (compat objects) or 0 (normal objects), not "yes"');
    } finally {
      if (env === undefined) delete process.env.XDPNET_BPF_COMPAT;
      else process.env.XDPNET_BPF_COMPAT = env;
    }
  });

  it('below 5.12 the compat objects are refused too, naming what is missing and the minimum kernel', () => {
    const k510 = kernel({ helper: (_t, id) => id < 160 });
    expect(() => requireKernelFeatures('5.10.0-30-amd64', 'compat', k510)).toThrow(
      "kernel 5.10.0-30-amd64 lacks what xdpnet's BPF programs need: helper bpf_ktime_get_coarse_ns for tc and xdp programs (Linux 5.11); helper bpf_check_mtu for tc and xdp programs (Linux 5.12)",
    );
    try {
      requireKernelFeatures('5.10.0-30-amd64', 'compat', k510);
    } catch (e) {
      expect((e as { hint?: string }).hint).toBe('xdpnet needs Linux 5.12 or newer with BPF enabled (see docs/kernels.md)');
    }
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

  it('states as minimum the newest feature of the tables: of the compat objects, and of the normal ones', () => {
    const newest = (fs: Array<{ since: string }>) => fs.map((f) => f.since).sort((x, y) => version(y) - version(x))[0];
    const compat = Object.entries(HELPERS).filter(([id]) => !NORMAL_ONLY.includes(Number(id))).map(([, h]) => h);
    expect(MIN_KERNEL).toBe(newest([...compat, ...Object.values(MAPS)]));
    expect(MIN_KERNEL_NORMAL).toBe(newest([...Object.values(HELPERS), ...Object.values(MAPS)]));
  });
});
