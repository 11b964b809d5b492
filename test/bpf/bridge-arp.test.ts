// The bridge's ARP responder (xn_arp): requests for known addresses answered in the datapath, byte-
// exact; everything else flooded as before.
// The bench (namespace, objects, captures, reset before each test): ./bridge-world.ts.
import { describe, expect, it } from 'vitest';
import { ArpEntry, ArpKey, BRIDGE } from '../../src/objects/bridge.js';
import { TC, XDP } from '../helpers/bpf.js';
import { eth, ETH_P, hex, ip4, mac } from '../helpers/packet.js';
import { A, B, BCAST, BR, BR_MAC, bridgeWorld, C } from './bridge-world.js';

describe('bridge programs: ARP responder', () => {
  const w = bridgeWorld();
  const { captured, map, stats, tcRun, xdpSend, xdpVerdict } = w;

  function arp(o: { op: 1 | 2; dst: string; src: string; sha: string; spa: string; tha: string; tpa: string; vlan?: number }): Buffer {
    const body = Buffer.concat([
      Buffer.from([0, 1, 0x08, 0x00, 6, 4, 0, o.op]), mac(o.sha), ip4(o.spa), mac(o.tha), ip4(o.tpa),
    ]);
    return eth({ dst: o.dst, src: o.src, type: ETH_P.ARP, vlan: o.vlan }, body);
  }
  const ZERO = '00:00:00:00:00:00';
  const request = (tpa: string, vlan?: number, sha = A, spa = '10.0.0.1') =>
    arp({ op: 1, dst: BCAST, src: sha, sha, spa, tha: ZERO, tpa, vlan });
  function knowIp(ip: string, m: string, vid = 1) {
    map(BRIDGE.maps.arp).update(ArpKey.encode({ bridge: BR, vid, pad: 0, ip: ip4(ip).readUInt32BE(0) }), ArpEntry.encode({ mac: mac(m), flags: 0 }));
  }

  describe('ARP responder (xn_arp)', () => {
    const REPLY_B = arp({ op: 2, dst: A, src: B, sha: B, spa: '10.0.0.2', tha: A, tpa: '10.0.0.1' });

    it('XDP answers a request for a known address out of the ingress port, without flooding', () => {
      knowIp('10.0.0.2', B);
      expect(xdpVerdict('p1', request('10.0.0.2'))).toBe(XDP.TX);
      expect(xdpSend('p1', request('10.0.0.2'))).toEqual({ p1: [hex(REPLY_B)] });
      expect(stats('p1')).toMatchObject({ rx_packets: 2n, arp_replied: 2n, flooded: 0n, tx_packets: 2n, dropped: 0n });
      expect(stats('p2')?.tx_packets ?? 0n).toBe(0n);
    });

    it('XDP answers on a trunk in the request\'s VLAN, tagged as it came', () => {
      knowIp('10.0.0.2', B, 10);
      const reply = arp({ op: 2, dst: C, src: B, sha: B, spa: '10.0.0.2', tha: C, tpa: '10.0.0.3', vlan: 10 });
      expect(xdpSend('p3', request('10.0.0.2', 10, C, '10.0.0.3'))).toEqual({ p3: [hex(reply)] });
      // the same address in VLAN 1 is not known: flooded as before
      expect(xdpSend('p1', request('10.0.0.2'))).toEqual({ p2: [hex(request('10.0.0.2'))], p3: [hex(request('10.0.0.2', 1))] });
    });

    it('answers for the gateway with the bridge MAC', () => {
      knowIp('10.0.0.254', BR_MAC);
      const reply = arp({ op: 2, dst: A, src: BR_MAC, sha: BR_MAC, spa: '10.0.0.254', tha: A, tpa: '10.0.0.1' });
      expect(xdpSend('p1', request('10.0.0.254'))).toEqual({ p1: [hex(reply)] });
    });

    it('floods unknown addresses, gratuitous ARP, replies and its owner\'s own probes as before', () => {
      knowIp('10.0.0.2', B);
      const probe = request('10.0.0.2', undefined, B, '0.0.0.0'); // duplicate address detection by the owner
      const garp = request('10.0.0.1', undefined, A, '10.0.0.1');
      const unknown = request('10.0.0.9');
      const reply = arp({ op: 2, dst: BCAST, src: A, sha: A, spa: '10.0.0.1', tha: ZERO, tpa: '10.0.0.2' });
      for (const f of [probe, garp, unknown, reply]) {
        expect(xdpSend('p1', f)).toEqual({ p2: [hex(f)], p3: [hex(eth({ dst: BCAST, src: f.subarray(6, 12).toString('hex').replace(/(..)(?!$)/g, '$1:'), type: ETH_P.ARP, vlan: 1 }, f.subarray(14)))] });
      }
      expect(stats('p1')).toMatchObject({ arp_replied: 0n, flooded: 4n });
    });

    it('leaves truncated ARP alone (flooded, not answered)', () => {
      knowIp('10.0.0.2', B);
      const cut = request('10.0.0.2').subarray(0, 14 + 27);
      expect(xdpVerdict('p1', cut)).toBe(XDP.REDIRECT);
      expect(stats('p1')!.arp_replied).toBe(0n);
    });

    it('tc answers the same way, redirecting back into the ingress port', () => {
      knowIp('10.0.0.2', B);
      const r = tcRun('p1', request('10.0.0.2'));
      expect(r.retval).toBe(TC.REDIRECT);
      expect(hex(r.data)).toBe(hex(REPLY_B));
      expect(captured()).toEqual({}); // no clone went anywhere
      expect(stats('p1')).toMatchObject({ arp_replied: 1n, flooded: 0n, tx_packets: 1n });
      expect(tcRun('p1', request('10.0.0.9')).retval).toBe(TC.SHOT); // unknown: flooded by clones
      expect(captured()).toEqual({ p2: [hex(request('10.0.0.9'))], p3: [hex(request('10.0.0.9', 1))] });
    });
  });
});
