// What the compat objects (build/bpf-compat, docs/kernels.md) cost against the
// normal ones, both in one run, through BPF_PROG_RUN on the programs the CLI
// pinned in a namespace:
//   flood: a broadcast through xn_br_tc on a bridge of PORTS tc ports (the
//     flood loop: one clone per member), ns per frame;
//   nat-new: new UDP flows through xn_nat_tc (masquerade, the default range:
//     probe 0 finds a free port), µs per flow;
//   nat-full: new flows through a 100-port range to one destination until it
//     is used up (the port search's worst case), µs per flow.
// NAT's times include node's call into the kernel per flow, the same for both.
//   node dist/bench/compat.js [--ports 16] [--repeat 20000] [--flows 20000] [--reps 3]
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { BpfProgram } from '../src/sys/libbpf.js';
import { instancePaths } from '../src/objects/paths.js';
import { pinnedBuilds } from '../src/objects/builds.js';
import { udpFrame } from '../src/objects/bench.js';
import { Topology } from './topology.js';

const { values: a } = parseArgs({ options: { ports: { type: 'string', default: '16' }, repeat: { type: 'string', default: '20000' },
  flows: { type: 'string', default: '20000' }, reps: { type: 'string', default: '3' } } });
const PORTS = Number(a.ports);
const REPEAT = Number(a.repeat);
const FLOWS = Number(a.flows);
const REPS = Number(a.reps);
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

function program(t: Topology, object: string, name: string): BpfProgram {
  const inst = instancePaths(t.nsName('fwd'));
  const [build] = pinnedBuilds(inst, object);
  return BpfProgram.fromPin(`${inst.progs}/${object}-${build}/${name}`);
}

const skbCtx = (ifindex: number) => {
  const ctx = Buffer.alloc(44); // struct __sk_buff up to ifindex
  ctx.writeUInt32LE(ifindex, 40);
  return ctx;
};

function measure(set: 'normal' | 'compat') {
  process.env.XDPNET_BPF_COMPAT = set === 'compat' ? '1' : '0';
  const t = new Topology();
  try {
    t.addNs('fwd');
    t.addNs('out');
    for (let i = 0; i < PORTS; i++) t.veth({ ns: 'fwd', name: `p${i}` }, { ns: 'fwd', name: `p${i}x` });
    t.xdpnet('fwd', 'bridge', 'add', 'br0');
    for (let i = 0; i < PORTS; i++) t.xdpnet('fwd', 'attach', `p${i}`, '--bridge', 'br0');
    const br = program(t, 'bridge', 'xn_br_tc');
    const bcast = udpFrame({ srcMac: '02:00:00:00:00:01', dstMac: 'ff:ff:ff:ff:ff:ff', srcIp: '10.0.0.1', dstIp: '10.0.0.2', sport: 1, dport: 2, size: 128 });
    const p0 = t.ifindex('fwd', 'p0');
    // In the namespace: a test run resolves the context's ifindex, and the
    // clones' ifindexes, in the calling thread's namespace.
    const flood = t.inNs('fwd', () => median(Array.from({ length: REPS }, () => br.testRun({ data: bcast, ctx: skbCtx(p0), repeat: REPEAT }).durationNs)));

    // NAT: ct0 (inside) and up0 (outside, default route via a resolved gateway).
    t.veth({ ns: 'fwd', name: 'up0', addr: '10.99.0.1/24' }, { ns: 'out', name: 'gw0', addr: '10.99.0.254/24' });
    t.veth({ ns: 'fwd', name: 'ct0', addr: '172.16.0.1/12' }, { ns: 'fwd', name: 'ct0p' });
    t.sysctl('fwd', { 'net.ipv4.ip_forward': 1 });
    const ip = (...x: string[]) => execFileSync('ip', ['-n', t.nsName('fwd'), ...x], { encoding: 'utf8' });
    ip('route', 'add', 'default', 'via', '10.99.0.254');
    ip('neigh', 'replace', '10.99.0.254', 'lladdr', t.mac('out', 'gw0'), 'dev', 'up0', 'nud', 'permanent');
    t.xdpnet('fwd', 'nat', 'masquerade', 'add', '--src', '172.16.0.0/12', '--out', 'up0', '--in', 'ct0', '--conntrack-max', String(4 * FLOWS));
    const nat = program(t, 'nat', 'xn_nat_tc');
    const ct0 = t.ifindex('fwd', 'ct0');
    const ctMac = t.mac('fwd', 'ct0');
    const flow = (k: number, dst: string) => udpFrame({ srcMac: '02:00:00:00:02:02', dstMac: ctMac, srcIp: `172.17.${(k >> 8) & 0xff}.${k & 0xff}`,
      dstIp: dst, sport: 5000 + (k >> 16), dport: 53, size: 64 });
    const perFlow = (n: number, dst: (k: number) => string, base: number) => {
      const frames = Array.from({ length: n }, (_, k) => flow(base + k, dst(k)));
      return t.inNs('fwd', () => {
        const t0 = process.hrtime.bigint();
        let ok = 0;
        for (const f of frames) if (nat.testRun({ data: f, ctx: skbCtx(ct0) }).retval === 7 /* TC_ACT_REDIRECT */) ok++;
        return { us: Number(process.hrtime.bigint() - t0) / 1e3 / n, ok };
      });
    };
    const natNew = perFlow(FLOWS, (k) => `198.18.${(k >> 8) & 0xff}.${k & 0xff}`, 0);
    t.xdpnet('fwd', 'nat', 'flush');
    t.xdpnet('fwd', 'nat', 'masquerade', 'add', '--src', '172.16.0.0/12', '--out', 'up0', '--in', 'ct0', '--ports', '20000-20099', '--conntrack-max', String(4 * FLOWS));
    const nat2 = program(t, 'nat', 'xn_nat_tc');
    const full = { us: 0, ok: 0 };
    for (let d = 0; d < 20; d++) { // 20 destinations, each range filled: 2000 flows
      const frames = Array.from({ length: 100 }, (_, k) => flow(100000 + d * 100 + k, `198.19.0.${d + 1}`));
      t.inNs('fwd', () => {
        const t0 = process.hrtime.bigint();
        for (const f of frames) if (nat2.testRun({ data: f, ctx: skbCtx(ct0) }).retval === 7) full.ok++;
        full.us += Number(process.hrtime.bigint() - t0) / 1e3;
      });
    }
    full.us /= 2000;
    for (const p of [br, nat, nat2]) p.close();
    return { set, floodNs: flood, natNewUs: natNew.us, natNewOk: natNew.ok, natFullUs: full.us, natFullOk: full.ok };
  } finally {
    t.destroy();
  }
}

const rows = [measure('normal'), measure('compat')];
console.log(`| set | flood to ${PORTS - 1} ports (xn_br_tc, ns/frame) | new NAT flow, free range (µs) | new NAT flow, 100-port range filled (µs) |`);
console.log('|-----|------|------|------|');
for (const r of rows) {
  console.log(`| ${r.set} | ${Math.round(r.floodNs)} | ${r.natNewUs.toFixed(2)} (${r.natNewOk}/${FLOWS} translated) | ${r.natFullUs.toFixed(2)} (${r.natFullOk}/2000) |`);
}
