// The house rules the compiler does not check: no import cycle, layers that
// point one way, FFI only in src/sys, the FDB written by one module, and no
// source file over ~500 lines without a reason at its top.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('../..', import.meta.url).pathname;

function files(dir: string, ext: RegExp): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((d) => d.isFile() && ext.test(d.name))
    .map((d) => relative(ROOT, join(d.parentPath, d.name)))
    .sort();
}

const SRC = files('src', /\.ts$/);

/** Relative imports of a source file, as repository paths (.js → .ts). */
export function importsOf(file: string, text = readFileSync(join(ROOT, file), 'utf8')): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gms)) {
    out.push(normalize(join(dirname(file), m[1])).replace(/\.js$/, '.ts'));
  }
  return out;
}

/** Every cycle's path, found by depth-first search (one per back edge). */
export function cycles(graph: Map<string, string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (n: string) => {
    state.set(n, 'open');
    stack.push(n);
    for (const d of graph.get(n) ?? []) {
      if (state.get(d) === 'open') found.push([...stack.slice(stack.indexOf(d)), d]);
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of graph.keys()) if (!state.has(n)) visit(n);
  return found;
}

const graph = new Map(SRC.map((f) => [f, importsOf(f)]));

describe('source structure', () => {
  it('finds a cycle when there is one (the checker itself)', () => {
    expect(cycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]))).toEqual([['a', 'b', 'c', 'a']]);
    expect(importsOf('src/x/y.ts', "import { a } from '../z/w.js';\nexport { b } from './v.js';")).toEqual(['src/z/w.ts', 'src/x/v.ts']);
  });

  it('has no import cycle in src/', () => {
    expect(cycles(graph).map((c) => c.join(' -> '))).toEqual([]);
  });

  it('points layers one way: cli -> services (cluster, cni, observe) -> dataplane -> objects -> sys', () => {
    const layer = (f: string) => f.split('/')[1];
    const RANK: Record<string, number> = { cli: 4, demo: 4, cluster: 3, cni: 3, observe: 3, dataplane: 2, objects: 1 };
    const rank = (f: string) => RANK[layer(f)] ?? 0;
    const wrong = [...graph].flatMap(([f, deps]) => deps.filter((d) => d.startsWith('src/') && rank(d) > rank(f)).map((d) => `${f} -> ${d}`));
    expect(wrong).toEqual([]);
  });

  it('talks FFI only in src/sys', () => {
    const ffi = SRC.filter((f) => !f.startsWith('src/sys/') && /from 'koffi'/.test(readFileSync(join(ROOT, f), 'utf8')));
    expect(ffi).toEqual([]);
  });

  it('has one module that writes the FDB (xn_fdb)', () => {
    const writers = SRC.filter((f) => /\.fdb\.(update|delete|updateBatch|deleteBatch)\(/.test(readFileSync(join(ROOT, f), 'utf8')));
    expect(writers).toEqual(['src/dataplane/fdb.ts']);
  });

  it('keeps source files under ~500 lines, or says why at the top', () => {
    const long = [...SRC, ...files('bpf', /\.[ch]$/)].filter((f) => {
      const text = readFileSync(join(ROOT, f), 'utf8');
      return text.split('\n').length > 520 && !/over 500 lines because/i.test(text.split('\n').slice(0, 15).join('\n'));
    });
    expect(long).toEqual([]);
  });
});
