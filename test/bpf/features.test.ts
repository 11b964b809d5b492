// The kernel feature tables against the built objects (so they cannot drift
// from the C code) and the probes against this kernel (so they are real).
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HELPERS, MAP_FLAGS, MAPS, MIN_KERNEL, missingFeatures, NORMAL_ONLY, PROG_TYPES, type ProgKind } from '../../src/objects/features.js';
import { BpfObject, probeHelper, probeMapFlags, probeMapType } from '../../src/sys/libbpf.js';
import { ROOT } from '../helpers/sys.js';

const objects = (dir: string) => readdirSync(`${ROOT}${dir}`).filter((f) => f.endsWith('.bpf.o')).map((f) => `${ROOT}${dir}/${f}`);
const NORMAL = objects('build/bpf');
const COMPAT = objects('build/bpf-compat');
const OBJECTS = [...NORMAL, ...COMPAT];
const version = (v: string) => v.split('.').map(Number).reduce((a, n) => a * 1000 + n, 0);

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

  it('the compat objects need nothing newer than 5.15 (Ubuntu 22.04): no bpf_loop, no 5.18 XDP helper', () => {
    expect(COMPAT.map((p) => p.split('/').pop())).toEqual(NORMAL.map((p) => p.split('/').pop()));
    const since = new Map<string, string>();
    for (const path of COMPAT) {
      for (const c of helperCalls(path)) since.set(`${path.split('/').pop()}: helper ${HELPERS[c.id]?.name ?? c.id}`, HELPERS[c.id]?.since ?? '99');
      const o = BpfObject.open(path);
      try {
        for (const m of o.mapDefs()) {
          since.set(`${path.split('/').pop()}: map ${m.name}`, MAPS[m.type]?.since ?? '99');
          for (const [bit, f] of Object.entries(MAP_FLAGS)) if (m.flags & Number(bit)) since.set(`${path.split('/').pop()}: map ${m.name} flag ${f.name}`, f.since);
        }
      } finally {
        o.close();
      }
    }
    expect(since.size).toBeGreaterThan(50);
    expect([...since].filter(([, v]) => version(v) > version('5.15')).map(([k, v]) => `${k} (${v})`)).toEqual([]);
    expect([...since.values()].sort((x, y) => version(y) - version(x))[0]).toBe(MIN_KERNEL);
    // The normal objects still call what the compat ones do without: the split is real.
    const normal = new Set(NORMAL.flatMap(helperCalls).map((c) => c.id));
    expect(NORMAL_ONLY.filter((id) => !normal.has(id))).toEqual([]);
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
    expect(missingFeatures(undefined, 'normal')).toEqual([]);
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
