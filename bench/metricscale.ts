// How long a metrics scrape takes on a big host: a bridge with 1000 ports
// (veths attached at tc, each with its counters, VLANs 1-16 of 63 ports), a
// conntrack table filled to 1M flows (2M entries, written straight into the
// map) and an FDB of static entries loaded as `fdb load` does, one instance in
// a namespace of its own. The target: under 1 s.
// Not part of `make bench`: node dist/bench/metricscale.js --help
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { addBridge, addPort, delBridge } from '../src/dataplane/bridge.js';
import { fdbCounts, listFdb, loadFdb } from '../src/dataplane/fdb.js';
import { withNetns } from '../src/dataplane/host.js';
import { instancePaths } from '../src/objects/paths.js';
import { COUNT_METHODS, MapCounter, mapCounter } from '../src/objects/mapcount.js';
import { CtEntry, CtKey } from '../src/objects/nat.js';
import { createRegistry } from '../src/observe/metrics.js';
import { BpfMap } from '../src/sys/libbpf.js';
import { monotonicCoarseNs } from '../src/sys/libc.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const USAGE = `usage: node dist/bench/metricscale.js [--ports N] [--flows N] [--fdb N] [--scrapes N]

Builds one big host in a network namespace of its own and times scrapes of the
registry \`xdpnet daemon --metrics-addr\` serves (the issue's target: under 1 s).

  --ports N    veth ports attached at tc to bridge br0, 63 a VLAN (default 1000;
               attaching 1000 takes 8-17 min on a loaded 2-core machine)
  --flows N    conntrack table of N flows (--conntrack-max), filled: 2N entries (default 1000000)
  --fdb N      static FDB entries spread over the ports, loaded as \`fdb load\` does
               (default 0; the FDB holds 131072 in all: capped to leave each port room to learn)
  --scrapes N  scrapes timed (default 5)

Prints the set-up, how the conntrack fill is counted (kfunc, walk or batch:
docs/observability.md), and per scrape its time, size and what it reported.
Example, the 1M-flow half with a full FDB: --ports 1 --flows 1000000 --fdb 130000`;
const { values: a } = parseArgs({
  options: {
    ports: { type: 'string', default: '1000' }, flows: { type: 'string', default: '1000000' }, fdb: { type: 'string', default: '0' },
    scrapes: { type: 'string', default: '5' }, help: { type: 'boolean', short: 'h' },
  },
});
if (a.help) {
  console.log(USAGE);
  process.exit(0);
}
const num = (name: string, v: string, min: number) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be a whole number >= ${min}, got '${v}'\n\n${USAGE}`);
    process.exit(2);
  }
  return n;
};
const FLOWS = num('flows', a.flows!, 1024);
const PORTS = num('ports', a.ports!, 0);
const FDB = num('fdb', a.fdb!, 0);
const SCRAPES = num('scrapes', a.scrapes!, 1);
if (FDB && !PORTS) {
  console.error('--fdb needs --ports 1 or more: an FDB entry leads to a port');
  process.exit(2);
}
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
  // The table full: a flow's two directions, plus the per-CPU headroom, in batches (a plain hash
  // refuses anything past max_entries, so write exactly that many).
  BpfMap.usePin(join(inst.maps, 'xn_ct'), (m) => {
    const total = m.info.maxEntries;
    const keys = Buffer.alloc(CtKey.size * 65536);
    const vals = Buffer.alloc(m.info.valueSize * 65536);
    // seen now: an entry last seen at 0 is long expired, and any `xdpnet daemon` on the host (a test's) gc's it away
    const e = CtEntry.encode({ ...CtEntry.decode(Buffer.alloc(CtEntry.size)), last_seen_ns: monotonicCoarseNs() });
    for (let done = 0; done < total; done += 65536) {
      const n = Math.min(65536, total - done);
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
  if (FDB) {
    // Room: the ports learn their peers' MACs (IPv6 neighbour discovery) while this runs; leave each one an entry.
    const fdbMap = BpfMap.usePin(join(inst.maps, 'xn_fdb'), (m) => ({ max: m.info.maxEntries, used: m.count() }))!;
    const room = fdbMap.max - fdbMap.used - PORTS;
    const fill = Math.min(FDB, room);
    if (fill < FDB) console.log(`--fdb ${FDB} capped to ${fill}: the FDB holds ${fdbMap.max}, ${fdbMap.used} are in use and ${PORTS} left for learning`);
    // static entries in one `fdb load` file: MAC 02:00:xx:xx:xx:xx, round robin over the ports, each port's PVID
    const file = join('/tmp', `${ns}.fdb.json`);
    const hex = (x: number) => x.toString(16).padStart(8, '0').replace(/(..)(?=.)/g, '$1:');
    writeFileSync(file, JSON.stringify(Array.from({ length: fill }, (_, i) => ({ mac: `02:00:${hex(i)}`, bridge: 'br0', port: `p${i % PORTS}` }))));
    t0 = process.hrtime.bigint();
    try {
      const r = withNetns(ns, () => loadFdb(inst, file, ns));
      console.log(`loaded ${r.loaded} FDB entries in ${(ms(t0) / 1000).toFixed(1)} s`);
    } finally {
      rmSync(file);
    }
  }
  console.log(`conntrack fill counted by: ${mapCounter().method}; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  // The two big tables' parts of a scrape, each way, side by side (median of 3)
  const med = (fn: () => unknown) => {
    const t = [0, 1, 2].map(() => { const s0 = process.hrtime.bigint(); fn(); return ms(s0); }).sort((x, y) => x - y);
    return `${t[1].toFixed(1)} ms`;
  };
  BpfMap.usePin(join(inst.maps, 'xn_ct'), (m) => {
    for (const method of COUNT_METHODS) {
      let c: MapCounter;
      try {
        c = MapCounter.open(method);
      } catch (e) {
        console.log(`  count ${m.info.maxEntries}-entry xn_ct by ${method}: refused by this kernel (${(e as Error).message.split('\n')[0]})`);
        continue;
      }
      try {
        console.log(`  count ${m.info.maxEntries}-entry xn_ct by ${method}: ${c.entries(m)} entries, ${med(() => c.entries(m))}`);
      } finally {
        c.close();
      }
    }
  });
  if (FDB) {
    console.log(`  FDB by bridge and type, batched raw pass (fdbCounts): ${med(() => fdbCounts(inst))}`);
    console.log(`  FDB by bridge and type, as rows (listFdb, before): ${med(() => listFdb(inst, { all: true }))}`);
  }
  const reg = createRegistry({ instances: () => [inst] });
  for (let i = 0; i < SCRAPES; i++) {
    t0 = process.hrtime.bigint();
    const text = await reg.metrics();
    const took = ms(t0);
    const entries = /xdpnet_conntrack_entries\{[^}]*\} (\d+)/.exec(text)?.[1];
    const fdb = [...text.matchAll(/^xdpnet_fdb_entries\{[^}]*type="(\w+)"[^}]*\} (\d+)$/gm)].map((m) => `${m[1]} ${m[2]}`).join(', ');
    const series = text.split('\n').filter((l) => l && !l.startsWith('#')).length;
    const rx = text.split('\n').filter((l) => l.startsWith('xdpnet_interface_rx_packets_total{')).length;
    console.log(`scrape ${i + 1}: ${took.toFixed(0)} ms, ${text.length} bytes, ${series} series (rx_packets of ${rx} interfaces), conntrack entries ${entries}, fdb ${fdb || 'none'}`);
  }
} finally {
  try { withNetns(ns, () => delBridge(inst, 'br0', { force: true })); } catch { /* best effort */ }
  try { cli('nat', 'flush'); } catch { /* best effort */ }
  try { cli('detach', '--all'); } catch { /* best effort */ }
  ip('netns', 'del', ns);
  console.log(`load average after: ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
}
