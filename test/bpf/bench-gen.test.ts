// xn_gen (bench.bpf.c) restores its template into every frame: a frame that a
// forwarder rewrote in place (here: all zeros) leaves byte-exact again, the
// VXLAN template's outer and inner headers included.
import { describe, expect, it } from 'vitest';
import { genFrame, type GenOptions } from '../../bench/gen.js';
import { BenchObject } from '../../src/objects/bench.js';
import { hex } from '../helpers/packet.js';
import { XDP } from '../helpers/bpf.js';

const spec: GenOptions = {
  iface: 'lo', srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '10.99.0.1', dstIp: '10.99.0.2',
  sport: 1024, dport: 9, size: 128, flows: 1, varyMac: false, seconds: 1,
};
const outer = { vni: 7, srcMac: '02:00:00:00:01:01', dstMac: '02:00:00:00:01:02', srcIp: '10.98.0.2', dstIp: '10.98.0.1' };

function run(o: GenOptions, consts: { genFlows?: number } = {}) {
  const gen = BenchObject.load('gen', { genIfindex: 1, ...consts });
  try {
    const { frame, headerBytes } = genFrame(o);
    gen.setTemplate(frame, headerBytes);
    const outs = [0, 1, 2].map(() => gen.prog.testRun({ data: Buffer.alloc(frame.length) }));
    return { frame, outs };
  } finally {
    gen.close();
  }
}

describe('xn_gen', () => {
  it('restores the plain UDP template', () => {
    const { frame, outs } = run(spec);
    expect(outs[0].retval).toBe(XDP.REDIRECT);
    expect(hex(outs[0].data)).toBe(hex(frame));
  });

  it('restores the whole VXLAN template: outer headers, VXLAN header, inner headers', () => {
    const { frame, outs } = run({ ...spec, vxlan: outer });
    expect(frame.length).toBe(178);
    expect(outs[0].retval).toBe(XDP.REDIRECT);
    expect(hex(outs[0].data)).toBe(hex(frame));
  });

  it('varies the outer UDP source port over flows and nothing else', () => {
    const { frame, outs } = run({ ...spec, vxlan: outer, flows: 3 }, { genFlows: 3 });
    // The flow is the per-CPU frame count modulo 3: which port a run gets depends on the CPU it ran on.
    outs.forEach((o, i) => {
      const sport = o.data.readUInt16BE(34);
      expect(sport - 49152, `frame ${i}`).toBeGreaterThanOrEqual(0);
      expect(sport - 49152, `frame ${i}`).toBeLessThan(3);
      const want = Buffer.from(frame);
      want.writeUInt16BE(sport, 34);
      expect(hex(o.data), `frame ${i}`).toBe(hex(want));
    });
  });
});
