// The bpf-tier suites whose behaviour the compat objects (build/bpf-compat,
// for kernels without bpf_loop: docs/kernels.md) change, run again on them:
// the bridge's floods (a full flood domain, untagged and tagged members), the
// VXLAN flood to every remote of a VNI, NAT's source-port search and its
// exhaustion with the compat bound.
import { expect, it } from 'vitest';
import { objectPath, objectSet } from '../../src/objects/paths.js';

process.env.XDPNET_BPF_COMPAT = '1';

it('loads the compat objects', () => {
  expect(objectSet()).toEqual({ set: 'compat', why: 'XDPNET_BPF_COMPAT=1' });
  expect(objectPath('bridge')).toMatch(/\/build\/bpf-compat\/bridge\.bpf\.o$/);
});

await import('./bridge-forward.test.js');
await import('./vxlan-encap.test.js');
await import('./nat-exhaustion.test.js');
