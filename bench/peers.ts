// Peers that are not the plain kernel path: Open vSwitch (kernel datapath) and
// nftables flowtables, in the same topologies as xdpnet's rows. They need
// kernel options this development kernel lacks (Debian's stock kernel has them
// as modules): each row probes for them and is skipped with a message naming
// the missing option. OVS runs inside the forwarding namespace (its datapath
// is per namespace), started by ovs-ctl with a database and run directory of
// its own under /tmp, and stopped when the topology is destroyed.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Endpoints, Scenario } from './scenarios.js';
import { BR_NETFILTER, ip, type Topology } from './topology.js';

const OVS_CTL = '/usr/share/openvswitch/scripts/ovs-ctl';
const OVS_PREFIX = 'xnb-ovs-';

/** The running kernel's configuration, from /proc/config.gz or /boot, if either exists. */
function kernelConfig(): { from: string; get(option: string): string | undefined } | undefined {
  for (const from of ['/proc/config.gz', `/boot/config-${release()}`]) {
    if (!existsSync(from)) continue;
    const raw = readFileSync(from);
    const text = from.endsWith('.gz') ? gunzipSync(raw).toString() : raw.toString();
    return { from, get: (o) => new RegExp(`^${o}=(.*)$`, 'm').exec(text)?.[1] };
  }
  return undefined;
}

/**
 * Why the kernel cannot do `option` (undefined: it can): built in, or its
 * module loaded or loadable. Loads the module when the option is a module.
 */
export function missingKernelOption(option: string, module: string): string | undefined {
  if (existsSync(`/sys/module/${module}`)) return undefined;
  const cfg = kernelConfig();
  const v = cfg?.get(option);
  if (v === 'y') return undefined;
  if (cfg && v !== 'm') return `the kernel lacks ${option} (${cfg.from}: ${v === undefined ? 'not set' : `${option}=${v}`})`;
  try {
    execFileSync('modprobe', [module], { stdio: ['ignore', 'ignore', 'pipe'] });
    return undefined;
  } catch (e) {
    const why = ((e as { stderr?: Buffer }).stderr?.toString() ?? '').trim().split('\n').pop();
    return `the kernel lacks ${option} (modprobe ${module}: ${why || 'failed'})`;
  }
}

/** Why OVS rows cannot run here, if they cannot. */
export function ovsUnavailable(): string | undefined {
  return missingKernelOption('CONFIG_OPENVSWITCH', 'openvswitch')
    ?? missingKernelOption('CONFIG_OPENVSWITCH_VXLAN', 'vport_vxlan')
    ?? (existsSync(OVS_CTL) ? undefined : 'openvswitch-switch is not installed (make bench installs it where the kernel has CONFIG_OPENVSWITCH)');
}

/** Why flowtable rows cannot run here, if they cannot. */
export function flowtableUnavailable(): string | undefined {
  return missingKernelOption('CONFIG_NF_FLOW_TABLE', 'nf_flow_table')
    ?? missingKernelOption('CONFIG_NF_FLOW_TABLE_INET', 'nf_flow_table_inet')
    ?? missingKernelOption('CONFIG_NFT_FLOW_OFFLOAD', 'nft_flow_offload');
}

