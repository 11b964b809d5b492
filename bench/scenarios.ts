// The benchmark scenarios, in run order: a table later issues extend (our
// bridge, vxlan, nat rows next to their kernel-path counterparts). Each builds a
// namespace topology between a generator and a sink; bench/main.ts measures it.
import { execFileSync } from 'node:child_process';
import type { VxlanOuter } from './gen.js';
import { peerScenarios } from './peers.js';
import { MON_FLAGS, setMonitor } from '../src/objects/monitor.js';
import { instancePaths } from '../src/objects/paths.js';
import { BR_NETFILTER, ip, type Topology } from './topology.js';

/** Where the generator sends from and where the sink counts (namespace roles of the topology). */
export interface Endpoints {
  gen: {
    ns: string; iface: string; ip: string; /** first hop; defaults to the sink interface's MAC */ dstMac?: string;
    /** Send the UDP frames VXLAN-encapsulated in these outer headers (decap rows). */
    vxlan?: VxlanOuter;
  };
  sink: { ns: string; iface: string; ip: string };
}

export interface Scenario {
  name: string;
  about: string;
  /** Why the scenario cannot run on this machine, if it cannot (it is then skipped). */
  unavailable?(): string | undefined;
  /** Builds the path between generator and sink; the harness attaches the sink and runs the generator. */
  build(t: Topology): Endpoints;
  /** Overrides of the run's flow options (e.g. many source MACs). */
  flows?: number;
  varyMac?: boolean;
  /** Bytes every delivered frame must have (--size + this); the run fails otherwise (e.g. not decapsulated). */
  deliveredExtra?: number;
}

/** Source MACs in the many-MACs rows: each is learned once, then refreshed once a second. */
const MACS = 1024;

/** gen:g0 ⇄ f0:fwd:f1 ⇄ s0:sink — scenarios decide what the fwd namespace does between f0 and f1. */
function line(t: Topology): Endpoints {
  for (const role of ['gen', 'fwd', 'sink']) t.addNs(role);
  t.veth({ ns: 'gen', name: 'g0', addr: '10.99.0.1/24' }, { ns: 'fwd', name: 'f0' });
  t.veth({ ns: 'fwd', name: 'f1' }, { ns: 'sink', name: 's0', addr: '10.99.0.2/24' });
  return { gen: { ns: 'gen', iface: 'g0', ip: '10.99.0.1' }, sink: { ns: 'sink', iface: 's0', ip: '10.99.0.2' } };
}


/** The row every ratio is taken against. */
export const CEILING = 'redirect-ceiling';
/** The tc hook's ceiling on the NAT rows' path, beside CEILING (bench/main.ts reads those rows against it too). */
export const TC_CEILING = 'tc-redirect-ceiling';

export const SCENARIOS: Scenario[] = [
  {
    name: CEILING,
    about: 'bare XDP redirect f0 → f1: the ceiling for any XDP forwarder on this path',
    build(t) {
      const e = line(t);
      t.attachXdp('fwd', 'f0', 'redirect', { redirectIfindex: t.ifindex('fwd', 'f1') });
      return e;
    },
  },
  {
    name: 'linux-bridge',
    about: 'Linux bridge over f0, f1, br_netfilter hooks off (XDP_PASS on f0 takes the redirected frames into the stack)',
    build: (t) => linuxBridge(t, false),
  },
  {
    name: 'linux-bridge-nf',
    about: 'the same with bridge-nf-call-iptables=1, as Docker runs its bridge (br_netfilter, no rules)',
    unavailable: () => (BR_NETFILTER ? undefined : 'br_netfilter is not loaded'),
    build: (t) => linuxBridge(t, true),
  },
  {
    name: 'linux-bridge-macs',
    about: `the Linux bridge (no br_netfilter) with ${MACS} source MACs to learn`,
    flows: MACS,
    varyMac: true,
    build: (t) => linuxBridge(t, false),
  },
  {
    name: 'xdpnet-bridge',
    about: 'xdpnet bridge, XDP hook on f0 and f1, the sink MAC in the FDB',
    build: (t) => xdpnetBridge(t),
  },
  // Paired with xdpnet-bridge: what the monitor's switch costs the hit path (one load and a branch when off).
  {
    name: 'xdpnet-bridge-mon-drops',
    about: 'xdpnet-bridge with a monitor asking for drops (none happen: the event sites cost their test only)',
    build: (t) => monitored(t, MON_FLAGS.DROPS),
  },
  {
    name: 'xdpnet-bridge-mon-trace',
    about: 'xdpnet-bridge with a monitor asking for every trace event, nobody reading: each frame reserves (or fails to reserve) a ring-buffer slot',
    build: (t) => monitored(t, MON_FLAGS.DROPS | MON_FLAGS.TRACE),
  },
  {
    name: 'xdpnet-bridge-mon-trace-s64',
    about: 'the same, traces sampled 1 in 64 (monitor --sample 64)',
    build: (t) => monitored(t, MON_FLAGS.DROPS | MON_FLAGS.TRACE, 63),
  },
  {
    name: 'xdpnet-bridge-macs',
    about: `the same with ${MACS} source MACs to learn`,
    flows: MACS,
    varyMac: true,
    build: (t) => xdpnetBridge(t),
  },
];

