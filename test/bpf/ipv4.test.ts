// One IPv4 header check (bpf/lib/ipv4.h) for VXLAN decap and NAT: both
// readers judge every malformed header by the same reason, and VXLAN decap
// checks the options before it looks at the protocol (a non-UDP packet whose
// options are missing from the data is dropped as truncated, no longer passed
// to the stack). The fixture runs both readers on one frame; skb->mark makes
// the packet longer than its data, as a paged skb is.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DROP_REASONS } from '../../src/objects/stats.js';
import type { BpfObject } from '../../src/sys/libbpf.js';
import { fixtureObject, PinRoot } from '../helpers/bpf.js';
import { eth, ipv4, IPPROTO } from '../helpers/packet.js';
import { ROOT } from '../helpers/sys.js';

const MAC = { dst: '02:00:00:00:00:01', src: '02:00:00:00:00:02' };
/** A code the readers return, read from its C enum so the two cannot drift. */
const libCode = (file: string, name: string) => Number(new RegExp(`\\b${name}\\s*=\\s*(\\d+)`).exec(readFileSync(join(ROOT, 'bpf/lib', file), 'utf8'))![1]);
const VX_RX_NOT_OURS = libCode('vx_encap.h', 'VX_RX_NOT_OURS');
const NAT_L4 = libCode('nat_parse.h', 'NAT_L4');
const OPTIONS = Buffer.from('01'.repeat(40), 'hex'); // 40 bytes of NOP options: a 60-byte header

const packet = (proto: number, options = OPTIONS) =>
  eth(MAC, ipv4({ src: '192.0.2.2', dst: '192.0.2.1', proto, options }, Buffer.from('0800000000010001' + 'ab'.repeat(8), 'hex'))); // an ICMP echo request

/** A copy of an IPv4 frame with the header byte at `at` (from the IP header) set to v. */
function poke(f: Buffer, at: number, v: number, width = 1): Buffer {
  const b = Buffer.from(f);
  b.writeUIntBE(v, 14 + at, width);
  return b;
}

describe('one IPv4 header check for VXLAN decap and NAT', () => {
  let pins: PinRoot;
  let o: BpfObject;
  beforeAll(() => {
    pins = new PinRoot('ipv4');
    o = pins.open(fixtureObject('ipv4'));
  });
  afterAll(() => pins?.cleanup());

  /** What each reader returns: a drop reason's name, or the reader's own code. */
  function judge(frame: Buffer, beyondData = 0) {
    const ctx = Buffer.alloc(12); // struct __sk_buff up to mark: len, pkt_type, mark
    ctx.writeUInt32LE(beyondData, 8);
    const run = (prog: string) => {
      const r = o.program(prog).testRun({ data: frame, ctx }).retval | 0;
      return r < 0 ? DROP_REASONS[-r] : r;
    };
    return { vxlan: run('xn_ipv4_vx'), nat: run('xn_ipv4_nat') };
  }

  it('drops a non-UDP packet whose options are missing from its data (VXLAN decap passed it to the stack before)', () => {
    const full = packet(IPPROTO.ICMP);
    const cut = full.subarray(0, 14 + 20 + 8); // the fixed header and 8 bytes of 40 bytes of options
    expect(judge(cut, full.length - cut.length)).toEqual({ vxlan: 'truncated-ipv4', nat: 'truncated-ipv4' });
    // UDP was dropped so before, and still is
    const udp = packet(IPPROTO.UDP);
    expect(judge(udp.subarray(0, 42), udp.length - 42)).toEqual({ vxlan: 'truncated-ipv4', nat: 'truncated-ipv4' });
    // the same packet whole: not VXLAN's (to the stack), NAT's to translate
    expect(judge(full)).toEqual({ vxlan: VX_RX_NOT_OURS, nat: NAT_L4 });
  });

  it('judges every malformed header by the same reason in both readers', () => {
    const f = packet(IPPROTO.ICMP, Buffer.alloc(0));
    // (shorter than the fixed header: BPF_PROG_RUN refuses an IPv4 skb without 20 bytes of it; the fuzz tier covers it)
    const cases: Array<[string, Buffer, string]> = [
      ['version 6', poke(f, 0, 0x65), 'malformed-ipv4'],
      ['header length 16 bytes', poke(f, 0, 0x44), 'malformed-ipv4'],
      ['total length below the header length', poke(f, 2, 19, 2), 'malformed-ipv4'],
      ['total length beyond the frame', poke(f, 2, f.length - 14 + 1, 2), 'truncated-ipv4'],
      ['header length beyond the frame', poke(f, 0, 0x4f).subarray(0, 14 + 40), 'malformed-ipv4'], // 60 > total length 36
      ['options and total length beyond the frame', poke(poke(f, 0, 0x4f), 2, 76, 2), 'truncated-ipv4'],
    ];
    for (const [what, frame, reason] of cases) expect(judge(frame), what).toEqual({ vxlan: reason, nat: reason });
  });

  it('accepts what the kernel accepts: Ethernet padding after the packet, options present', () => {
    const padded = Buffer.concat([packet(IPPROTO.ICMP), Buffer.alloc(20)]);
    expect(judge(padded)).toEqual({ vxlan: VX_RX_NOT_OURS, nat: NAT_L4 });
  });
});
