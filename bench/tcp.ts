// TCP through a bridge: iperf3 between two containers on one host namespace,
// 1 and 4 streams, the Linux bridge and the xdpnet bridge (tc hook, which keeps
// GSO/TSO on veth) side by side in one run.
import { execFileSync } from 'node:child_process';
import { ovsTcpBridge, ovsUnavailable } from './peers.js';
import { BR_NETFILTER, ip, type Topology } from './topology.js';

export interface TcpScenario {
  name: string;
  about: string;
  /** Joins the host namespace's ports h1 and h2 into a bridge. */
  bridge?(t: Topology): void;
  /** Builds a whole other topology instead, with containers c1 10.98.0.1 and c2 10.98.0.2. */
  setup?(t: Topology): void;
  /** The row its ratio is taken against; TCP_REFERENCE when omitted. */
  reference?: string;
  /** Why the row cannot run on this machine, if it cannot (it is then skipped). */
  unavailable?(): string | undefined;
}

export const TCP_REFERENCE = 'tcp-linux-bridge';

/**
 * The containers' congestion control, for both paths: Linux's default. A host
 * that defaults to BBR (this one does) would pace every flow: on a veth path
 * with microsecond RTTs BBR held one stream to ~16 Gbit/s where cubic ran at
 * ~68, and the figures measured pacing timers instead of the datapath.
 */
export const TCP_CC = 'cubic';

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
  {
    name: 'tcp-ovs-bridge',
    about: 'Open vSwitch bridge over h1 and h2 (kernel datapath, NORMAL forwarding)',
    unavailable: ovsUnavailable,
    bridge: ovsTcpBridge,
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

/** cc: the containers' congestion control (allowCongestionControl's choice; null: the host's default). */
export async function measureTcp(t: Topology, s: TcpScenario, streams: number[], seconds: number, cc: string | null = TCP_CC): Promise<TcpRow[]> {
  if (s.setup) s.setup(t);
  else {
    for (const role of ['host', 'c1', 'c2']) t.addNs(role);
    t.veth({ ns: 'c1', name: 'eth0', addr: '10.98.0.1/24' }, { ns: 'host', name: 'h1' });
    t.veth({ ns: 'c2', name: 'eth0', addr: '10.98.0.2/24' }, { ns: 'host', name: 'h2' });
    if (BR_NETFILTER) t.sysctl('host', { 'net.bridge.bridge-nf-call-iptables': 0, 'net.bridge.bridge-nf-call-ip6tables': 0 });
    s.bridge?.(t);
  }
  if (cc) for (const c of ['c1', 'c2']) t.sysctl(c, { 'net.ipv4.tcp_congestion_control': cc });
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

export const TCP_OVERLAY_REFERENCE = 'tcp-kernel-vxlan';

/** The row a TCP row's ratio is taken against. */
export const tcpReference = (name: string): string => TCP_SCENARIOS.find((s) => s.name === name)?.reference ?? TCP_REFERENCE;

/**
 * Two simulated hosts A and B joined by an underlay veth ua 10.97.0.1 — ub
 * 10.97.0.2 (MTU 1500); container c1 (10.98.0.1) on A's port h1, c2
 * (10.98.0.2) on B's port h2, overlay MTU 1450 on containers and ports for
 * both paths; VNI 1 between the hosts, kernel vxlan + Linux bridge or xdpnet
 * (tc on the container ports, which keeps GSO through encap; XDP decap on
 * the uplinks) on both hosts.
 */
function overlay(t: Topology, how: 'kernel' | 'xdpnet' | 'xdpnet-tc'): void {
  for (const role of ['hostA', 'hostB', 'c1', 'c2']) t.addNs(role);
  t.veth({ ns: 'hostA', name: 'ua', addr: '10.97.0.1/24' }, { ns: 'hostB', name: 'ub', addr: '10.97.0.2/24' });
  const ethtool = (role: string, ...args: string[]) => execFileSync('ip', ['netns', 'exec', t.nsName(role), 'ethtool', '-K', ...args], { stdio: 'ignore' });
  const hosts = [
    { ns: 'hostA', c: 'c1', port: 'h1', up: 'ua', local: '10.97.0.1', remote: '10.97.0.2', addr: '10.98.0.1/24' },
    { ns: 'hostB', c: 'c2', port: 'h2', up: 'ub', local: '10.97.0.2', remote: '10.97.0.1', addr: '10.98.0.2/24' },
  ];
  for (const h of hosts) {
    t.veth({ ns: h.c, name: 'eth0', addr: h.addr }, { ns: h.ns, name: h.port });
    ip('-n', t.nsName(h.c), 'link', 'set', 'eth0', 'mtu', '1450');
    ip('-n', t.nsName(h.ns), 'link', 'set', h.port, 'mtu', '1450');
    // GRO on: XDP decap redirects frames into the container (xdpnet); harmless for the kernel.
    ethtool(h.c, 'eth0', 'gro', 'on');
    ethtool(h.ns, h.up, 'gro', 'on');
    // The far end of an XDP uplink must send complete checksums (a veth limit; a NIC's wire has them).
    if (how === 'xdpnet') ethtool(h.ns, h.up, 'tx', 'off');
  }
  for (const h of hosts) {
    if (how === 'kernel') {
      if (BR_NETFILTER) t.sysctl(h.ns, { 'net.bridge.bridge-nf-call-iptables': 0, 'net.bridge.bridge-nf-call-ip6tables': 0 });
      ip('-n', t.nsName(h.ns), 'link', 'add', 'vx0', 'type', 'vxlan', 'id', '1', 'local', h.local, 'remote', h.remote, 'dstport', '4789', 'dev', h.up, 'nolearning');
      ip('-n', t.nsName(h.ns), 'link', 'set', 'vx0', 'up');
      t.bridge(h.ns, 'br0', [h.port, 'vx0']);
    } else {
      const other = hosts.find((x) => x !== h)!;
      t.xdpnet(h.ns, 'bridge', 'add', 'br0');
      t.xdpnet(h.ns, 'attach', h.port, '--bridge', 'br0', '--hook', 'tc');
      t.xdpnet(h.ns, 'vxlan', 'add', '--bridge', 'br0', '--vni', '1', '--local', h.local, '--dev', h.up, '--hook', how === 'xdpnet' ? 'xdp' : 'tc');
      t.xdpnet(h.ns, 'vxlan', 'remote', 'add', '--vni', '1', h.remote);
      t.xdpnet(h.ns, 'fdb', 'add', t.mac(other.c, 'eth0'), '--bridge', 'br0', '--remote', h.remote);
    }
  }
}

TCP_SCENARIOS.push(
  { name: TCP_OVERLAY_REFERENCE, about: 'containers on two hosts: kernel vxlan device + Linux bridge on both (VNI 1, MTU 1450)', setup: (t) => overlay(t, 'kernel'), reference: TCP_OVERLAY_REFERENCE },
  { name: 'tcp-xdpnet-vxlan', about: 'the same with xdpnet on both hosts: tc encap on the container ports, XDP decap on the uplinks', setup: (t) => overlay(t, 'xdpnet'), reference: TCP_OVERLAY_REFERENCE },
  { name: 'tcp-xdpnet-vxlan-tc', about: 'the same with tc decap on the uplinks (vxlan add --hook tc): the veth underlay keeps GSO', setup: (t) => overlay(t, 'xdpnet-tc'), reference: TCP_OVERLAY_REFERENCE },
);