/** Concurrent flows (UDP source ports) in the NAT rows' many-flows variants. */
const NAT_FLOWS = 10_000;

/**
 * gen:g0 10.99.0.1 ⇄ f0 10.99.0.254 :fwd: f1 10.99.1.254 ⇄ s0:sink 10.99.1.2 —
 * routed by fwd, which masquerades 10.99.0.0/24 out of f1 with xdpnet (tc on
 * f0, XDP on f1, as `nat masquerade add` attaches them), iptables or nothing.
 * XDP_PASS on f0 takes the generator's redirected frames into f0 for all three.
 * tc-redirect: xdpnet's place taken by a bare tc redirect f0 → f1 (the tc hook's
 * ceiling on this path).
 */
function routed(t: Topology, nat: 'none' | 'iptables' | 'xdpnet' | 'xdpnet-xdp' | 'tc-redirect', natArgs: string[] = []): Endpoints {
  for (const role of ['gen', 'fwd', 'sink']) t.addNs(role);
  t.veth({ ns: 'gen', name: 'g0', addr: '10.99.0.1/24' }, { ns: 'fwd', name: 'f0', addr: '10.99.0.254/24' });
  t.veth({ ns: 'fwd', name: 'f1', addr: '10.99.1.254/24' }, { ns: 'sink', name: 's0', addr: '10.99.1.2/24' });
  t.sysctl('fwd', { 'net.ipv4.ip_forward': 1 });
  // The sink answers nothing (not even ARP): its neighbour entry is permanent.
  ip('-n', t.nsName('fwd'), 'neigh', 'add', '10.99.1.2', 'lladdr', t.mac('sink', 's0'), 'dev', 'f1', 'nud', 'permanent');
  if (nat !== 'xdpnet-xdp') t.attachXdp('fwd', 'f0', 'pass'); // xdpnet-xdp: NAT's own XDP program takes them
  if (nat === 'iptables') {
    execFileSync('ip', ['netns', 'exec', t.nsName('fwd'), 'iptables', '-t', 'nat', '-A', 'POSTROUTING', '-s', '10.99.0.0/24', '-o', 'f1', '-j', 'MASQUERADE']);
  }
  if (nat === 'tc-redirect') {
    // Where xdpnet-masq's NAT runs, with the hook it gets (tcx or clsact, as xdpnet picks),
    // sending on as NAT's tc program does once its FIB lookup answers: bpf_redirect to f1's egress.
    t.attachTc('fwd', 'f0', 'tcRedirect', { redirectIfindex: t.ifindex('fwd', 'f1') });
    // NAT's XDP program for replies sits on f1 there. It never runs for these frames, but
    // attaching XDP changes a veth's features (GRO on f1, GSO off at s0): keep the devices alike.
    t.attachXdp('fwd', 'f1', 'pass');
  }
  if (nat === 'xdpnet') t.xdpnet('fwd', 'nat', 'masquerade', 'add', '--src', '10.99.0.0/24', '--out', 'f1');
  if (nat === 'xdpnet-xdp') t.xdpnet('fwd', 'nat', 'masquerade', 'add', '--src', '10.99.0.0/24', '--out', 'f1', '--in-hook', 'xdp', ...natArgs);
  return { gen: { ns: 'gen', iface: 'g0', ip: '10.99.0.1', dstMac: t.mac('fwd', 'f0') }, sink: { ns: 'sink', iface: 's0', ip: '10.99.1.2' } };
}

