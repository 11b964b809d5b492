// What one more bridge port costs as the bridge grows: N veths attached one
// by one in this process (no process start per port, so what grows is what
// addPort and addFdb read), each followed by its static FDB entry as a CNI ADD
// adds it, in a namespace made here. Prints the median of each block of ports;
// a flat line means the per-port cost does not depend on how many there are.
// Not part of `make bench`: node dist/bench/portscale.js [--ports 500] [--block 50]
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { randomMac } from '../src/dataplane/addr.js';
import { addBridge, addPort, delBridge } from '../src/dataplane/bridge.js';
import { addFdb } from '../src/dataplane/fdb.js';
import { requirePrivileges, withNetns } from '../src/dataplane/host.js';
import { instancePaths } from '../src/objects/paths.js';

const { values: a } = parseArgs({ options: { ports: { type: 'string', default: '500' }, block: { type: 'string', default: '50' }, help: { type: 'boolean', short: 'h' } } });
if (a.help) {
  process.stdout.write('usage: node dist/bench/portscale.js [--ports N] [--block B]\n\nAttaches N veths to one bridge in a namespace made here, one by one, each with a static FDB entry;\nprints the median milliseconds per port of every B ports. Needs root.\n');
  process.exit(0);
}
const PORTS = Number(a.ports);
const BLOCK = Number(a.block);
if (!Number.isInteger(PORTS) || PORTS < 1 || PORTS > 1000 || !Number.isInteger(BLOCK) || BLOCK < 1) {
  throw new Error('--ports wants 1 to 1000 (the bridge\'s limit is 1024 ports), --block a positive integer');
}
requirePrivileges();
const ns = `xnps${process.pid}`;
const inst = instancePaths(ns);
const ip = (...x: string[]) => execFileSync('ip', x, { encoding: 'utf8' });
const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];

ip('netns', 'add', ns);
try {
  const batch = join('/tmp', `${ns}.ip`);
  writeFileSync(batch, Array.from({ length: PORTS }, (_, i) => `link add p${i} type veth peer name p${i}x\nlink set p${i} up\nlink set p${i}x up\n`).join(''));
  try {
    ip('-n', ns, '-batch', batch);
  } finally {
    rmSync(batch);
  }
  const load0 = loadavg()[0];
  const took: number[] = [];
  withNetns(ns, () => {
    addBridge(inst, 'br0');
    for (let i = 0; i < PORTS; i++) {
      const t0 = performance.now();
      addPort(inst, `p${i}`, 'br0', { hook: 'tc', pvid: 1 + Math.floor(i / 63), peerElsewhere: false }); // a flood domain holds 64 ports
      addFdb(inst, { mac: randomMac(), bridge: 'br0', port: `p${i}` });
      took.push(performance.now() - t0);
    }
  });
  console.log(`${PORTS} ports on one bridge, ${cpus().length} CPUs, load average ${load0.toFixed(1)} before, ${loadavg()[0].toFixed(1)} after (ms per port, median of each block):`);
  for (let i = 0; i < PORTS; i += BLOCK) console.log(`  ports ${i + 1}-${Math.min(PORTS, i + BLOCK)}: ${median(took.slice(i, i + BLOCK)).toFixed(1)}`);
} finally {
  try { withNetns(ns, () => delBridge(inst, 'br0', { force: true })); } catch { /* best effort */ }
  ip('netns', 'del', ns);
}
