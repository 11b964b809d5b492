// TCP through a bridge: iperf3 between two containers on one host namespace,
// 1 and 4 streams, the Linux bridge and the xdpnet bridge (tc hook, which keeps
// GSO/TSO on veth) side by side in one run.
import { BR_NETFILTER, type Topology } from './topology.js';

export interface TcpScenario {
  name: string;
  about: string;
  /** Joins the host namespace's ports h1 and h2 into a bridge. */
  bridge(t: Topology): void;
}

export const TCP_REFERENCE = 'tcp-linux-bridge';

export const TCP_SCENARIOS: TcpScenario[] = [
  {
    name: TCP_REFERENCE,
    about: 'Linux bridge over h1, h2 (br_netfilter hooks off)',
    bridge(t) {
      t.bridge('host', 'br0', ['h1', 'h2']);
    },
  },
  {
    name: 'tcp-xdpnet-bridge',
    about: 'xdpnet bridge, tc hook on h1 and h2',
    bridge(t) {
      t.xdpnet('host', 'bridge', 'add', 'br0');
      for (const p of ['h1', 'h2']) t.xdpnet('host', 'attach', p, '--bridge', 'br0', '--hook', 'tc');
    },
  },
];

export interface TcpRow {
  scenario: string;
  streams: number;
  gbps: number;
  ratio: number | null;
  /** Every run's figure (gbps is their median). */
  runs?: number[];
}

export async function measureTcp(t: Topology, s: TcpScenario, streams: number[], seconds: number): Promise<TcpRow[]> {
  for (const role of ['host', 'c1', 'c2']) t.addNs(role);
  t.veth({ ns: 'c1', name: 'eth0', addr: '10.98.0.1/24' }, { ns: 'host', name: 'h1' });
  t.veth({ ns: 'c2', name: 'eth0', addr: '10.98.0.2/24' }, { ns: 'host', name: 'h2' });
  if (BR_NETFILTER) t.sysctl('host', { 'net.bridge.bridge-nf-call-iptables': 0, 'net.bridge.bridge-nf-call-ip6tables': 0 });
  s.bridge(t);
  const rows: TcpRow[] = [];
  for (const n of streams) {
    const server = t.run('iperf3 server', 'ip', ['netns', 'exec', t.nsName('c2'), 'iperf3', '-s', '-1', '-B', '10.98.0.2']);
    await new Promise((r) => setTimeout(r, 300));
    const out = await t.run('iperf3 client', 'ip', ['netns', 'exec', t.nsName('c1'), 'iperf3', '-c', '10.98.0.2', '-t', String(seconds), '-P', String(n), '-J']);
    await server;
    const gbps = (JSON.parse(out).end.sum_received.bits_per_second as number) / 1e9;
    process.stderr.write(`  ${s.name}, ${n} stream${n > 1 ? 's' : ''}: ${gbps.toFixed(2)} Gbit/s\n`);
    rows.push({ scenario: s.name, streams: n, gbps, ratio: null });
  }
  return rows;
}
