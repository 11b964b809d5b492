// The NAT programs' translation, per hook (tc and XDP): TCP, UDP, ICMP echo and ICMP errors, port
// mappings and hairpin, byte-exact with valid checksums, and the conntrack entries each leaves.
// The bench (namespaces, the object, reset before each test): ./nat-world.ts.
import { describe, expect, it } from 'vitest';
import { CT_STATE, CT_STATE_NAMES } from '../../src/objects/nat.js';
import {
  checksum, eth, ETH_P, hex, icmpEcho, icmpError, ipv4, IPPROTO, parse, pseudoHeaderSum, tcp4, udp, udp4,
} from '../helpers/packet.js';
import {
  BR, C1, C2, expectChecksumsValid, fromC1, fromC2, fromGw, H, K, MAC, natWorld, Port, R, S, toC1, toC2, toGw,
} from './nat-world.js';

describe('NAT programs: translation', () => {
  const w = natWorld();
  const { ctStats, drops, flow, flows, ifx, masquerade, portmap, send, syn } = w;

  for (const hook of ['tc', 'xdp'] as const) {
    describe(hook, () => {
      it('masquerades a TCP SYN from a container and forwards it to the gateway', () => {
        const r = send(hook, 'ct0', syn());
        expect(r.verdict).toBe('redirect');
        expect(r.out).toBe(hex(toGw(tcp4({ src: H, dst: S, sport: 40000, dport: 80, flags: 'S', seq: 1000, ttl: 63 }))));
        expectChecksumsValid(r.frame);
        expect(flows()).toEqual([
          'tcp 172.17.0.2:40000 > 198.51.100.7:80 => 10.99.0.1:40000 > 198.51.100.7:80 syn-sent',
          'tcp 198.51.100.7:80 > 10.99.0.1:40000 => 198.51.100.7:80 > 172.17.0.2:40000 syn-sent reply',
        ]);
        expect(ctStats()).toMatchObject({ created: 1n, insert_failed: 0n, port_exhausted: 0n, port_retries: 0n });
      });

      it('translates the reply back to the container', () => {
        send(hook, 'ct0', syn());
        const r = send(hook, 'up0', fromGw(tcp4({ src: S, dst: H, sport: 80, dport: 40000, flags: 'SA', seq: 5000, ack: 1001 })));
        expect(r.verdict).toBe('redirect');
        expect(r.out).toBe(hex(toC1(tcp4({ src: S, dst: C1, sport: 80, dport: 40000, flags: 'SA', seq: 5000, ack: 1001, ttl: 63 }))));
        expectChecksumsValid(r.frame);
        expect(flow(IPPROTO.TCP, C1, 40000, S, 80).map((e) => e.state)).toEqual([CT_STATE.SYN_RECV, CT_STATE.SYN_RECV]);
      });

      it('masquerades UDP both ways; a zero checksum stays zero, a computed zero goes out as 0xffff', () => {
        const q = Buffer.from('dns query');
        let r = send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 5353, dport: 53 }, q)));
        expect(r.out).toBe(hex(toGw(udp4({ src: H, dst: S, sport: 5353, dport: 53, ttl: 63 }, q))));
        expectChecksumsValid(r.frame);
        r = send(hook, 'up0', fromGw(udp4({ src: S, dst: H, sport: 53, dport: 5353 }, Buffer.from('answer'))));
        expect(r.out).toBe(hex(toC1(udp4({ src: S, dst: C1, sport: 53, dport: 5353, ttl: 63 }, Buffer.from('answer')))));
        expectChecksumsValid(r.frame);
        expect(flow(IPPROTO.UDP, C1, 5353, S, 53).map((e) => CT_STATE_NAMES[e.state])).toEqual(['udp-replied', 'udp-replied']);

        r = send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 5353, dport: 53, csum: false }, q)));
        expect(r.out).toBe(hex(toGw(udp4({ src: H, dst: S, sport: 5353, dport: 53, ttl: 63, csum: false }, q))));

        // A payload word that makes the translated datagram's checksum compute to 0.
        const w = Buffer.alloc(2);
        for (let v = 0; v < 0x10000; v++) {
          w.writeUInt16BE(v);
          const seg = udp({ sport: 5353, dport: 53, csum: false }, w);
          if (checksum(seg, pseudoHeaderSum(H, S, IPPROTO.UDP, seg.length)) === 0) break;
        }
        r = send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 5353, dport: 53 }, w)));
        expect(r.out).toBe(hex(toGw(udp4({ src: H, dst: S, sport: 5353, dport: 53, ttl: 63 }, w))));
        expect(parse(r.frame).udp).toMatchObject({ checksum: 0xffff, checksumValid: true });
      });

      it('masquerades ICMP echo, keyed by its identifier', () => {
        const ping = Buffer.from('ping payload');
        let r = send(hook, 'ct0', fromC1(ipv4({ src: C1, dst: S, proto: IPPROTO.ICMP }, icmpEcho({ type: 8, id: 0x1234, seq: 7 }, ping))));
        expect(r.out).toBe(hex(toGw(ipv4({ src: H, dst: S, proto: IPPROTO.ICMP, ttl: 63 }, icmpEcho({ type: 8, id: 0x1234, seq: 7 }, ping)))));
        expectChecksumsValid(r.frame);
        r = send(hook, 'up0', fromGw(ipv4({ src: S, dst: H, proto: IPPROTO.ICMP }, icmpEcho({ type: 0, id: 0x1234, seq: 7 }, ping))));
        expect(r.out).toBe(hex(toC1(ipv4({ src: S, dst: C1, proto: IPPROTO.ICMP, ttl: 63 }, icmpEcho({ type: 0, id: 0x1234, seq: 7 }, ping)))));
        expectChecksumsValid(r.frame);
        expect(flows()).toEqual([
          'icmp 172.17.0.2:4660 > 198.51.100.7:4660 => 10.99.0.1:4660 > 198.51.100.7:4660 icmp',
          'icmp 198.51.100.7:4660 > 10.99.0.1:4660 => 198.51.100.7:4660 > 172.17.0.2:4660 icmp reply',
        ]);
      });

      it('maps a host port to a container, and translates its reply', () => {
        let r = send(hook, 'up0', fromGw(tcp4({ src: K, dst: H, sport: 5555, dport: 10080, flags: 'S', seq: 1 })));
        expect(r.verdict).toBe('redirect');
        expect(r.out).toBe(hex(toC2(tcp4({ src: K, dst: C2, sport: 5555, dport: 80, flags: 'S', seq: 1, ttl: 63 }))));
        expectChecksumsValid(r.frame);
        r = send(hook, 'ct0', fromC2(tcp4({ src: C2, dst: K, sport: 80, dport: 5555, flags: 'SA', seq: 9, ack: 2 })));
        expect(r.out).toBe(hex(toGw(tcp4({ src: H, dst: K, sport: 10080, dport: 5555, flags: 'SA', seq: 9, ack: 2, ttl: 63 }))));
        expectChecksumsValid(r.frame);
        r = send(hook, 'up0', fromGw(udp4({ src: K, dst: H, sport: 7777, dport: 10053 }, Buffer.from('q'))));
        expect(r.out).toBe(hex(toC2(udp4({ src: K, dst: C2, sport: 7777, dport: 53, ttl: 63 }, Buffer.from('q')))));
        expect(flows()).toEqual([
          'tcp 172.17.0.3:80 > 203.0.113.9:5555 => 10.99.0.1:10080 > 203.0.113.9:5555 syn-recv reply',
          'tcp 203.0.113.9:5555 > 10.99.0.1:10080 => 203.0.113.9:5555 > 172.17.0.3:80 syn-recv',
          'udp 172.17.0.3:53 > 203.0.113.9:7777 => 10.99.0.1:10053 > 203.0.113.9:7777 udp reply',
          'udp 203.0.113.9:7777 > 10.99.0.1:10053 => 203.0.113.9:7777 > 172.17.0.3:53 udp',
        ]);
      });

      it('maps only to the host\'s own addresses, and honours a mapping\'s interface', () => {
        const other = fromGw(tcp4({ src: K, dst: '10.99.0.77', sport: 5555, dport: 10080, flags: 'S' }));
        expect(send(hook, 'up0', other)).toMatchObject({ verdict: 'pass', out: hex(other) });
        portmap(ifx.up0, IPPROTO.TCP, 10443, C1, 443);
        expect(send(hook, 'up0', fromGw(tcp4({ src: K, dst: H, sport: 5555, dport: 10443, flags: 'S' }))).out)
          .toBe(hex(toC1(tcp4({ src: K, dst: C1, sport: 5555, dport: 443, flags: 'S', ttl: 63 }))));
        const inside = fromC2(tcp4({ src: C2, dst: H, sport: 5555, dport: 10443, flags: 'S' }));
        expect(send(hook, 'ct0', inside)).toMatchObject({ verdict: 'pass', out: hex(inside) });
        expect(flows()).toHaveLength(2);
      });

      it('hairpins: a container reaching a mapping through the host address comes back through the host', () => {
        // C1 -> H:10080 is C2:80, from H so that C2 answers through us.
        let r = send(hook, 'ct0', fromC1(tcp4({ src: C1, dst: H, sport: 41000, dport: 10080, flags: 'S' })));
        expect(r.verdict).toBe('redirect');
        expect(r.out).toBe(hex(toC2(tcp4({ src: H, dst: C2, sport: 41000, dport: 80, flags: 'S', ttl: 63 }))));
        expectChecksumsValid(r.frame);
        r = send(hook, 'ct0', fromC2(tcp4({ src: C2, dst: H, sport: 80, dport: 41000, flags: 'SA' })));
        expect(r.out).toBe(hex(toC1(tcp4({ src: H, dst: C1, sport: 10080, dport: 41000, flags: 'SA', ttl: 63 }))));
        expectChecksumsValid(r.frame);
        // C2 reaching its own mapping.
        r = send(hook, 'ct0', fromC2(tcp4({ src: C2, dst: H, sport: 42000, dport: 10080, flags: 'S' })));
        expect(r.out).toBe(hex(toC2(tcp4({ src: H, dst: C2, sport: 42000, dport: 80, flags: 'S', ttl: 63 }))));
        r = send(hook, 'ct0', fromC2(tcp4({ src: C2, dst: H, sport: 80, dport: 42000, flags: 'SA' })));
        expect(r.out).toBe(hex(toC2(tcp4({ src: H, dst: C2, sport: 10080, dport: 42000, flags: 'SA', ttl: 63 }))));
        expect(flows()).toContain('tcp 172.17.0.2:41000 > 10.99.0.1:10080 => 10.99.0.1:41000 > 172.17.0.3:80 syn-recv');
      });

      describe('ICMP errors about a translated flow', () => {
        const q = Buffer.from('dns query');
        it('port unreachable from the server: outer and quoted headers back to the container', () => {
          send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 5000, dport: 53 }, q)));
          const quoted = udp4({ src: H, dst: S, sport: 5000, dport: 53, ttl: 50 }, q); // as the server got it
          const r = send(hook, 'up0', fromGw(ipv4({ src: S, dst: H, proto: IPPROTO.ICMP, ttl: 60 }, icmpError({ type: 3, code: 3 }, quoted))));
          expect(r.verdict).toBe('redirect');
          const original = udp4({ src: C1, dst: S, sport: 5000, dport: 53, ttl: 50 }, q); // as C1 sent it (but the TTL)
          expect(r.out).toBe(hex(toC1(ipv4({ src: S, dst: C1, proto: IPPROTO.ICMP, ttl: 59 }, icmpError({ type: 3, code: 3 }, original)))));
          const p = expectChecksumsValid(r.frame);
          // The quoted UDP checksum is the one of C1's whole datagram, computed afresh.
          expect(p.icmp!.original!.udp!.checksum).toBe(original.readUInt16BE(26));
        });

        it('fragmentation needed from a router, quoting the whole TCP header: MTU kept, both checksums valid', () => {
          send(hook, 'ct0', syn());
          const quoted = tcp4({ src: H, dst: S, sport: 40000, dport: 80, flags: 'S', seq: 1000, ttl: 60 });
          const r = send(hook, 'up0', fromGw(ipv4({ src: R, dst: H, proto: IPPROTO.ICMP }, icmpError({ type: 3, code: 4, mtu: 1280, quote: 20 }, quoted))));
          const original = tcp4({ src: C1, dst: S, sport: 40000, dport: 80, flags: 'S', seq: 1000, ttl: 60 });
          expect(r.out).toBe(hex(toC1(ipv4({ src: R, dst: C1, proto: IPPROTO.ICMP, ttl: 63 }, icmpError({ type: 3, code: 4, mtu: 1280, quote: 20 }, original)))));
          const p = expectChecksumsValid(r.frame);
          expect(p.icmp).toMatchObject({ type: 3, code: 4, mtu: 1280 });
          expect(p.icmp!.original!.tcp).toMatchObject({ sport: 40000, dport: 80, checksumValid: true });
        });

        it('time exceeded for a ping: the quoted echo\'s identifier and checksum restored', () => {
          const ping = icmpEcho({ type: 8, id: 0x77, seq: 1 }, Buffer.from('abc'));
          send(hook, 'ct0', fromC1(ipv4({ src: C1, dst: S, proto: IPPROTO.ICMP }, ping)));
          const quoted = ipv4({ src: H, dst: S, proto: IPPROTO.ICMP, ttl: 1 }, ping);
          const r = send(hook, 'up0', fromGw(ipv4({ src: R, dst: H, proto: IPPROTO.ICMP }, icmpError({ type: 11, code: 0, quote: ping.length }, quoted))));
          const original = ipv4({ src: C1, dst: S, proto: IPPROTO.ICMP, ttl: 1 }, ping);
          expect(r.out).toBe(hex(toC1(ipv4({ src: R, dst: C1, proto: IPPROTO.ICMP, ttl: 63 }, icmpError({ type: 11, code: 0, quote: ping.length }, original)))));
          expect(expectChecksumsValid(r.frame).icmp!.original!.icmp).toMatchObject({ id: 0x77, checksumValid: true });
        });

        it('an error the container sends about a reply leaves from the host address', () => {
          send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 5000, dport: 53 }, q)));
          const reply = udp4({ src: S, dst: C1, sport: 53, dport: 5000, ttl: 63 }, Buffer.from('late answer'));
          const r = send(hook, 'ct0', fromC1(ipv4({ src: C1, dst: S, proto: IPPROTO.ICMP }, icmpError({ type: 3, code: 3 }, reply))));
          const asSent = udp4({ src: S, dst: H, sport: 53, dport: 5000, ttl: 63 }, Buffer.from('late answer'));
          expect(r.out).toBe(hex(toGw(ipv4({ src: H, dst: S, proto: IPPROTO.ICMP, ttl: 63 }, icmpError({ type: 3, code: 3 }, asSent)))));
          expectChecksumsValid(r.frame);
        });

        it('an error a mapped container sends goes out from the host address, about the host port', () => {
          send(hook, 'up0', fromGw(udp4({ src: K, dst: H, sport: 7777, dport: 10053 }, q)));
          const got = udp4({ src: K, dst: C2, sport: 7777, dport: 53, ttl: 63 }, q);
          const r = send(hook, 'ct0', fromC2(ipv4({ src: C2, dst: K, proto: IPPROTO.ICMP }, icmpError({ type: 3, code: 3 }, got))));
          const sent = udp4({ src: K, dst: H, sport: 7777, dport: 10053, ttl: 63 }, q);
          expect(r.out).toBe(hex(toGw(ipv4({ src: H, dst: K, proto: IPPROTO.ICMP, ttl: 63 }, icmpError({ type: 3, code: 3 }, sent)))));
          expectChecksumsValid(r.frame);
        });

        it('an error about a flow we do not know is left alone', () => {
          const quoted = udp4({ src: H, dst: S, sport: 5001, dport: 53 }, q);
          const f = fromGw(ipv4({ src: S, dst: H, proto: IPPROTO.ICMP }, icmpError({ type: 3, code: 3 }, quoted)));
          expect(send(hook, 'up0', f)).toMatchObject({ verdict: 'pass', out: hex(f) });
        });
      });

      it('gives a second inner host with the same source port another port, and keeps ports per destination', () => {
        send(hook, 'ct0', syn());
        const r = send(hook, 'ct0', fromC2(tcp4({ src: C2, dst: S, sport: 40000, dport: 80, flags: 'S', seq: 1000 })));
        const [e] = flow(IPPROTO.TCP, C2, 40000, S, 80);
        expect(e.to_sport).not.toBe(40000);
        expect(e.to_sport).toBeGreaterThanOrEqual(1024);
        expect(r.out).toBe(hex(toGw(tcp4({ src: H, dst: S, sport: e.to_sport, dport: 80, flags: 'S', seq: 1000, ttl: 63 }))));
        expect(ctStats()).toMatchObject({ created: 2n, port_retries: 1n });
        const back = send(hook, 'up0', fromGw(tcp4({ src: S, dst: H, sport: 80, dport: e.to_sport, flags: 'SA' })));
        expect(back.out).toBe(hex(toC2(tcp4({ src: S, dst: C2, sport: 80, dport: 40000, flags: 'SA', ttl: 63 }))));
        // Another destination: no collision, the port is kept.
        send(hook, 'ct0', fromC2(tcp4({ src: C2, dst: S, sport: 40000, dport: 81, flags: 'S' })));
        expect(flow(IPPROTO.TCP, C2, 40000, S, 81)[0].to_sport).toBe(40000);
      });

      it('counts and drops a flow when the port range is exhausted', () => {
        masquerade(20000, 20001);
        const a = send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 20000, dport: 80 })));
        const b = send(hook, 'ct0', fromC2(udp4({ src: C2, dst: S, sport: 20000, dport: 80 })));
        expect(parse(a.frame).udp!.sport).toBe(20000);
        expect(parse(b.frame).udp!.sport).toBe(20001);
        const f = fromC1(udp4({ src: C1, dst: S, sport: 20001, dport: 80 }));
        expect(send(hook, 'ct0', f)).toMatchObject({ verdict: 'drop', out: hex(f) });
        expect(drops()).toEqual({ 'nat-ports-exhausted': 1 });
        expect(ctStats()).toMatchObject({ created: 2n, port_exhausted: 1n });
        expect(flows()).toHaveLength(4);
      });

      it('translates packets with IP options, carrying the options unchanged', () => {
        const options = Buffer.from([0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00]); // router alert, NOPs, end
        let r = send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 6000, dport: 53, options }, Buffer.from('opt'))));
        expect(r.out).toBe(hex(toGw(udp4({ src: H, dst: S, sport: 6000, dport: 53, options, ttl: 63 }, Buffer.from('opt')))));
        expect(expectChecksumsValid(r.frame).ipv4!.ihl).toBe(28);
        // An ICMP error from a router with options, quoting a header with options.
        const quoted = udp4({ src: H, dst: S, sport: 6000, dport: 53, options, ttl: 9 }, Buffer.from('opt'));
        r = send(hook, 'up0', fromGw(ipv4({ src: R, dst: H, proto: IPPROTO.ICMP, options }, icmpError({ type: 11, code: 0 }, quoted))));
        const original = udp4({ src: C1, dst: S, sport: 6000, dport: 53, options, ttl: 9 }, Buffer.from('opt'));
        expect(r.out).toBe(hex(toC1(ipv4({ src: R, dst: C1, proto: IPPROTO.ICMP, options, ttl: 63 }, icmpError({ type: 11, code: 0 }, original)))));
        expectChecksumsValid(r.frame);
      });

      it('drops fragments of translated flows, counted, and leaves other fragments alone', () => {
        const first = fromC1(udp4({ src: C1, dst: S, sport: 6000, dport: 53, mf: true, id: 9 }, Buffer.alloc(16)));
        const later = fromC1(ipv4({ src: C1, dst: S, proto: IPPROTO.UDP, fragOffset: 3, id: 9 }, Buffer.alloc(16)));
        expect(send(hook, 'ct0', first)).toMatchObject({ verdict: 'drop', out: hex(first) });
        expect(send(hook, 'ct0', later)).toMatchObject({ verdict: 'drop', out: hex(later) });
        expect(flows()).toEqual([]);
        send(hook, 'ct0', fromC1(udp4({ src: C1, dst: S, sport: 6000, dport: 53 })));
        expect(send(hook, 'ct0', first).verdict).toBe('drop'); // a fragment of a known flow
        expect(drops()).toEqual({ 'nat-fragment': 3 });
        const hostFirst = fromGw(udp4({ src: K, dst: H, sport: 53, dport: 6000, mf: true }, Buffer.alloc(16)));
        const hostLater = fromGw(ipv4({ src: K, dst: H, proto: IPPROTO.UDP, fragOffset: 3 }, Buffer.alloc(16)));
        const toHost = fromC1(ipv4({ src: C1, dst: BR, proto: IPPROTO.UDP, fragOffset: 3 }, Buffer.alloc(16)));
        for (const [port, f] of [['up0', hostFirst], ['up0', hostLater], ['ct0', toHost]] as const) {
          expect(send(hook, port, f)).toMatchObject({ verdict: 'pass', out: hex(f) });
        }
        expect(drops()).toEqual({ 'nat-fragment': 3 });
      });

      it('leaves the host\'s own traffic alone and tracks nothing for it', () => {
        const frames: Array<[Port, Buffer]> = [
          ['up0', fromGw(tcp4({ src: K, dst: H, sport: 443, dport: 50000, flags: 'SA' }))],
          ['up0', fromGw(udp4({ src: S, dst: H, sport: 53, dport: 40000 }))],
          ['up0', fromGw(ipv4({ src: K, dst: H, proto: IPPROTO.ICMP }, icmpEcho({ type: 8, id: 1, seq: 1 })))],
          ['ct0', fromC1(tcp4({ src: C1, dst: BR, sport: 40000, dport: 22, flags: 'S' }))],
          ['ct0', fromC1(ipv4({ src: C1, dst: S, proto: 47 }, Buffer.alloc(8)))], // GRE
          ['up0', eth({ dst: MAC.up0, src: MAC.gw, type: ETH_P.ARP }, Buffer.alloc(28))],
          ['up0', eth({ dst: MAC.up0, src: MAC.gw, type: ETH_P.IPV6 }, Buffer.alloc(40))],
        ];
        for (const [port, f] of frames) expect(send(hook, port, f)).toMatchObject({ verdict: 'pass', out: hex(f) });
        expect(flows()).toEqual([]);
        expect(drops()).toEqual({});
      });

      it('drops truncated and malformed packets at every length, with the right reason', () => {
        // The kernel refuses to test-run an skb whose IPv4 header is cut: tc starts there.
        const full = syn();
        const from = hook === 'xdp' ? 14 : 34;
        for (let len = from; len < full.length; len++) {
          const f = full.subarray(0, len);
          expect(send(hook, 'ct0', f), `length ${len}`).toMatchObject({ verdict: 'drop', out: hex(f) });
        }
        const expected: Record<string, number> = { 'truncated-ipv4': full.length - from };
        expect(drops()).toEqual(expected);

        // Well-formed IP whose payload is too short for its L4 header.
        const short = (proto: number, l4: Buffer, n: number) => fromC1(ipv4({ src: C1, dst: S, proto }, l4.subarray(0, n)));
        const th = tcp4({ src: C1, dst: S, sport: 1, dport: 2, flags: 'S' }).subarray(20);
        const uh = udp4({ src: C1, dst: S, sport: 1, dport: 2 }).subarray(20);
        const ih = icmpEcho({ type: 8, id: 1, seq: 1 });
        const quote = udp4({ src: H, dst: S, sport: 5000, dport: 53 });
        const err = icmpError({ type: 3, code: 3 }, quote);
        const cases: Array<[string, number, Buffer, number]> = [
          ['truncated-tcp', IPPROTO.TCP, th, 20], ['truncated-udp', IPPROTO.UDP, uh, 8],
          ['truncated-icmp', IPPROTO.ICMP, ih, 8], ['truncated-icmp', IPPROTO.ICMP, err, err.length],
        ];
        for (const [reason, proto, l4, n] of cases) {
          for (let len = reason === 'truncated-icmp' && n > 8 ? 8 : 0; len < n; len++) {
            const f = short(proto, l4, len);
            expect(send(hook, 'ct0', f), `${reason} at ${len}`).toMatchObject({ verdict: 'drop', out: hex(f) });
          }
          expected[reason] = (expected[reason] ?? 0) + (reason === 'truncated-icmp' && n > 8 ? n - 8 : n);
        }
        expect(drops()).toEqual(expected);

        const bad = (mutate: (ip: Buffer) => void) => {
          const l3 = udp4({ src: C1, dst: S, sport: 1, dport: 2 });
          mutate(l3);
          return fromC1(l3);
        };
        const badQuote = Buffer.from(quote);
        badQuote[0] = 0x44; // ihl 4
        const malformed: Array<[string, Buffer]> = [
          ['malformed-ipv4', bad((ip) => (ip[0] = 0x65))], // version 6
          ['malformed-ipv4', bad((ip) => (ip[0] = 0x44))], // ihl 4
          ['malformed-ipv4', bad((ip) => ip.writeUInt16BE(19, 2))], // total length under the header
          ['malformed-ipv4', bad((ip) => (ip[0] = 0x4f))], // a header longer than the total length
          ['truncated-ipv4', bad((ip) => ((ip[0] = 0x4f), ip.writeUInt16BE(60, 2)))], // options the frame does not have
          ['truncated-ipv4', bad((ip) => ip.writeUInt16BE(ip.length + 1, 2))],
          ['malformed-icmp-error', fromGw(ipv4({ src: S, dst: H, proto: IPPROTO.ICMP }, icmpError({ type: 3, code: 3 }, badQuote)))],
        ];
        for (const [reason, f] of malformed) {
          expect(send(hook, reason === 'malformed-icmp-error' ? 'up0' : 'ct0', f), reason).toMatchObject({ verdict: 'drop', out: hex(f) });
          expected[reason] = (expected[reason] ?? 0) + 1;
        }
        expect(drops()).toEqual(expected);
        expect(flows()).toEqual([]);
      });
    });
  }

});
