// The fuzz tier's frame builders (test/fuzz/gen.ts) write every header once,
// in place, for speed. What they build must be byte for byte what
// test/helpers/packet.ts's builders make of the same random draws: here are
// gen.ts's l3() and vxlanPacket() as they were written with those builders,
// and frames from both, seed by seed.
import { describe, expect, it } from 'vitest';
import { frame, l3, mutate, Rng, vxlanPacket, type Addrs } from '../fuzz/gen.js';
import { eth, icmpEcho, icmpError, ipv4, IPPROTO, tcp4, udp4, vxlan } from '../helpers/packet.js';

function slowL3(r: Rng, a: Addrs): Buffer {
  const src = r.pick(a.srcs ?? a.ips);
  const dst = r.pick(a.ips);
  const sport = r.pick(a.ports);
  const dport = r.pick(a.ports);
  const data = r.bytes(r.int(24));
  const opts = r.chance(0.1) ? { options: Buffer.from([1, 1, 1, 0]) } : {};
  const frag = r.chance(0.1) ? { mf: r.chance(0.5), fragOffset: r.int(4) } : {};
  switch (r.int(5)) {
    case 0: return udp4({ src, dst, sport, dport, ...opts, ...frag }, data);
    case 1: return tcp4({ src, dst, sport, dport, flags: r.pick(['S', 'SA', 'A', 'PA', 'FA', 'R']), seq: r.u32(), ack: r.u32(), ...opts, ...frag }, data);
    case 2: return ipv4({ src, dst, proto: IPPROTO.ICMP, ...opts, ...frag }, icmpEcho({ type: r.pick([0, 8] as const), id: r.pick(a.ports), seq: r.int(65536) }, data));
    case 3: {
      const quoted = r.chance(0.8) ? slowL3(r, a) : r.bytes(r.int(40));
      return ipv4({ src, dst, proto: IPPROTO.ICMP, ...opts }, icmpError({ type: r.pick([3, 11, 12]), code: r.int(5), quote: r.int(12) }, quoted));
    }
    default: return ipv4({ src, dst, proto: r.pick([IPPROTO.UDP, IPPROTO.TCP, IPPROTO.ICMP, 47, 0]), ...opts, ...frag }, data);
  }
}

function slowVxlan(r: Rng, a: Addrs, vnis: readonly number[], inner: Buffer, outer: { src: string; dst: string }): Buffer {
  const body = r.chance(0.1) ? eth({ dst: r.pick(a.macs), src: r.pick(a.macs) }, slowVxlan(r, a, vnis, inner, outer)) : inner;
  return udp4({ src: outer.src, dst: outer.dst, sport: 49152 + r.int(1000), dport: 4789, csum: r.chance(0.5) ? 0 : true },
    vxlan({ vni: r.pick(vnis), flags: r.chance(0.95) ? 0x08 : r.int(256) }, body));
}

const A: Addrs = {
  macs: ['02:00:00:00:00:0a', 'ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:01'],
  ips: ['10.0.0.1', '192.0.2.254', '224.0.0.1', '255.255.255.255', '0.0.0.0'], srcs: ['198.51.100.7', '10.0.0.1'],
  ports: [53, 80, 4789, 40000, 65535],
};
const OUTER = { src: '192.0.2.1', dst: '192.0.2.2' };

describe('fuzz frame builders', () => {
  it('build what packet.ts builds from the same draws: IPv4 of every kind, VXLAN (in VXLAN), tagged frames, mutations', () => {
    for (const seed of [1, 2, 0xdeadbeef]) {
      const fast = new Rng(seed);
      const slow = new Rng(seed);
      for (let i = 0; i < 20_000; i++) {
        let got: Buffer;
        let want: Buffer;
        switch (i % 4) {
          case 0: got = l3(fast, A); want = slowL3(slow, A); break;
          case 1: got = vxlanPacket(fast, A, [1, 0xffffff], l3(fast, A), OUTER); want = slowVxlan(slow, A, [1, 0xffffff], slowL3(slow, A), OUTER); break;
          case 2: got = frame(fast, A, [0, 1, 4095], l3(fast, A)); want = frame(slow, A, [0, 1, 4095], slowL3(slow, A)); break;
          default: got = mutate(fast, frame(fast, A, [1], l3(fast, A), 0x0800, 1)).frame; want = mutate(slow, frame(slow, A, [1], slowL3(slow, A), 0x0800, 1)).frame;
        }
        if (!got.equals(want)) expect(`seed ${seed} frame ${i}: ${got.toString('hex')}`).toBe(`seed ${seed} frame ${i}: ${want.toString('hex')}`);
      }
      expect(fast.u32(), 'the same number of draws').toBe(slow.u32());
    }
  });
});
