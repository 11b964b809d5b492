// The generator's frames (bench/gen.ts): the VXLAN template of the decap rows
// must be what a real VTEP sends, byte for byte, checksums valid.
import { describe, expect, it } from 'vitest';
import { genFrame, type GenOptions } from '../../bench/gen.js';
import { eth, hex, parse, udp4, vxlan } from '../helpers/packet.js';

const spec: GenOptions = {
  iface: 'g0', srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '10.99.0.1', dstIp: '10.99.0.2',
  sport: 1024, dport: 9, size: 128, flows: 1, varyMac: false, seconds: 1,
};
const outer = { vni: 1, srcMac: '02:00:00:00:01:01', dstMac: '02:00:00:00:01:02', srcIp: '10.98.0.2', dstIp: '10.98.0.1' };

// The helpers' builder sets DF by default; the generator sends plain IPv4 (no flags), id 0, TTL 64.
const innerExpected = eth({ dst: spec.dstMac, src: spec.srcMac },
  udp4({ src: spec.srcIp, dst: spec.dstIp, sport: 1024, dport: 9, csum: 0, df: false }, Buffer.alloc(128 - 42)));

describe('generator frames', () => {
  it('a plain UDP frame: --size bytes, byte-exact, 42 header bytes restored', () => {
    const { frame, headerBytes } = genFrame(spec);
    expect(hex(frame)).toBe(hex(innerExpected));
    expect(headerBytes).toBe(42);
    expect(parse(frame).ipv4?.headerChecksumValid).toBe(true);
  });

  it('the VXLAN template: the same frame inside outer Eth/IPv4/UDP 4789/VXLAN, byte-exact, checksums valid', () => {
    const { frame, headerBytes } = genFrame({ ...spec, vxlan: outer });
    const expected = eth({ dst: outer.dstMac, src: outer.srcMac },
      udp4({ src: outer.srcIp, dst: outer.dstIp, sport: 49152, dport: 4789, csum: 0, df: false }, vxlan({ vni: 1 }, innerExpected)));
    expect(hex(frame)).toBe(hex(expected));
    expect(frame.length).toBe(128 + 50);
    expect(headerBytes).toBe(50 + 42); // the inner headers too: a decap downstream rewrites them in place
    const p = parse(frame);
    expect(p.ipv4).toMatchObject({ src: outer.srcIp, dst: outer.dstIp, len: 164, ttl: 64, headerChecksumValid: true });
    expect(p.udp).toMatchObject({ dport: 4789, len: 144, checksum: 0 });
    expect(p.vxlan).toMatchObject({ flags: 0x08, vni: 1 });
    expect(p.vxlan!.inner.ipv4).toMatchObject({ src: spec.srcIp, dst: spec.dstIp, len: 114, headerChecksumValid: true });
    expect(p.vxlan!.inner.udp).toMatchObject({ sport: 1024, dport: 9, len: 94 });
  });

  it('other VNIs and ports', () => {
    const { frame } = genFrame({ ...spec, vxlan: { ...outer, vni: 0xabcdef, port: 8472 } });
    expect(parse(frame).udp?.dport).toBe(8472);
    expect(frame.subarray(42, 50).toString('hex')).toBe('08000000abcdef00');
  });
});
