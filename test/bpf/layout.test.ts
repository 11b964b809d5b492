// Every TypeScript codec matches the layout clang gave the C struct (BTF), and
// every drop reason the C code can count has a name.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Btf } from '../../src/objects/btf.js';
import type { Codec } from '../../src/objects/codec.js';
import { CacheStats, DROP_MAX, DROP_REASONS, DropKey, IfStats } from '../../src/objects/stats.js';
import { BRIDGE_CODECS, VXLAN_CODECS } from '../../src/objects/bridge.js';
import { BenchCount, GenFrame } from '../../src/objects/bench.js';
import { NAT_CODECS } from '../../src/objects/nat.js';
import { MONITOR_CODECS } from '../../src/objects/monitor.js';
import { BpfObject } from '../../src/sys/libbpf.js';
import { ROOT } from '../helpers/sys.js';

const CODECS = [IfStats, DropKey, CacheStats, ...BRIDGE_CODECS, ...VXLAN_CODECS, GenFrame, BenchCount, ...NAT_CODECS, ...MONITOR_CODECS] as unknown as Codec<never>[];

const objects = readdirSync(join(ROOT, 'build/bpf')).filter((f) => f.endsWith('.bpf.o'));
function btfOf(file: string): Btf {
  const o = BpfObject.open(join(ROOT, 'build/bpf', file), { pinRoot: '/nonexistent' });
  try {
    return new Btf(o.btf());
  } finally {
    o.close();
  }
}
const btfs = new Map(objects.map((f) => [f, btfOf(f)]));

describe('codec layouts match BTF', () => {
  for (const c of CODECS) {
    it(`struct ${c.name}`, () => {
      let seen = 0;
      for (const [file, btf] of btfs) {
        const s = btf.struct(c.name);
        if (!s) continue;
        seen++;
        expect({ file, size: s.size, members: s.members }).toEqual({ file, size: c.size, members: c.fields });
      }
      expect(seen, `no built object declares struct ${c.name}`).toBeGreaterThan(0);
    });
  }

  it('drop reasons: every C enum value has a name, and no name is stale', () => {
    const values = btfs.get('counter.bpf.o')!.enumValues('xn_drop_reason')!;
    expect(values.get('XN_DROP_MAX')).toBe(DROP_MAX);
    const reasons = [...values].filter(([n]) => n !== 'XN_DROP_MAX').map(([, v]) => v).sort((a, b) => a - b);
    expect(reasons).toEqual(Object.keys(DROP_REASONS).map(Number).sort((a, b) => a - b));
  });
});
