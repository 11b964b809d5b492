import { defineConfig } from 'vitest/config';

// Tiers: unit (no root), bpf (root: BPF_PROG_RUN), fuzz (root: BPF_PROG_RUN, mutated frames), e2e (root: namespaces).
// Root tiers share the kernel, so files run one at a time.
export default defineConfig({
  test: {
    root: new URL('..', import.meta.url).pathname,
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
