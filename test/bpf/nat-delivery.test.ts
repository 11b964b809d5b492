// How NAT hands packets on: to the kernel untouched where it must answer (TTL, DF, no route), by
// bpf_redirect_neigh or XDP to tc for unresolved next hops, and live traffic through the kernel
// between namespaces.
// The bench (namespaces, the object, reset before each test): ./nat-world.ts.
import { spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NAT } from '../../src/objects/nat.js';
import { BPF_XDP, linkCreate, XDP_FLAGS_DRV_MODE } from '../../src/sys/libbpf.js';
import { close } from '../../src/sys/libc.js';
import { tcIngress } from '../helpers/bpf.js';
import { hex, IPPROTO, tcp4, udp4 } from '../helpers/packet.js';
import { sh, tcFlavour } from '../helpers/sys.js';
import { C1, fromC1, fromGw, H, K, natWorld, S, UPLINK_MTU } from './nat-world.js';

describe('NAT programs: delivery', () => {
  const w = natWorld();
  const { drops, flows, ifx, portmap, send, syn } = w;

  describe('delivery', () => {
    for (const hook of ['tc', 'xdp'] as const) {
      it(`${hook}: TTL 1 leaves a masqueraded packet to the kernel untouched (it answers with time exceeded)`, () => {
        const f = syn(1);
        expect(send(hook, 'ct0', f)).toMatchObject({ verdict: 'pass', out: hex(f) });
      });

      it(`${hook}: a reply with TTL 1 is translated and passed (only its destination changes)`, () => {
        send(hook, 'ct0', syn());
        const r = send(hook, 'up0', fromGw(tcp4({ src: S, dst: H, sport: 80, dport: 40000, flags: 'SA', ttl: 1 })));
        expect(r).toMatchObject({ verdict: 'pass', out: hex(fromGw(tcp4({ src: S, dst: C1, sport: 80, dport: 40000, flags: 'SA', ttl: 1 }))) });
      });

      it(`${hook}: too big for the uplink: with DF the kernel answers, without DF it is dropped, never sent untranslated`, () => {
        const big = (df: boolean) => fromC1(udp4({ src: C1, dst: S, sport: 6000, dport: 53, df }, Buffer.alloc(UPLINK_MTU)));
        expect(send(hook, 'ct0', big(true))).toMatchObject({ verdict: 'pass', out: hex(big(true)) });
        expect(send(hook, 'ct0', big(false))).toMatchObject({ verdict: 'drop', out: hex(big(false)) });
        expect(drops()).toEqual({ 'nat-cannot-forward': 1 });
      });
    }

    it('tc: a next hop without a neighbour entry goes out through bpf_redirect_neigh, translated', () => {
      const r = send('tc', 'ct0', fromC1(udp4({ src: C1, dst: '100.64.0.1', sport: 6000, dport: 53 })));
      expect(r).toMatchObject({
        verdict: 'redirect', out: hex(fromC1(udp4({ src: H, dst: '100.64.0.1', sport: 6000, dport: 53, ttl: 63 }))),
      });
    });

    it('xdp: a next hop without a neighbour entry is passed untouched to tc beside it, which resolves it', () => {
      const f = fromC1(udp4({ src: C1, dst: '100.64.0.1', sport: 6000, dport: 53 }));
      expect(send('xdp', 'ct0', f)).toMatchObject({ verdict: 'pass', out: hex(f) });
      expect(drops()).toEqual({});
      expect(send('tc', 'ct0', f)).toMatchObject({
        verdict: 'redirect', out: hex(fromC1(udp4({ src: H, dst: '100.64.0.1', sport: 6000, dport: 53, ttl: 63 }))),
      });
    });
  });
  describe(`live traffic through the kernel: tc (${tcFlavour()}) on the container port, XDP on the uplink`, () => {
    const links: number[] = [];
    let tcOff = () => {};
    beforeAll(() => {
      tcOff = tcIngress(w.nat.program(NAT.programs.tc).fd, ifx.ct0, 'nat on ct0');
      links.push(linkCreate(w.nat.program(NAT.programs.xdp).fd, ifx.up0, BPF_XDP, XDP_FLAGS_DRV_MODE, 'nat on up0'));
    });
    afterAll(() => {
      tcOff();
      links.splice(0).forEach(close);
    });

    /** Checksum errors a namespace's stack has counted (TCP, UDP, ICMP). */
    function csumErrors(n: string): number {
      const snmp = sh('ip', ['netns', 'exec', n, 'cat', '/proc/net/snmp']).split('\n');
      let total = 0;
      for (let i = 0; i + 1 < snmp.length; i += 2) {
        const names = snmp[i].split(/\s+/);
        const values = snmp[i + 1].split(/\s+/);
        const at = names.indexOf('InCsumErrors');
        if (at > 0) total += Number(values[at]);
      }
      return total;
    }
    /** iperf3 for a second: the server's and the client's JSON reports. */
    async function iperf(serverNs: string, serverArgs: string[], clientNs: string, clientArgs: string[]) {
      const srv = spawn('ip', ['netns', 'exec', serverNs, 'iperf3', '-s', '-1', '-J', ...serverArgs], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      srv.stdout.on('data', (d: Buffer) => (out += d));
      const closed = new Promise((res) => srv.on('close', res));
      await new Promise((res) => setTimeout(res, 500));
      const c = spawnSync('ip', ['netns', 'exec', clientNs, 'iperf3', '-J', '-t', '1', ...clientArgs], { encoding: 'utf8', timeout: 20_000 });
      await Promise.race([closed, new Promise((res) => setTimeout(res, 5000))]);
      srv.kill();
      return { server: JSON.parse(out || '{}'), client: JSON.parse(c.stdout || '{}') };
    }

    it('a container pings and talks TCP and UDP to a server outside, which sees the host address', async () => {
      const ping = spawnSync('ip', ['netns', 'exec', w.cns, 'ping', '-c', '2', '-i', '0.2', '-W', '2', S], { encoding: 'utf8' });
      expect(ping.status, ping.stdout).toBe(0);

      const tcpRun = await iperf(w.ons, ['-B', S], w.cns, ['-c', S]);
      expect(tcpRun.client.error).toBeUndefined();
      expect(tcpRun.server.start.connected[0].remote_host).toBe(H);
      expect(tcpRun.server.end.sum_received.bytes).toBeGreaterThan(1_000_000);
      expect(flows().some((f) => /^tcp 172\.17\.0\.2:\d+ > 198\.51\.100\.7:5201 => 10\.99\.0\.1:/.test(f))).toBe(true);

      const udpRun = await iperf(w.ons, ['-B', S], w.cns, ['-c', S, '-u', '-b', '20M', '-l', '1200']);
      expect(udpRun.client.error).toBeUndefined();
      expect(udpRun.server.start.connected[0].remote_host).toBe(H);
      expect(udpRun.server.end.sum.packets).toBeGreaterThan(1000);
      expect(csumErrors(w.ons) + csumErrors(w.cns)).toBe(0);
      expect(drops()).toEqual({});
    });

    it('an outside client reaches a container through a port mapping and keeps its own address', async () => {
      portmap(0, IPPROTO.TCP, 10080, C1, 5201);
      const run = await iperf(w.cns, [], w.ons, ['-c', H, '-p', '10080', '-B', K]);
      expect(run.client.error).toBeUndefined();
      expect(run.client.start.connected[0]).toMatchObject({ remote_host: H, remote_port: 10080 });
      expect(run.server.start.connected[0].remote_host).toBe(K);
      expect(run.server.end.sum_received.bytes).toBeGreaterThan(1_000_000);
      expect(csumErrors(w.ons) + csumErrors(w.cns)).toBe(0);
      expect(drops()).toEqual({});
    });
  });
});
