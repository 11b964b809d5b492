// The benchmark scenarios, in run order: a table later issues extend (our
// bridge, vxlan, nat rows next to their kernel-path counterparts). Each builds a
// namespace topology between a generator and a sink; bench/main.ts measures it.
import { BR_NETFILTER, type Topology } from './topology.js';

/** Where the generator sends from and where the sink counts (namespace roles of the topology). */
export interface Endpoints {
  gen: { ns: string; iface: string; ip: string; /** first hop; defaults to the sink interface's MAC */ dstMac?: string };
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
  {
    name: 'xdpnet-bridge-macs',
    about: `the same with ${MACS} source MACs to learn`,
    flows: MACS,
    varyMac: true,
    build: (t) => xdpnetBridge(t),
  },
];

function xdpnetBridge(t: Topology): Endpoints {
  const e = line(t);
  t.xdpnet('fwd', 'bridge', 'add', 'br0');
  for (const port of ['f0', 'f1']) t.xdpnet('fwd', 'attach', port, '--bridge', 'br0', '--hook', 'xdp');
  t.xdpnet('fwd', 'fdb', 'add', t.mac('sink', 's0'), '--bridge', 'br0', '--port', 'f1');
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
