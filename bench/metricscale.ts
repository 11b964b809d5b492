// How long a metrics scrape takes on a big host: a bridge with 1000 ports
// (veths attached at tc, each with its counters, VLANs 1-16 of 63 ports) and
// a conntrack table filled to 1M flows (2M entries, written straight into the
// map), one instance in a namespace of its own. The target: under 1 s.
// Not part of `make bench`: node dist/bench/metricscale.js [--ports 1000] [--flows 1000000]
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { addBridge, addPort, delBridge } from '../src/dataplane/bridge.js';
import { withNetns } from '../src/dataplane/host.js';
import { instancePaths } from '../src/objects/paths.js';
import { CtEntry, CtKey } from '../src/objects/nat.js';
import { createRegistry } from '../src/observe/metrics.js';
import { BpfMap } from '../src/sys/libbpf.js';
import { monotonicCoarseNs } from '../src/sys/libc.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const { values: a } = parseArgs({ options: { ports: { type: 'string', default: '1000' }, flows: { type: 'string', default: '1000000' } } });
const FLOWS = Number(a.flows);
const PORTS = Number(a.ports);
const PER_VLAN = 63; // a flood domain holds 64 ports
const ns = `xnms${process.pid}`;
const cli = (...x: string[]) => execFileSync(process.execPath, [CLI, '--netns', ns, ...x], { encoding: 'utf8' });
const ip = (...x: string[]) => execFileSync('ip', x, { encoding: 'utf8' });
const inst = instancePaths(ns);
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

ip('netns', 'add', ns);
try {
  ip('-n', ns, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0x');
  ip('-n', ns, 'addr', 'add', '10.97.0.1/24', 'dev', 'up0');
  ip('-n', ns, 'link', 'set', 'up0', 'up');
  ip('-n', ns, 'link', 'add', 'in0', 'type', 'veth', 'peer', 'name', 'in0x'); // where the sources' packets arrive
  ip('-n', ns, 'link', 'set', 'in0', 'up');
  cli('nat', 'masquerade', 'add', '--src', '10.0.0.0/8', '--out', 'up0', '--in', 'in0', '--conntrack-max', String(FLOWS));
  // 2M entries (a flow's two directions), in batches
  BpfMap.usePin(join(inst.maps, 'xn_ct'), (m) => {
    const n = 65536;
    const keys = Buffer.alloc(CtKey.size * n);
    const vals = Buffer.alloc(m.info.valueSize * n);
    // seen now: an entry last seen at 0 is long expired, and any `xdpnet daemon` on the host (a test's) gc's it away
    const e = CtEntry.encode({ ...CtEntry.decode(Buffer.alloc(CtEntry.size)), last_seen_ns: monotonicCoarseNs() });
    for (let done = 0; done < 2 * FLOWS; done += n) {
      for (let i = 0; i < n; i++) {
        const x = done + i;
        CtKey.encode({ src: 0x0a000000 + (x >>> 8), dst: 0xc6336407, sport: 1024 + (x & 0xff), dport: 80, proto: 6, pad: Buffer.alloc(3) }, keys, i * CtKey.size);
        e.copy(vals, i * m.info.valueSize);
      }
      m.updateBatch(keys, vals, n);
    }
  });
  // the ports: veths made in one `ip -batch`, attached in this process (a CLI run per port would take minutes)
  const batch = join('/tmp', `${ns}.ip`);
  writeFileSync(batch, Array.from({ length: PORTS }, (_, i) =>
    `link add p${i} type veth peer name p${i}x\nlink set p${i} up\nlink set p${i}x up\n`).join(''));
  try {
    ip('-n', ns, '-batch', batch);
  } finally {
    rmSync(batch);
  }
  let t0 = process.hrtime.bigint();
  withNetns(ns, () => {
    addBridge(inst, 'br0');
    for (let i = 0; i < PORTS; i++) addPort(inst, `p${i}`, 'br0', { hook: 'tc', pvid: 1 + Math.floor(i / PER_VLAN) });
  });
  console.log(`attached ${PORTS} ports in ${(ms(t0) / 1000).toFixed(1)} s`);
  const reg = createRegistry({ instances: () => [inst] });
  for (let i = 0; i < 5; i++) {
    t0 = process.hrtime.bigint();
    const text = await reg.metrics();
    const took = ms(t0);
    const entries = /xdpnet_conntrack_entries\{[^}]*\} (\d+)/.exec(text)?.[1];
    const series = text.split('\n').filter((l) => l && !l.startsWith('#')).length;
    const rx = text.split('\n').filter((l) => l.startsWith('xdpnet_interface_rx_packets_total{')).length;
    console.log(`scrape ${i + 1}: ${took.toFixed(0)} ms, ${text.length} bytes, ${series} series (rx_packets of ${rx} interfaces), conntrack entries ${entries}`);
  }
} finally {
  try { withNetns(ns, () => delBridge(inst, 'br0', { force: true })); } catch { /* best effort */ }
  try { cli('nat', 'flush'); } catch { /* best effort */ }
  try { cli('detach', '--all'); } catch { /* best effort */ }
  ip('netns', 'del', ns);
}