SCENARIOS.push(
  { name: 'kernel-routing', about: 'plain kernel IPv4 forwarding f0 → f1, no NAT', build: (t) => routed(t, 'none') },
  {
    name: TC_CEILING,
    about: 'xdpnet-masq\'s skb path with a bare tc redirect f0 → f1 where its NAT runs (XDP_PASS on f0, tc ingress on f0): the ceiling for any tc forwarder',
    build: (t) => routed(t, 'tc-redirect'),
  },
  { name: 'iptables-masq', about: 'kernel forwarding with iptables MASQUERADE (nf_conntrack), 1 flow', build: (t) => routed(t, 'iptables') },
  { name: 'iptables-masq-10k', about: `the same with ${NAT_FLOWS} flows`, flows: NAT_FLOWS, build: (t) => routed(t, 'iptables') },
  { name: 'xdpnet-masq', about: 'xdpnet masquerade (tc on f0, XDP on f1), 1 flow', build: (t) => routed(t, 'xdpnet') },
  { name: 'xdpnet-masq-10k', about: `the same with ${NAT_FLOWS} flows`, flows: NAT_FLOWS, build: (t) => routed(t, 'xdpnet') },
  { name: 'xdpnet-masq-xdp', about: 'xdpnet masquerade with XDP on the inside too (--in-hook xdp), 1 flow', build: (t) => routed(t, 'xdpnet-xdp') },
  { name: 'xdpnet-masq-xdp-10k', about: `the same with ${NAT_FLOWS} flows`, flows: NAT_FLOWS, build: (t) => routed(t, 'xdpnet-xdp') },
  {
    name: 'xdpnet-masq-xdp-10k-ct16k',
    about: `the same with a conntrack table sized for the load (--conntrack-max 16384: a 1 MB hash bucket array, not 8 MB)`,
    flows: NAT_FLOWS,
    build: (t) => routed(t, 'xdpnet-xdp', ['--conntrack-max', '16384']),
  },
);

function xdpnetBridge(t: Topology): Endpoints {
  const e = line(t);
  t.xdpnet('fwd', 'bridge', 'add', 'br0');
  for (const port of ['f0', 'f1']) t.xdpnet('fwd', 'attach', port, '--bridge', 'br0', '--hook', 'xdp');
  t.xdpnet('fwd', 'fdb', 'add', t.mac('sink', 's0'), '--bridge', 'br0', '--port', 'f1');
  return e;
}

/** xdpnet-bridge with the monitor switch set as `xdpnet monitor` sets it (no monitor process: its reading would compete for the CPU). */
function monitored(t: Topology, flags: number, sample = 0): Endpoints {
  const e = xdpnetBridge(t);
  setMonitor(instancePaths(t.nsName('fwd')), flags, sample);
  return e;
}

function linuxBridge(t: Topology, netfilter: boolean): Endpoints {
  const e = line(t);
  // br_netfilter, when loaded, hooks every new namespace's bridges by default and
  // costs ~40% here: set it explicitly so the row means the same on any machine.
  if (BR_NETFILTER) {
    const v = Number(netfilter);
    t.sysctl('fwd', { 'net.bridge.bridge-nf-call-iptables': v, 'net.bridge.bridge-nf-call-ip6tables': v, 'net.bridge.bridge-nf-call-arptables': v });
  }
  t.bridge('fwd', 'br0', ['f0', 'f1']);
  t.fdb('fwd', t.mac('sink', 's0'), 'f1'); // as if learned: no unknown-unicast flooding
  t.attachXdp('fwd', 'f0', 'pass');
  return e;
}

/** The inner destination MAC of the VXLAN encap rows: behind the remote VTEP 10.98.0.2 (the sink's s0). */
const VX_INNER_DST = '02:00:00:00:00:99';

/**
 * gen:g0 ⇄ f0 [fwd: bridge + VTEP VNI 1, uplink f1 10.98.0.1] f1 ⇄ s0:sink —
 * the generator's frames (to VX_INNER_DST) leave f1 VXLAN-encapsulated for
 * the remote VTEP 10.98.0.2, whose neighbour entry is the sink's MAC.
 */
function vxlanEncap(t: Topology, how: 'kernel' | 'xdpnet'): Endpoints {
  const e = line(t);
  const fwd = t.nsName('fwd');
  ip('-n', fwd, 'addr', 'add', '10.98.0.1/24', 'dev', 'f1');
  ip('-n', fwd, 'neigh', 'add', '10.98.0.2', 'lladdr', t.mac('sink', 's0'), 'dev', 'f1', 'nud', 'permanent');
  if (how === 'xdpnet') {
    t.xdpnet('fwd', 'bridge', 'add', 'br0');
    t.xdpnet('fwd', 'attach', 'f0', '--bridge', 'br0', '--hook', 'xdp');
    t.xdpnet('fwd', 'vxlan', 'add', '--bridge', 'br0', '--vni', '1', '--local', '10.98.0.1', '--dev', 'f1');
    t.xdpnet('fwd', 'fdb', 'add', VX_INNER_DST, '--bridge', 'br0', '--remote', '10.98.0.2');
  } else {
    if (BR_NETFILTER) t.sysctl('fwd', { 'net.bridge.bridge-nf-call-iptables': 0, 'net.bridge.bridge-nf-call-ip6tables': 0, 'net.bridge.bridge-nf-call-arptables': 0 });
    ip('-n', fwd, 'link', 'add', 'vx0', 'type', 'vxlan', 'id', '1', 'local', '10.98.0.1', 'remote', '10.98.0.2', 'dstport', '4789', 'dev', 'f1', 'nolearning');
    ip('-n', fwd, 'link', 'set', 'vx0', 'up');
    t.bridge('fwd', 'br0', ['f0', 'vx0']);
    t.fdb('fwd', VX_INNER_DST, 'vx0');
    t.attachXdp('fwd', 'f0', 'pass');
  }
  return { ...e, gen: { ...e.gen, dstMac: VX_INNER_DST } };
}

