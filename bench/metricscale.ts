// How long a metrics scrape takes on a big host: a conntrack table filled to
// 1M flows (2M entries, written straight into the map) and 1000 counted
// interfaces (slots), one instance in a namespace of its own. Not part of
// `make bench`: node dist/bench/metricscale.js
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { instancePaths } from '../src/objects/paths.js';
import { CtEntry, CtKey } from '../src/objects/nat.js';
import { STATS_MAPS } from '../src/objects/stats.js';
import { createRegistry } from '../src/observe/metrics.js';
import { BpfMap } from '../src/sys/libbpf.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const FLOWS = 1_000_000;
const IFACES = 1000;
const ns = `xnms${process.pid}`;
const cli = (...a: string[]) => execFileSync(process.execPath, [CLI, '--netns', ns, ...a], { encoding: 'utf8' });
const ip = (...a: string[]) => execFileSync('ip', a, { encoding: 'utf8' });

ip('netns', 'add', ns);
try {
  ip('-n', ns, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0x');
  ip('-n', ns, 'addr', 'add', '10.97.0.1/24', 'dev', 'up0');
  ip('-n', ns, 'link', 'set', 'up0', 'up');
  cli('nat', 'masquerade', 'add', '--src', '10.0.0.0/8', '--out', 'up0', '--conntrack-max', String(FLOWS));
  const inst = instancePaths(ns);
  // 2M entries (a flow's two directions), in batches
  BpfMap.usePin(join(inst.maps, 'xn_ct'), (m) => {
    const n = 65536;
    const keys = Buffer.alloc(CtKey.size * n);
    const vals = Buffer.alloc(m.info.valueSize * n);
    const e = CtEntry.encode(CtEntry.decode(Buffer.alloc(CtEntry.size)));
    for (let done = 0; done < 2 * FLOWS; done += n) {
      for (let i = 0; i < n; i++) {
        const x = done + i;
        CtKey.encode({ src: 0x0a000000 + (x >>> 8), dst: 0xc6336407, sport: 1024 + (x & 0xff), dport: 80, proto: 6, pad: Buffer.alloc(3) }, keys, i * CtKey.size);
        e.copy(vals, i * m.info.valueSize);
      }
      m.updateBatch(keys, vals, n);
    }
  });
  // 1000 interfaces' counters: slots as attach claims them (ifindexes need not exist for the maps)
  BpfMap.usePins(inst.maps, { slots: STATS_MAPS.ifSlots }, (m) => {
    for (let i = 1; i < IFACES; i++) m.slots.update(Buffer.from(new Uint32Array([100000 + i]).buffer), Buffer.from(new Uint32Array([i]).buffer));
  });
  const reg = createRegistry({ instances: () => [inst] });
  for (let i = 0; i < 3; i++) {
    const t0 = process.hrtime.bigint();
    const text = await reg.metrics();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const entries = /xdpnet_conntrack_entries\{[^}]*\} (\d+)/.exec(text)?.[1];
    console.log(`scrape ${i + 1}: ${ms.toFixed(0)} ms, ${text.length} bytes, conntrack entries ${entries}`);
  }
} finally {
  try { cli('nat', 'flush'); } catch { /* best effort */ }
  try { cli('detach', '--all'); } catch { /* best effort */ }
  ip('netns', 'del', ns);
}
