import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import {
  checksum, eth, fromHex, hex, icmpEcho, icmpError, ip4, ip4Str, ipv4, IPPROTO, mac, macStr, parse, parseIpv4,
  pseudoHeaderSum, tcp, tcp4, tcpFlags, tcpFlagStr, udp, udp4, vxlan, type Parsed,
} from '../helpers/packet.js';

const D = '02:00:00:00:00:02', S = '02:00:00:00:00:01';
const A = '10.0.0.1', B = '10.0.0.2';

// Expected frames below were computed independently (Python struct + its own RFC 1071 checksum).
const UDP_HEX = '02000000000202000000000108004500002112344000401114960a0000010a00000230390035000d779168656c6c6f';
const TCP_HEX = '02000000000202000000000108004500002f00074000400626c00a0000010a0000029c400050010203040a0b0c0d5018ffff10a20000474554202f0d0a';
const ICMP_HEX = '02000000000202000000000108004500002400000000400166d70a0000010a00000208002427424200016162636465666768';
const VXLAN_HEX = 'aabbccddee02aabbccddee01080045000053000040004011b746c0a80101c0a80102c35012b5003f00000800000000002a00' + UDP_HEX;

const udpFrame = () => eth({ dst: D, src: S }, udp4({ src: A, dst: B, id: 0x1234, sport: 12345, dport: 53 }, Buffer.from('hello')));
const tcpFrame = () =>
  eth({ dst: D, src: S }, tcp4({ src: A, dst: B, id: 7, sport: 40000, dport: 80, seq: 0x01020304, ack: 0x0a0b0c0d, flags: 'PA' }, Buffer.from('GET /\r\n')));
const icmpFrame = () =>
  eth({ dst: D, src: S }, ipv4({ src: A, dst: B, proto: IPPROTO.ICMP, df: false }, icmpEcho({ type: 8, id: 0x4242, seq: 1 }, Buffer.from('abcdefgh'))));
const vxlanFrame = (dport = 4789) =>
  eth({ dst: 'aa:bb:cc:dd:ee:02', src: 'aa:bb:cc:dd:ee:01' },
    udp4({ src: '192.168.1.1', dst: '192.168.1.2', sport: 50000, dport, csum: false }, vxlan({ vni: 42 }, udpFrame())));

describe('addresses', () => {
  it('converts MAC and IPv4 addresses both ways', () => {
    expect(mac('02:00:0a:FF:00:01').toString('hex')).toBe('02000aff0001');
    expect(macStr(fromHex('02000aff0001'))).toBe('02:00:0a:ff:00:01');
    expect(ip4('192.168.0.199').toString('hex')).toBe('c0a800c7');
    expect(ip4Str(fromHex('c0a800c7'))).toBe('192.168.0.199');
  });

  it('throws on malformed addresses', () => {
    for (const bad of ['', '02:00:00:00:00', '02:00:00:00:00:0g', '02:00:00:00:00:01:02', '0200.0000.0001', '2:0:0:0:0:1', '02-00-00-00-00-01'])
      expect(() => mac(bad), bad).toThrow(/malformed MAC/);
    for (const bad of ['', '10.0.0', '10.0.0.256', '1.2.3.4.5', 'a.b.c.d', '10..0.1'])
      expect(() => ip4(bad), bad).toThrow(/malformed IPv4/);
    expect(() => eth({ dst: Buffer.alloc(5), src: S })).toThrow(/6 bytes/);
  });
});

describe('checksum', () => {
  const classic = fromHex('4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7');

  it('matches the classic IPv4 header example and the RFC 1071 example', () => {
    expect(checksum(classic)).toBe(0xb861);
    const filled = Buffer.from(classic);
    filled.writeUInt16BE(0xb861, 10);
    expect(checksum(filled)).toBe(0);
    expect(checksum(fromHex('0001 f203 f4f5 f6f7'))).toBe(0x220d);
  });

  it('pads odd lengths with a zero byte and handles empty input', () => {
    expect(checksum(fromHex('01'))).toBe(0xfeff);
    expect(checksum(fromHex('0001 f203 f4f5 f6'))).toBe(checksum(fromHex('0001 f203 f4f5 f600')));
    expect(checksum(Buffer.alloc(0))).toBe(0xffff);
  });

  it('folds carries repeatedly', () => {
    expect(checksum(fromHex('ffff ffff 0001'))).toBe(0xfffe); // 0x1ffff -> 0x10000 -> 0x0001
    expect(checksum(fromHex('0001'), 0xffff)).toBe(0xfffe);
  });

  it('continues from a pseudo-header sum', () => {
    const seg = fromHex('3039 0035 000d 0000 6865 6c6c 6f');
    const ph = fromHex('0a000001 0a000002 0011 000d');
    expect(checksum(seg, pseudoHeaderSum(A, B, 17, 13))).toBe(checksum(Buffer.concat([ph, seg])));
    expect(checksum(seg, pseudoHeaderSum(A, B, 17, 13))).toBe(0x7791);
  });
});

