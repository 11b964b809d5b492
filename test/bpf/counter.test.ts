// The counting program through BPF_PROG_RUN: verdict, bytes out, map effects.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COUNTER } from '../../src/objects/counter.js';
import type { BpfObject } from '../../src/sys/libbpf.js';
import { eth, ETH_P, udp4 } from '../helpers/packet.js';
import { builtObject, giveSlots, ifCounters, PinRoot, TC, XDP } from '../helpers/bpf.js';

const LO = 1; // BPF_PROG_RUN delivers on the loopback device of the current netns

const frame = eth(
  { dst: '02:00:00:00:00:02', src: '02:00:00:00:00:01', type: ETH_P.IPV4 },
  udp4({ src: '10.0.0.1', dst: '10.0.0.2', sport: 1000, dport: 2000 }, Buffer.from('payload!')),
);

describe('counter program', () => {
  let pins: PinRoot;
  let obj: BpfObject;
  const stats = () => {
    const c = ifCounters(obj, LO);
    if (!c) return undefined;
    const { rx_packets, rx_bytes, ...rest } = c;
    expect(Object.entries(rest).filter(([, v]) => v !== 0n)).toEqual([]); // the counter only counts rx
    return { rx_packets, rx_bytes };
  };

  beforeAll(() => {
    pins = new PinRoot('counter');
    obj = pins.open(builtObject(COUNTER.object));
    giveSlots(obj, [LO]);
  });
  afterAll(() => pins.cleanup());

  it('XDP: passes the frame unchanged and counts it on the ingress interface', () => {
    expect(stats()).toEqual({ rx_packets: 0n, rx_bytes: 0n }); // attaching gave it zeroed counters
    const r = obj.program(COUNTER.programs.xdp).testRun({ data: frame });
    expect(r.retval).toBe(XDP.PASS);
    expect(r.data.equals(frame)).toBe(true);
    expect(stats()).toEqual({ rx_packets: 1n, rx_bytes: BigInt(frame.length) });
  });

  it('XDP: counts every repetition', () => {
    obj.program(COUNTER.programs.xdp).testRun({ data: frame, repeat: 1000 });
    expect(stats()).toEqual({ rx_packets: 1001n, rx_bytes: 1001n * BigInt(frame.length) });
  });

  it('tc: the twin from the same C logic passes and counts skb->len', () => {
    const small = eth({ dst: '02:00:00:00:00:02', src: '02:00:00:00:00:01', type: ETH_P.ARP }, Buffer.alloc(46));
    expect(small.length).toBe(60);
    const r = obj.program(COUNTER.programs.tc).testRun({ data: small });
    expect(r.retval).toBe(TC.OK);
    expect(r.data.equals(small)).toBe(true);
    expect(stats()).toEqual({ rx_packets: 1002n, rx_bytes: 1001n * BigInt(frame.length) + 60n });
  });

  it('pins its maps by name, and a second load adopts them instead of making new ones', () => {
    const again = pins.open(builtObject(COUNTER.object));
    expect(again.map(COUNTER.maps.ifStats).info.id).toBe(obj.map(COUNTER.maps.ifStats).info.id);
    expect(again.map(COUNTER.maps.drops).info.id).toBe(obj.map(COUNTER.maps.drops).info.id);
  });
});
