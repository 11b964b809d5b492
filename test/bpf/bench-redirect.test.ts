// The bench's bare redirects (bench.bpf.c), the ceilings its forwarder rows are
// read against. xn_tc_redirect answers TC_ACT_REDIRECT; on the bench's own
// paths (generator g0 → f0, then XDP redirect, or XDP_PASS and tc ingress
// through Topology.attachTc) frames leave byte-exact out of the device the
// loader named and out of no other, through tcx and through clsact alike.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Topology } from '../../bench/topology.js';
import { BenchObject, udpFrame } from '../../src/objects/bench.js';
import { u32 } from '../../src/objects/codec.js';
import { BPF_F_TEST_XDP_LIVE_FRAMES, BPF_XDP, type BpfObject, linkCreate, probeTcx, progId, XDP_FLAGS_DRV_MODE } from '../../src/sys/libbpf.js';
import { close, ifNameToIndex } from '../../src/sys/libc.js';
import { fixtureObject, PinRoot, skbMd, TC } from '../helpers/bpf.js';
import { hex } from '../helpers/packet.js';
import { sh, sleep, tcFilters } from '../helpers/sys.js';

const FRAMES = 8; // under the capture's 64 slots

let pins: PinRoot;
let kernelTcx = false;
beforeAll(() => {
  pins = new PinRoot('bench-redirect');
  const o = BenchObject.load('tcRedirect');
  try {
    kernelTcx = probeTcx(o.prog.fd);
  } finally {
    o.close();
  }
});
afterAll(() => pins?.cleanup());

describe('xn_tc_redirect under BPF_PROG_RUN', () => {
  it('answers TC_ACT_REDIRECT and leaves the frame as it was', () => {
    const o = BenchObject.load('tcRedirect', { redirectIfindex: 1 });
    try {
      const f = udpFrame({ srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '10.99.0.1', dstIp: '10.99.1.2', sport: 1024, dport: 9, size: 128 });
      const r = o.prog.testRun({ data: f, ctx: skbMd(1) });
      expect(r.retval).toBe(TC.REDIRECT);
      expect(hex(r.data)).toBe(hex(f));
    } finally {
      o.close();
    }
  });
});

type Hook = 'xdp' | 'tcx' | 'clsact';

/**
 * gen:g0 ⇄ f0:fwd, and two ways out of fwd to the sink namespace: f1 ⇄ s1,
 * f2 ⇄ s2, a capture on s1 and s2. The redirect on f0 names `to`; FRAMES
 * live frames from g0. Returns what each capture saw, and f0's tc filters.
 */
function send(hook: Hook, to: 'f1' | 'f2') {
  const t = new Topology();
  const caps: number[] = [];
  const env = process.env.XDPNET_TC;
  try {
    for (const r of ['gen', 'fwd', 'sink']) t.addNs(r);
    t.veth({ ns: 'gen', name: 'g0' }, { ns: 'fwd', name: 'f0' });
    t.veth({ ns: 'fwd', name: 'f1' }, { ns: 'sink', name: 's1' });
    t.veth({ ns: 'fwd', name: 'f2' }, { ns: 'sink', name: 's2' });
    const redirectIfindex = t.ifindex('fwd', to);
    let prog: number;
    if (hook === 'xdp') prog = t.attachXdp('fwd', 'f0', 'redirect', { redirectIfindex }).prog.fd;
    else {
      t.attachXdp('fwd', 'f0', 'pass'); // the generator's frames become skbs, as in the bench's tc rows
      process.env.XDPNET_TC = hook;
      prog = t.attachTc('fwd', 'f0', 'tcRedirect', { redirectIfindex }).prog.fd;
    }
    const cap: BpfObject = pins.open(fixtureObject('capture'));
    cap.map('xn_cap_count').update(u32(0), u32(0));
    const sinks = t.inNs('sink', () => {
      const idx = { s1: ifNameToIndex('s1'), s2: ifNameToIndex('s2') };
      for (const s of ['s1', 's2'] as const) caps.push(linkCreate(cap.program('xn_capture').fd, idx[s], BPF_XDP, XDP_FLAGS_DRV_MODE, `capture on ${s}`));
      return idx;
    });
    const frame = udpFrame({ srcMac: t.mac('gen', 'g0'), dstMac: t.mac('fwd', 'f0'), srcIp: '10.99.0.1', dstIp: '10.99.1.2', sport: 1024, dport: 9, size: 128 });
    t.inNs('gen', () => { // bpf_redirect resolves the generator's ifindex in the caller's namespace
      const gen = BenchObject.load('gen', { genIfindex: ifNameToIndex('g0') });
      try {
        gen.setTemplate(frame);
        gen.prog.testRun({ data: frame, repeat: FRAMES, flags: BPF_F_TEST_XDP_LIVE_FRAMES });
      } finally {
        gen.close();
      }
    });
    // The sink's receive may run in a deferred softirq on a loaded machine: wait until the count holds still.
    const count = () => cap.map('xn_cap_count').lookup(u32(0))!.readUInt32LE(0);
    for (let n = -1, still = 0, i = 0; still < 5 && i < 100; i++, sleep(10)) {
      const m = count();
      still = m === n ? still + 1 : 0;
      n = m;
    }
    const seen: Record<'s1' | 's2', string[]> = { s1: [], s2: [] };
    for (let i = 0; i < Math.min(count(), 64); i++) {
      const c = cap.map('xn_cap').lookup(u32(i))!;
      const at = c.readUInt32LE(0) === sinks.s1 ? 's1' : c.readUInt32LE(0) === sinks.s2 ? 's2' : `ifindex ${c.readUInt32LE(0)}`;
      (seen[at as 's1'] ??= []).push(hex(c.subarray(8, 8 + c.readUInt32LE(4))));
    }
    const qdiscs = sh('tc', ['-n', t.nsName('fwd'), '-j', 'qdisc', 'show', 'dev', 'f0']);
    return { frame: hex(frame), seen, filters: tcFilters(t.nsName('fwd'), 'f0'), clsact: qdiscs.includes('"clsact"'), progId: progId(prog, 'redirect') };
  } finally {
    if (env === undefined) delete process.env.XDPNET_TC;
    else process.env.XDPNET_TC = env;
    caps.forEach(close);
    t.destroy();
  }
}

describe('bare redirects on the bench path: the frames leave out of the configured device', () => {
  for (const hook of ['xdp', 'tcx', 'clsact'] as const) {
    for (const [to, other] of [['f1', 's2'], ['f2', 's1']] as const) {
      it(`${hook === 'xdp' ? 'xn_redirect (XDP on f0)' : `xn_tc_redirect (${hook} on f0)`} to ${to}`, ({ skip }) => {
        if (hook === 'tcx' && !kernelTcx) skip('the kernel has no tcx');
        const r = send(hook, to);
        const into = to === 'f1' ? 's1' : 's2';
        expect(r.seen[into]).toEqual(Array(FRAMES).fill(r.frame));
        expect(r.seen[other]).toEqual([]);
        expect(Object.keys(r.seen).sort()).toEqual(['s1', 's2']); // nothing captured anywhere else
        // The hook really is the one asked for: a clsact filter running the program, or none at all.
        if (hook === 'clsact') expect(r.filters.map((f) => f.options?.prog?.id)).toEqual([r.progId]);
        else expect({ filters: r.filters, clsact: r.clsact }).toEqual({ filters: [], clsact: false });
      });
    }
  }
});