SCENARIOS.push(
  { name: 'kernel-vxlan-encap', about: 'Linux bridge over f0 and a kernel vxlan device on f1 (VNI 1, static FDB entry): encapsulation', deliveredExtra: 50, build: (t) => vxlanEncap(t, 'kernel') },
  { name: 'xdpnet-vxlan-encap', about: 'xdpnet bridge (XDP on f0) with a VTEP on f1 and a static remote FDB entry: encapsulation in XDP', deliveredExtra: 50, build: (t) => vxlanEncap(t, 'xdpnet') },
);

/**
 * gen:g0 10.98.0.2 ⇄ f0 10.98.0.1 [fwd: VTEP VNI 1 on uplink f0, bridge port f1] f1 ⇄ s0:sink —
 * the generator sends VXLAN from the remote VTEP 10.98.0.2 whose inner frames
 * (--size bytes, to the sink's MAC) fwd decapsulates and switches out of f1.
 * The outer frames are 50 bytes longer, so the sink sees the same frames as
 * the encap rows' generator sends; it checks every frame arrives decapsulated.
 */
function vxlanDecap(t: Topology, how: 'kernel' | 'xdpnet'): Endpoints {
  for (const role of ['gen', 'fwd', 'sink']) t.addNs(role);
  t.veth({ ns: 'gen', name: 'g0', addr: '10.98.0.2/24' }, { ns: 'fwd', name: 'f0', addr: '10.98.0.1/24' });
  t.veth({ ns: 'fwd', name: 'f1' }, { ns: 'sink', name: 's0', addr: '10.99.0.2/24' });
  const fwd = t.nsName('fwd');
  if (how === 'xdpnet') {
    t.xdpnet('fwd', 'bridge', 'add', 'br0');
    t.xdpnet('fwd', 'attach', 'f1', '--bridge', 'br0', '--hook', 'xdp');
    t.xdpnet('fwd', 'vxlan', 'add', '--bridge', 'br0', '--vni', '1', '--local', '10.98.0.1', '--dev', 'f0');
    t.xdpnet('fwd', 'vxlan', 'remote', 'add', '--vni', '1', '10.98.0.2'); // learning is off: the sender must be known
    t.xdpnet('fwd', 'fdb', 'add', t.mac('sink', 's0'), '--bridge', 'br0', '--port', 'f1');
  } else {
    if (BR_NETFILTER) t.sysctl('fwd', { 'net.bridge.bridge-nf-call-iptables': 0, 'net.bridge.bridge-nf-call-ip6tables': 0, 'net.bridge.bridge-nf-call-arptables': 0 });
    ip('-n', fwd, 'link', 'add', 'vx0', 'type', 'vxlan', 'id', '1', 'local', '10.98.0.1', 'remote', '10.98.0.2', 'dstport', '4789', 'dev', 'f0', 'nolearning');
    ip('-n', fwd, 'link', 'set', 'vx0', 'up');
    t.bridge('fwd', 'br0', ['f1', 'vx0']);
    t.fdb('fwd', t.mac('sink', 's0'), 'f1');
    t.attachXdp('fwd', 'f0', 'pass'); // takes the generator's redirected frames into the stack
  }
  const vxlan: VxlanOuter = { vni: 1, srcMac: t.mac('gen', 'g0'), dstMac: t.mac('fwd', 'f0'), srcIp: '10.98.0.2', dstIp: '10.98.0.1' };
  return { gen: { ns: 'gen', iface: 'g0', ip: '10.99.0.1', vxlan }, sink: { ns: 'sink', iface: 's0', ip: '10.99.0.2' } };
}

SCENARIOS.push(
  { name: 'kernel-vxlan-decap', about: 'kernel vxlan device on f0 (VNI 1) on a Linux bridge with f1 (static FDB entry): decapsulation', deliveredExtra: 0, build: (t) => vxlanDecap(t, 'kernel') },
  { name: 'xdpnet-vxlan-decap', about: 'xdpnet VTEP on f0 (xn_vx_uplink, XDP), bridge port f1 (XDP), static FDB entry: decapsulation in XDP', deliveredExtra: 0, build: (t) => vxlanDecap(t, 'xdpnet') },
);

// Open vSwitch and nftables flowtables in the same topologies (skipped where the kernel lacks them).
SCENARIOS.push(...peerScenarios({ line, routed: (t) => routed(t, 'none'), macs: MACS, natFlows: NAT_FLOWS, vxInnerDst: VX_INNER_DST }));