/** An Open vSwitch of our own in a role's namespace; returns ovs-vsctl and ovs-ofctl runners. */
export function startOvs(t: Topology, role: string) {
  const dir = mkdtempSync(join('/tmp', `${OVS_PREFIX}${process.pid}-`));
  const env = { ...process.env, OVS_RUNDIR: join(dir, 'run'), OVS_LOGDIR: join(dir, 'log'), OVS_DBDIR: join(dir, 'db'), OVS_SYSCONFDIR: join(dir, 'etc') };
  for (const d of ['run', 'log', 'db', 'etc/openvswitch']) mkdirSync(join(dir, d), { recursive: true });
  const inNs = (cmd: string, ...args: string[]) =>
    execFileSync('ip', ['netns', 'exec', t.nsName(role), cmd, ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  t.onDestroy(() => stopOvs(dir, () => inNs(OVS_CTL, 'stop')));
  inNs(OVS_CTL, 'start', '--system-id=random');
  return {
    vsctl: (...args: string[]) => inNs('ovs-vsctl', `--db=unix:${join(dir, 'run', 'db.sock')}`, ...args),
    ofctl: (...args: string[]) => inNs('ovs-ofctl', ...args),
  };
}

/** ovs-ctl stop, then whatever its pidfiles still name, by PID; then its files. */
function stopOvs(dir: string, stop?: () => void): void {
  try {
    stop?.();
  } catch (e) {
    console.error(`warning: ovs-ctl stop failed: ${(e as Error).message.split('\n')[0]}`);
  }
  const run = join(dir, 'run');
  for (const f of existsSync(run) ? readdirSync(run).filter((x) => x.endsWith('.pid')) : []) {
    const pid = Number(readFileSync(join(run, f), 'utf8').trim());
    try {
      if (pid > 0) process.kill(pid, 'SIGKILL');
    } catch {
      /* already stopped */
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Stops OVS instances of bench runs that died without cleaning up (SIGKILL). */
export function reapStaleOvs(isAlive: (pid: number) => boolean): void {
  for (const d of readdirSync('/tmp').filter((x) => x.startsWith(OVS_PREFIX))) {
    const pid = Number(/^xnb-ovs-(\d+)-/.exec(d)?.[1]);
    if (pid && !isAlive(pid)) stopOvs(join('/tmp', d));
  }
}

/** gen:g0 ⇄ f0 [fwd: OVS bridge, NORMAL] f1 ⇄ s0:sink. */
function ovsBridge(t: Topology, line: (t: Topology) => Endpoints): Endpoints {
  const e = line(t);
  const ovs = startOvs(t, 'fwd');
  ovs.vsctl('add-br', 'br0', '--', 'set', 'bridge', 'br0', 'fail-mode=secure');
  for (const p of ['f0', 'f1']) ovs.vsctl('add-port', 'br0', p);
  ovs.ofctl('add-flow', 'br0', 'actions=NORMAL');
  t.attachXdp('fwd', 'f0', 'pass'); // takes the generator's redirected frames into the stack, as for the Linux bridge
  return e;
}

/** As vxlanEncap in scenarios.ts: f0 and an OVS VXLAN port (VNI 1 to 10.98.0.2 out of f1) on one bridge. */
function ovsVxlanEncap(t: Topology, line: (t: Topology) => Endpoints, innerDst: string): Endpoints {
  const e = line(t);
  const fwd = t.nsName('fwd');
  ip('-n', fwd, 'addr', 'add', '10.98.0.1/24', 'dev', 'f1');
  ip('-n', fwd, 'neigh', 'add', '10.98.0.2', 'lladdr', t.mac('sink', 's0'), 'dev', 'f1', 'nud', 'permanent');
  const ovs = startOvs(t, 'fwd');
  ovs.vsctl('add-br', 'br0', '--', 'set', 'bridge', 'br0', 'fail-mode=secure');
  ovs.vsctl('add-port', 'br0', 'f0');
  ovs.vsctl('add-port', 'br0', 'vx0', '--', 'set', 'interface', 'vx0', 'type=vxlan', 'options:remote_ip=10.98.0.2', 'options:local_ip=10.98.0.1', 'options:key=1');
  ovs.ofctl('add-flow', 'br0', 'actions=NORMAL'); // innerDst is never learned: flooded to the one other port, vx0
  t.attachXdp('fwd', 'f0', 'pass');
  return { ...e, gen: { ...e.gen, dstMac: innerDst } };
}

/** As vxlanDecap in scenarios.ts: VXLAN from 10.98.0.2 arrives on f0 10.98.0.1, OVS switches the inner frames to f1. */
function ovsVxlanDecap(t: Topology): Endpoints {
  for (const role of ['gen', 'fwd', 'sink']) t.addNs(role);
  t.veth({ ns: 'gen', name: 'g0', addr: '10.98.0.2/24' }, { ns: 'fwd', name: 'f0', addr: '10.98.0.1/24' });
  t.veth({ ns: 'fwd', name: 'f1' }, { ns: 'sink', name: 's0', addr: '10.99.0.2/24' });
  const ovs = startOvs(t, 'fwd');
  ovs.vsctl('add-br', 'br0', '--', 'set', 'bridge', 'br0', 'fail-mode=secure');
  ovs.vsctl('add-port', 'br0', 'f1');
  ovs.vsctl('add-port', 'br0', 'vx0', '--', 'set', 'interface', 'vx0', 'type=vxlan', 'options:remote_ip=10.98.0.2', 'options:local_ip=10.98.0.1', 'options:key=1');
  ovs.ofctl('add-flow', 'br0', 'actions=NORMAL');
  t.attachXdp('fwd', 'f0', 'pass');
  return {
    gen: { ns: 'gen', iface: 'g0', ip: '10.99.0.1', vxlan: { vni: 1, srcMac: t.mac('gen', 'g0'), dstMac: t.mac('fwd', 'f0'), srcIp: '10.98.0.2', dstIp: '10.98.0.1' } },
    sink: { ns: 'sink', iface: 's0', ip: '10.99.0.2' },
  };
}

/**
 * The NAT rows' routed path (gen 10.99.0.1 ⇄ f0 | fwd | f1 ⇄ sink 10.99.1.2)
 * with OVS as the router: f0 and f1 on one bridge, OpenFlow that masquerades
 * 10.99.0.0/24 behind 10.99.1.254 with ct(commit,nat(src=…)), rewrites the
 * MACs and decrements the TTL as a router does; replies are un-NATed by ct(nat).
 */
function ovsMasq(t: Topology): Endpoints {
  for (const role of ['gen', 'fwd', 'sink']) t.addNs(role);
  t.veth({ ns: 'gen', name: 'g0', addr: '10.99.0.1/24' }, { ns: 'fwd', name: 'f0' });
  t.veth({ ns: 'fwd', name: 'f1' }, { ns: 'sink', name: 's0', addr: '10.99.1.2/24' });
  const ovs = startOvs(t, 'fwd');
  ovs.vsctl('add-br', 'br0', '--', 'set', 'bridge', 'br0', 'fail-mode=secure');
  ovs.vsctl('add-port', 'br0', 'f0', '--', 'set', 'interface', 'f0', 'ofport_request=1');
  ovs.vsctl('add-port', 'br0', 'f1', '--', 'set', 'interface', 'f1', 'ofport_request=2');
  const [f0, f1, gen, sink] = [t.mac('fwd', 'f0'), t.mac('fwd', 'f1'), t.mac('gen', 'g0'), t.mac('sink', 's0')];
  for (const flow of [
    'table=0,priority=10,ip,in_port=1,nw_src=10.99.0.0/24,actions=ct(commit,zone=1,nat(src=10.99.1.254),table=1)',
    `table=1,ip,actions=mod_dl_src:${f1},mod_dl_dst:${sink},dec_ttl,output:2`,
    'table=0,priority=10,ip,in_port=2,actions=ct(zone=1,nat,table=2)',
    `table=2,ip,ct_state=+trk+est,actions=mod_dl_src:${f0},mod_dl_dst:${gen},dec_ttl,output:1`,
  ]) ovs.ofctl('add-flow', 'br0', flow);
  t.attachXdp('fwd', 'f0', 'pass');
  return { gen: { ns: 'gen', iface: 'g0', ip: '10.99.0.1', dstMac: f0 }, sink: { ns: 'sink', iface: 's0', ip: '10.99.1.2' } };
}

/**
 * The NAT rows' routed path with the kernel forwarding, iptables-equivalent
 * masquerade in nftables, and every UDP flow put in a flowtable on f0 and f1
 * (`flow add @ft`): after its first packets a flow skips the forward path.
 */
function flowtableMasq(t: Topology, routed: (t: Topology) => Endpoints): Endpoints {
  const e = routed(t);
  execFileSync('ip', ['netns', 'exec', t.nsName('fwd'), 'nft', '-f', '-'], {
    input: `table inet xnb {
  flowtable ft { hook ingress priority 0; devices = { f0, f1 }; }
  chain forward { type filter hook forward priority 0; policy accept; ip protocol udp flow add @ft; }
  chain post { type nat hook postrouting priority 100; policy accept; oifname "f1" ip saddr 10.99.0.0/24 masquerade; }
}
`,
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  return e;
}

/** The peer rows, given the topologies scenarios.ts builds for xdpnet's own. */
export function peerScenarios(o: {
  line(t: Topology): Endpoints; routed(t: Topology): Endpoints; macs: number; natFlows: number; vxInnerDst: string;
}): Scenario[] {
  const ovs = { unavailable: ovsUnavailable };
  const ft = { unavailable: flowtableUnavailable };
  return [
    { name: 'ovs-bridge', about: 'Open vSwitch bridge over f0, f1 (kernel datapath, NORMAL forwarding)', ...ovs, build: (t) => ovsBridge(t, o.line) },
    { name: 'ovs-bridge-macs', about: `the same with ${o.macs} source MACs to learn`, ...ovs, flows: o.macs, varyMac: true, build: (t) => ovsBridge(t, o.line) },
    { name: 'ovs-vxlan-encap', about: 'Open vSwitch bridge over f0 and an OVS VXLAN port (VNI 1) out of f1: encapsulation', ...ovs, deliveredExtra: 50, build: (t) => ovsVxlanEncap(t, o.line, o.vxInnerDst) },
    { name: 'ovs-vxlan-decap', about: 'OVS VXLAN port (VNI 1) on f0\'s address, bridged to f1: decapsulation', ...ovs, deliveredExtra: 0, build: (t) => ovsVxlanDecap(t) },
    { name: 'ovs-masq', about: 'Open vSwitch routing f0 → f1 with ct(commit,nat(src=…)), 1 flow', ...ovs, build: (t) => ovsMasq(t) },
    { name: 'ovs-masq-10k', about: `the same with ${o.natFlows} flows`, ...ovs, flows: o.natFlows, build: (t) => ovsMasq(t) },
    { name: 'nft-flowtable-masq', about: 'kernel forwarding, nftables masquerade, UDP flows offloaded to a flowtable (flow add @ft), 1 flow', ...ft, build: (t) => flowtableMasq(t, o.routed) },
    { name: 'nft-flowtable-masq-10k', about: `the same with ${o.natFlows} flows`, ...ft, flows: o.natFlows, build: (t) => flowtableMasq(t, o.routed) },
  ];
}

/** OVS between the TCP rows' containers (h1, h2 in the host namespace). */
export function ovsTcpBridge(t: Topology): void {
  if (BR_NETFILTER) t.sysctl('host', { 'net.bridge.bridge-nf-call-iptables': 0, 'net.bridge.bridge-nf-call-ip6tables': 0 });
  const ovs = startOvs(t, 'host');
  ovs.vsctl('add-br', 'br0');
  for (const p of ['h1', 'h2']) ovs.vsctl('add-port', 'br0', p);
}
