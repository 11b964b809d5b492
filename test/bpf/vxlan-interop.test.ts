// The VXLAN VTEP against the Linux kernel's own vxlan device in a second namespace: each decapsulates
// what the other sends.
// The bench (namespace, objects, captures, reset before each test): ./vxlan-world.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BRIDGE, floodList, FloodKey, remoteList, Vtep, VTEP_FLAGS, VXLAN, VxPortKey } from '../../src/objects/bridge.js';
import { u32, ipv4ToNum } from '../../src/objects/codec.js';
import { BPF_XDP, linkCreate, XDP_FLAGS_DRV_MODE } from '../../src/sys/libbpf.js';
import { close, ifNameToIndex } from '../../src/sys/libc.js';
import { TC } from '../helpers/bpf.js';
import { ETH_P, hex, IPPROTO, parse } from '../helpers/packet.js';
import { inNs, netns, sh, veth } from '../helpers/sys.js';
import { arp, BCAST, linkMac, vxlanWorld } from './vxlan-world.js';

describe('VXLAN VTEP: interop', () => {
  const w = vxlanWorld();
  const { addBridge, addPort, capture, capturedRaw, fdb, map, slotOf, tcRun, xdpSend } = w;

  describe('interop with the Linux kernel\'s vxlan device', () => {
    // Our uplink up1 (192.0.3.1) faces kup (192.0.3.2) in namespace "kern",
    // where a kernel vxlan device vx0 (VNI 42, 10.42.0.2/24) sits. Bridge 2
    // has port p4 and VTEP 42 over up1.
    const BR2 = 2;
    const VNI2 = 42;
    const L2 = '192.0.3.1';
    const K = '192.0.3.2';
    const Q = '02:00:00:00:00:42'; // behind p4, 10.42.0.1
    const VX0 = '02:00:00:00:42:02';
    let kern: string;
    const ilinks: number[] = [];

    function kernelVxlan(port: number) {
      inNs(kern, 'ip', ['link', 'del', 'vx0']);
      sh('ip', ['-n', kern, 'link', 'add', 'vx0', 'address', VX0, 'type', 'vxlan', 'id', String(VNI2), 'local', K, 'remote', L2,
        'dstport', String(port), 'dev', 'kup']);
      sh('ip', ['-n', kern, 'addr', 'add', '10.42.0.2/24', 'dev', 'vx0']);
      sh('ip', ['-n', kern, 'link', 'set', 'vx0', 'up']);
    }
    function bridge2(port: number) {
      addBridge(BR2, '02:b0:00:00:00:02');
      const p4 = ifNameToIndex('p4');
      const up1 = ifNameToIndex('up1');
      slotOf(up1);
      addPort(BR2, p4, 1, [[1, true]]);
      map(BRIDGE.maps.flood).update(FloodKey.encode({ bridge: BR2, vid: 1, pad: 0 }), floodList([p4]));
      map(VXLAN.maps.vteps).update(u32(VNI2), Vtep.encode({
        bridge: BR2, vid: 1, flags: VTEP_FLAGS.LEARNING, local: ipv4ToNum(L2), ifindex: up1, port, pad: 0,
      }));
      map(VXLAN.maps.vlans).update(FloodKey.encode({ bridge: BR2, vid: 1, pad: 0 }), u32(VNI2));
      map(VXLAN.maps.ports).update(VxPortKey.encode({ local: ipv4ToNum(L2), port, pad: 0 }), u32(1));
      map(VXLAN.maps.remotes).update(u32(VNI2), remoteList([ipv4ToNum(K)]));
      kernelVxlan(port);
    }
    const vx0Rx = () => JSON.parse(sh('ip', ['-n', kern, '-s', '-j', 'link', 'show', 'vx0']))[0].stats64.rx.packets as number;
    /** Checks an ARP reply from vx0 to Q. */
    function expectReply(frames: Array<{ len: number; data: Buffer }> | undefined) {
      expect(frames).toHaveLength(1);
      const f = frames![0].data.subarray(0, frames![0].len);
      expect(parse(f).eth).toEqual({ dst: Q, src: VX0, type: ETH_P.ARP });
      expect(f.subarray(14, 42).toString('hex')).toBe(
        `0001080006040002${VX0.replace(/:/g, '')}0a2a0002${Q.replace(/:/g, '')}0a2a0001`);
    }

    beforeAll(() => {
      kern = netns('kern');
      for (const k of ['all', 'default']) sh('ip', ['netns', 'exec', kern, 'sysctl', '-qw', `net.ipv6.conf.${k}.disable_ipv6=1`]);
      veth(w.ns, 'up1', kern, 'kup', `${L2}/24`, `${K}/24`);
      veth(w.ns, 'p4', w.ns, 'p4x');
      sh('ip', ['netns', 'exec', w.ns, 'sysctl', '-qw', 'net.ipv4.conf.up1.forwarding=1']);
      sh('ip', ['-n', w.ns, 'neigh', 'replace', K, 'lladdr', linkMac(kern, 'kup'), 'dev', 'up1', 'nud', 'permanent']);
      sh('ip', ['-n', kern, 'neigh', 'replace', L2, 'lladdr', linkMac(w.ns, 'up1'), 'dev', 'kup', 'nud', 'permanent']);
      // gro: NAPI, so kup receives XDP redirects; tx off: the kernel finishes
      // its UDP checksum in software (veth would leave a partial one)
      sh('ip', ['netns', 'exec', kern, 'ethtool', '-K', 'kup', 'gro', 'on', 'tx', 'off']);
      ilinks.push(capture('p4x', 'p4'));
    });
    afterAll(() => {
      ilinks.forEach(close);
    });

    it('decapsulates what the kernel\'s vxlan device sends', () => {
      bridge2(4789);
      let onUp1: number | undefined = capture('up1', 'up1');
      try {
        inNs(kern, 'ping', ['-c', '1', '-W', '0.2', '10.42.0.9']); // vx0 floods an ARP request to its remote, us
        const frames = capturedRaw(1).up1 ?? [];
        const k = frames.map((x) => x.data.subarray(0, x.len)).find((x) => parse(x).vxlan);
        expect(k, 'the kernel sent VXLAN').toBeDefined();
        const kp = parse(k!);
        expect(kp.ipv4).toMatchObject({ src: K, dst: L2, proto: IPPROTO.UDP, headerChecksumValid: true });
        expect(kp.udp!.dport).toBe(4789);
        if (kp.udp!.checksum) expect(kp.udp!.checksumValid).toBe(true); // this kernel checksums; we accept either
        expect(kp.vxlan).toMatchObject({ flags: 0x08, vni: VNI2, inner: { eth: { dst: BCAST, src: VX0, type: ETH_P.ARP } } });
        close(onUp1);
        onUp1 = undefined;
        expect(xdpSend('up1', k!, 1)).toEqual({ p4: [hex(k!.subarray(50))] });
        expect(fdb(VX0, BR2)).toMatchObject({ ifindex: ifNameToIndex('up1'), remote: ipv4ToNum(K) });
      } finally {
        if (onUp1 !== undefined) close(onUp1);
      }
    });

    for (const port of [4789, 8472]) {
      it(`the kernel's vxlan device takes our frames and answers through our decap (port ${port})`, () => {
        bridge2(port);
        const up = linkCreate(w.br.program(VXLAN.programs.uplink).fd, ifNameToIndex('up1'), BPF_XDP, XDP_FLAGS_DRV_MODE, 'uplink');
        try {
          // tc: a broadcast ARP request, one copy to the kernel's VTEP
          const before = vx0Rx();
          expect(tcRun('p4', arp(BCAST, Q, '10.42.0.1', '10.42.0.2')).retval).toBe(TC.SHOT);
          expectReply(capturedRaw(1).p4);
          expect(vx0Rx()).toBe(before + 1);
          expect(fdb(Q, BR2)).toMatchObject({ ifindex: ifNameToIndex('p4'), remote: 0 });
          expect(fdb(VX0, BR2)).toMatchObject({ ifindex: ifNameToIndex('up1'), remote: ipv4ToNum(K) });
          // XDP: unicast now that vx0's MAC is learned behind the kernel's VTEP
          const req = arp(VX0, Q, '10.42.0.1', '10.42.0.2');
          const sent = xdpSend('p4', req, 1);
          expect(vx0Rx()).toBe(before + 2);
          expectReply(Object.keys(sent).length ? [{ len: 42, data: Buffer.from(sent.p4![0].replace(/^[0-9a-f]{4} {2}/gm, '').replace(/\s+/g, ''), 'hex') }] : undefined);
        } finally {
          close(up);
        }
      });
    }
  });
});
