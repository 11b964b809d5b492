// The kernel feature tables against the built objects (so they cannot drift
// from the C code) and the probes against this kernel (so they are real).
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HELPERS, MAP_FLAGS, MAPS, missingFeatures, PROG_TYPES, type ProgKind } from '../../src/objects/features.js';
import { BpfObject, probeHelper, probeMapFlags, probeMapType } from '../../src/sys/libbpf.js';
import { ROOT } from '../helpers/sys.js';

const OBJECTS = readdirSync(`${ROOT}build/bpf`).filter((f) => f.endsWith('.bpf.o')).map((f) => `${ROOT}build/bpf/${f}`);

/**
 * Helper ids each program kind calls in an object: `call` with src_reg 0 (a
 * pseudo call to a BPF function has 1). Functions in .text (bpf_loop callbacks,
 * shared code) are 'text': which program kinds call them is not in the listing.
 */
function helperCalls(obj: string): Array<{ kind: ProgKind | 'text'; id: number }> {
  const out: Array<{ kind: ProgKind | 'text'; id: number }> = [];
  let kind: ProgKind | 'text' | null = null;
  for (const line of execFileSync('llvm-objdump', ['-d', obj], { encoding: 'utf8' }).split('\n')) {
    const sec = /^Disassembly of section ([^:]+):/.exec(line);
    if (sec) {
      kind = sec[1] === '.text' ? 'text' : sec[1].startsWith('xdp') ? 'xdp' : sec[1].startsWith('tc') ? 'tc' : sec[1].startsWith('tp_btf/') || sec[1].startsWith('iter/') ? 'tracing' : null;
    }
    const call = /^\s+[0-9a-f]+:\s+85 00 (?:[0-9a-f]{2} ){5}[0-9a-f]{2}\s+call (\d+)$/.exec(line);
    if (call) {
      expect(kind, `${obj}: a helper call outside a tc, xdp, tp_btf, iter or .text section`).not.toBeNull();
      out.push({ kind: kind!, id: Number(call[1]) });
    }
  }
  return out;
}

describe('kernel feature tables', () => {
  it('list every helper the objects call, for each program type that calls it', () => {
    const calls = OBJECTS.flatMap(helperCalls);
    expect(calls.length).toBeGreaterThan(50);
    const listed = (c: { kind: ProgKind | 'text'; id: number }) => (c.kind === 'text' ? HELPERS[c.id] : HELPERS[c.id]?.progs.includes(c.kind));
    const missing = [...new Set(calls.filter((c) => !listed(c)).map((c) => `${c.kind} helper ${c.id}`))];
    expect(missing).toEqual([]);
  });

  it('list every map type and map flag the objects define', () => {
    for (const path of OBJECTS) {
      const o = BpfObject.open(path);
      try {
        for (const m of o.mapDefs()) {
          expect(MAPS[m.type], `${path}: map ${m.name} of type ${m.type}`).toBeDefined();
          const flags = m.flags & ~0x1 & ~(1 << 7); // BPF_F_NO_PREALLOC and BPF_F_RDONLY_PROG need no probe
          for (let bit = 1; bit <= flags; bit <<= 1) if (flags & bit) expect(MAP_FLAGS[bit], `${path}: map ${m.name} flag ${bit}`).toBeDefined();
        }
      } finally {
        o.close();
      }
    }
  });
});

describe('kernel feature probes on this kernel', () => {
  it('find everything xdpnet needs', () => {
    expect(missingFeatures()).toEqual([]);
  });
  it('say no where the kernel says no', () => {
    // A helper the kernel does not know (what an older kernel says of a newer helper). Not one that
    // exists but is not for this program type: libbpf 1.1 misreads newer kernels' message for that.
    expect(probeHelper(PROG_TYPES.xdp, 100_000)).toBe(false);
    expect(probeHelper(PROG_TYPES.tc, 100_000)).toBe(false);
    expect(probeMapType(100_000)).toBe(false);
    expect(probeMapFlags(2, 1 << 30)).toBe(false);
  });
});
