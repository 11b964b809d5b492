// The README is a user's guide that must stay true: its troubleshooting table
// names every drop reason the datapath counts (and no other), and every relative
// link in it and in docs/ reaches a file and, with #anchor, a heading there.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DROP_REASONS } from '../../src/objects/stats.js';
import { ROOT } from '../helpers/sys.js';

const DOCS = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const read = (f: string) => readFileSync(join(ROOT, f), 'utf8');

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  let fence = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fence = !fence;
    const m = !fence && /^#{1,6}\s+(.*)$/.exec(line);
    if (m) out.add(m[1].trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-'));
  }
  return out;
}

describe('README and docs', () => {
  it('the troubleshooting table lists every drop reason exactly once, and nothing else', () => {
    const readme = read('README.md');
    const section = readme.slice(readme.indexOf('\n## Troubleshooting'), readme.indexOf('\n## ', readme.indexOf('\n## Troubleshooting') + 1));
    const rows = [...section.matchAll(/^\| `([a-z0-9-]+)` \|[^|\n]+\|[^|\n]+\|$/gm)].map((m) => m[1]);
    expect(rows.slice().sort()).toEqual(Object.values(DROP_REASONS).sort());
  });

  it('every relative link in README.md and docs/*.md resolves to a file and heading', () => {
    const broken: string[] = [];
    for (const doc of DOCS) {
      const text = read(doc).replace(/```[\s\S]*?```/g, '');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target)) continue; // http:, https:, mailto:
        const [path, anchor] = target.split('#');
        const file = path ? relative(ROOT, join(ROOT, dirname(doc), path)) : doc;
        if (!existsSync(join(ROOT, file))) broken.push(`${doc}: ${target} (no file ${file})`);
        else if (anchor && file.endsWith('.md') && !anchors(read(file)).has(anchor)) broken.push(`${doc}: ${target} (no heading #${anchor} in ${file})`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('the README warns that NAT bypasses netfilter and documents exit code 70', () => {
    const readme = read('README.md');
    expect(readme).toMatch(/NAT traffic bypasses netfilter/);
    expect(readme).toMatch(/^\| 70 \|/m);
  });
});