describe('builders', () => {
  it('builds the classic IPv4 header', () => {
    const pkt = ipv4({ src: '192.168.0.1', dst: '192.168.0.199', proto: IPPROTO.UDP }, Buffer.alloc(0x73 - 20));
    expect(pkt.length).toBe(0x73);
    expect(pkt.subarray(0, 20).toString('hex')).toBe('45000073000040004011b861c0a80001c0a800c7');
  });

  it('builds byte-exact UDP, TCP, ICMP echo and VXLAN frames', () => {
    expect(udpFrame().toString('hex')).toBe(UDP_HEX);
    expect(tcpFrame().toString('hex')).toBe(TCP_HEX);
    expect(icmpFrame().toString('hex')).toBe(ICMP_HEX);
    expect(vxlanFrame().toString('hex')).toBe(VXLAN_HEX);
  });

  it('composes layer by layer the same as udp4/tcp4', () => {
    const ph = { src: A, dst: B };
    expect(ipv4({ ...ph, proto: 17, id: 0x1234 }, udp({ sport: 12345, dport: 53 }, Buffer.from('hello'), ph)))
      .toEqual(udpFrame().subarray(14));
    expect(ipv4({ ...ph, proto: 6, id: 7 }, tcp({ sport: 40000, dport: 80, seq: 0x01020304, ack: 0x0a0b0c0d, flags: 'PA' }, Buffer.from('GET /\r\n'), ph)))
      .toEqual(tcpFrame().subarray(14));
  });

  it('inserts an 802.1Q tag', () => {
    const f = eth({ dst: D, src: S, vlan: 100, pcp: 3 }, udp4({ src: A, dst: B, id: 0x1234, sport: 12345, dport: 53 }, Buffer.from('hello')));
    expect(f.subarray(12, 18).toString('hex')).toBe('810060640800');
    expect(Buffer.concat([f.subarray(0, 12), f.subarray(16)])).toEqual(udpFrame());
    expect(() => eth({ dst: D, src: S, vlan: 4096 })).toThrow(RangeError);
    expect(() => eth({ dst: D, src: S, vlan: 1, pcp: 8 })).toThrow(RangeError);
  });

  it('handles UDP checksum options', () => {
    const off = udp({ sport: 1, dport: 2, csum: false }, Buffer.from('x'));
    expect(off.toString('hex')).toBe('0001000200090000' + '78');
    expect(udp({ sport: 1, dport: 2, csum: 0xbeef }, Buffer.alloc(0)).readUInt16BE(6)).toBe(0xbeef);
    expect(() => udp({ sport: 1, dport: 2 }, Buffer.alloc(0))).toThrow(/pseudo-header/);
    // A computed checksum of 0 is sent as 0xffff.
    const ph = { src: A, dst: B };
    const c0 = udp({ sport: 1, dport: 2 }, Buffer.alloc(2), ph).readUInt16BE(6);
    const zero = udp({ sport: 1, dport: 2 }, Buffer.from([c0 >> 8, c0 & 0xff]), ph);
    expect(zero.readUInt16BE(6)).toBe(0xffff);
    expect(parseIpv4(ipv4({ ...ph, proto: 17 }, zero)).udp).toMatchObject({ checksum: 0xffff, checksumValid: true });
  });

  it('encodes TCP flags', () => {
    expect(tcpFlags('S')).toBe(0x02);
    expect(tcpFlags('SA')).toBe(0x12);
    expect(tcpFlags('PA')).toBe(0x18);
    expect(tcpFlags('FA')).toBe(0x11);
    expect(tcpFlags('R')).toBe(0x04);
    expect(tcpFlagStr(0x12)).toBe('SA');
    expect(() => tcpFlags('SX')).toThrow(/unknown TCP flag/);
  });

  it('builds IPv4 options and fragments', () => {
    const withOpts = ipv4({ src: A, dst: B, proto: 17, options: fromHex('01010100') });
    expect(withOpts.subarray(0, 4).toString('hex')).toBe('46000018');
    expect(checksum(withOpts.subarray(0, 24))).toBe(0);
    expect(() => ipv4({ src: A, dst: B, proto: 17, options: fromHex('01') })).toThrow(RangeError);
    const frag = ipv4({ src: A, dst: B, proto: 17, mf: true, fragOffset: 185 });
    expect(frag.readUInt16BE(6)).toBe(0x2000 | 185); // no DF on fragments by default
    expect(ipv4({ src: A, dst: B, proto: 17 }).readUInt16BE(6)).toBe(0x4000);
  });

  it('builds ICMP errors quoting the original header and 8 bytes of L4', () => {
    const orig = tcp4({ src: A, dst: B, sport: 40000, dport: 80, flags: 'S' }, Buffer.alloc(100));
    const err = icmpError({ type: 3, code: 4, mtu: 1400 }, orig);
    expect(err.length).toBe(8 + 20 + 8);
    expect(err.subarray(0, 2).toString('hex')).toBe('0304');
    expect(err.subarray(4, 8).toString('hex')).toBe('00000578');
    expect(err.subarray(8)).toEqual(orig.subarray(0, 28));
    expect(checksum(err)).toBe(0);
  });

  it('builds VXLAN headers', () => {
    expect(vxlan({ vni: 0xabcdef }, Buffer.alloc(0)).toString('hex')).toBe('08000000abcdef00');
    expect(() => vxlan({ vni: 1 << 24 }, Buffer.alloc(0))).toThrow();
  });
});

describe('parse', () => {
  it('decodes a UDP frame', () => {
    expect(parse(udpFrame())).toEqual({
      eth: { dst: D, src: S, type: 0x0800 },
      ipv4: {
        src: A, dst: B, proto: 17, ttl: 64, id: 0x1234, tos: 0, flags: 0b010, fragOffset: 0, len: 33, ihl: 20,
        checksum: 0x1496, headerChecksumValid: true,
      },
      udp: { sport: 12345, dport: 53, len: 13, checksum: 0x7791, checksumValid: true },
      payload: Buffer.from('hello'),
    } satisfies Parsed);
  });

  it('decodes TCP and round-trips every common flag combination', () => {
    expect(parse(tcpFrame())).toMatchObject({
      tcp: { sport: 40000, dport: 80, seq: 0x01020304, ack: 0x0a0b0c0d, flags: 'PA', win: 65535, checksum: 0x10a2, checksumValid: true },
      payload: Buffer.from('GET /\r\n'),
    });
    for (const flags of ['S', 'SA', 'A', 'F', 'FA', 'R', 'PA', 'RA']) {
      const p = parse(eth({ dst: D, src: S }, tcp4({ src: A, dst: B, sport: 1, dport: 2, seq: 0xffffffff, flags, win: 512 })));
      expect(p.tcp).toMatchObject({ flags, seq: 0xffffffff, win: 512, checksumValid: true });
      expect(p.truncated).toBeUndefined();
    }
  });

  it('decodes ICMP echo and ICMP errors', () => {
    expect(parse(icmpFrame())).toMatchObject({
      ipv4: { proto: 1, flags: 0, headerChecksumValid: true },
      icmp: { type: 8, code: 0, id: 0x4242, seq: 1, checksum: 0x2427, checksumValid: true },
      payload: Buffer.from('abcdefgh'),
    });
    const orig = udp4({ src: B, dst: A, sport: 53, dport: 12345, ttl: 1 }, Buffer.alloc(30));
    const err = parse(eth({ dst: D, src: S }, ipv4({ src: '10.0.0.254', dst: B, proto: 1 }, icmpError({ type: 11, code: 0 }, orig))));
    expect(err.truncated).toBeUndefined();
    expect(err.icmp).toMatchObject({ type: 11, code: 0, checksumValid: true });
    expect(err.icmp?.original).toMatchObject({ ipv4: { src: B, dst: A, ttl: 1, len: 58 }, udp: { sport: 53, dport: 12345 }, truncated: true });
    const ptb = parse(eth({ dst: D, src: S }, ipv4({ src: B, dst: A, proto: 1 }, icmpError({ type: 3, code: 4, mtu: 1400 }, orig))));
    expect(ptb.icmp).toMatchObject({ type: 3, code: 4, mtu: 1400, checksumValid: true });
  });

  it('decodes a VLAN tag', () => {
    const p = parse(eth({ dst: D, src: S, vlan: 100, pcp: 3 }, udp4({ src: A, dst: B, sport: 1, dport: 2 }, Buffer.from('hi'))));
    expect(p.eth).toEqual({ dst: D, src: S, type: 0x0800, vlan: 100, pcp: 3 });
    expect(p.udp).toMatchObject({ sport: 1, dport: 2, checksumValid: true });
  });

  it('decodes VXLAN inside UDP on 4789 and 8472', () => {
    const inner = parse(udpFrame());
    for (const dport of [4789, 8472]) {
      const p = parse(vxlanFrame(dport));
      expect(p.udp).toEqual({ sport: 50000, dport, len: 8 + 8 + UDP_HEX.length / 2, checksum: 0 });
      expect(p.vxlan).toEqual({ flags: 0x08, vni: 42, inner });
      expect(p.payload).toBeUndefined();
      expect(p.truncated).toBeUndefined();
    }
    expect(parse(vxlanFrame(4790)).vxlan).toBeUndefined();
  });

  it('flags bad checksums', () => {
    const flip = (b: Buffer, off = b.length - 1) => (b.writeUInt8(b.readUInt8(off) ^ 1, off), b);
    expect(parse(flip(udpFrame(), 14 + 8)).ipv4?.headerChecksumValid).toBe(false); // ttl
    expect(parse(flip(tcpFrame())).tcp?.checksumValid).toBe(false);
    expect(parse(flip(udpFrame())).udp?.checksumValid).toBe(false);
    expect(parse(flip(icmpFrame())).icmp?.checksumValid).toBe(false);
  });

  it('marks a UDP length beyond the IP payload as truncated', () => {
    const f = udpFrame();
    f.writeUInt16BE(14, 14 + 20 + 4); // one byte more than the IP payload holds
    expect(parse(f)).toMatchObject({ ipv4: { headerChecksumValid: true }, udp: { len: 14, checksumValid: false }, truncated: true });
  });

  it('ignores Ethernet padding and leaves non-first fragments undecoded', () => {
    const padded = Buffer.concat([udpFrame(), Buffer.alloc(60 - udpFrame().length)]);
    expect(parse(padded)).toEqual(parse(udpFrame()));
    const frag = parse(eth({ dst: D, src: S }, ipv4({ src: A, dst: B, proto: 17, fragOffset: 185 }, Buffer.from('tail'))));
    expect(frag.ipv4).toMatchObject({ flags: 0, fragOffset: 185 });
    expect(frag.udp).toBeUndefined();
    expect(frag.payload).toEqual(Buffer.from('tail'));
  });

  it('keeps non-IPv4 payloads raw', () => {
    const p = parse(eth({ dst: 'ff:ff:ff:ff:ff:ff', src: S, type: 0x0806 }, Buffer.from('arp?')));
    expect(p).toEqual({ eth: { dst: 'ff:ff:ff:ff:ff:ff', src: S, type: 0x0806 }, payload: Buffer.from('arp?') });
  });

  it('never throws on truncated frames and marks them truncated', () => {
    const orig = udp4({ src: B, dst: A, sport: 53, dport: 12345 }, Buffer.alloc(30));
    const samples = [
      udpFrame(), tcpFrame(), icmpFrame(), vxlanFrame(),
      eth({ dst: D, src: S, vlan: 7 }, tcp4({ src: A, dst: B, sport: 1, dport: 2, flags: 'S' })),
      eth({ dst: D, src: S }, ipv4({ src: A, dst: B, proto: 1 }, icmpError({ type: 3, code: 4, mtu: 1400 }, orig))),
    ];
    for (const frame of samples) {
      expect(parse(frame).truncated).toBeUndefined();
      for (let n = 0; n < frame.length; n++) {
        let p: Parsed | undefined;
        expect(() => (p = parse(frame.subarray(0, n))), `${n}/${frame.length}\n${hex(frame)}`).not.toThrow();
        expect(p?.truncated, `length ${n}`).toBe(true);
      }
    }
  });

  it('never throws on corrupted frames', () => {
    let seed = 1;
    const rand = (m: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % m);
    const base = [vxlanFrame(), tcpFrame(), icmpFrame()];
    for (let i = 0; i < 3000; i++) {
      const f = Buffer.from(base[i % base.length]!);
      for (let k = 0; k < 1 + rand(4); k++) f[rand(f.length)] = rand(256);
      const n = rand(f.length + 1);
      expect(() => parse(f.subarray(0, n)), hex(f)).not.toThrow();
    }
  });
});

describe('hex', () => {
  it('dumps 16 bytes per line with offsets', () => {
    expect(hex(fromHex('000102030405060708090a0b0c0d0e0f 10'))).toBe(
      '0000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f\n0010  10');
    expect(hex(Buffer.alloc(0))).toBe('');
    expect(() => fromHex('abc')).toThrow(/malformed hex/);
  });
});
