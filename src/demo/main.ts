// `make demo`: the main job on an embedded default topology. Three
// "containers" (namespaces) sit on an xdpnet bridge in a "host" namespace, no
// Linux bridge anywhere; the bridge has a host address like docker0. Real
// traffic flows (ping between containers and to the host, an iperf3 TCP
// stream), then xdpnet shows its bridge, FDB and counters; then VXLAN: the
// containers reach a container on a kernel-vxlan host B, and a container on a
// second bridge reaches containers on an xdpnet host C; then NAT: the
// containers reach an "outside" namespace through masquerade, the outside
// reaches a container through a port mapping, and conntrack lists them; then a
// podman container on an xdpnet network (the CNI plugin); then two hosts
// joined through etcd (cluster-step.ts). Everything is
// removed at the end, also on Ctrl-C or failure.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { withNetns } from '../dataplane/host.js';
import { BenchObject } from '../objects/bench.js';
import { BPF_F_TEST_XDP_LIVE_FRAMES } from '../sys/libbpf.js';
import { ifNameToIndex } from '../sys/libc.js';
import { clusterStep } from './cluster-step.js';
import { podmanStep } from './podman-step.js';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const tag = `xd${process.pid}`;
const host = `${tag}-host`;
const containers = [1, 2, 3].map((i) => ({ ns: `${tag}-c${i}`, port: `veth${i}`, ip: `10.77.0.1${i}` }));
const made: string[] = [];
/** NAT: an "outside" namespace behind the host's uplink up0, with a server address no route leads back from. */
const outside = { ns: `${tag}-out`, gw: '10.78.0.254', host: '10.78.0.1', server: '198.51.100.7' };

/** VXLAN: a second simulated host (kernel vxlan device on a Linux bridge, one container) behind an underlay veth ul0. */
const hostB = { ns: `${tag}-hostB`, container: `${tag}-d1`, ip: '10.77.0.21', underA: '192.168.90.1', underB: '192.168.90.2', vni: '42' };

/**
 * VXLAN, xdpnet on both ends: a third simulated host C behind a second underlay veth ul1, with
 * containers e1, e2 on its own xdpnet bridge; on the host a second bridge br1 (container c4) joins
 * them over VNI 100. Both uplinks decapsulate at tc (`--hook tc`), which keeps GSO on a veth underlay.
 */
const hostC = {
  ns: `${tag}-hostC`, underA: '192.168.91.1', underC: '192.168.91.2', vni: '100',
  a: { ns: `${tag}-c4`, port: 'veth4', ip: '10.79.0.14' },
  containers: [1, 2].map((i) => ({ ns: `${tag}-e${i}`, port: `vc${i}`, ip: `10.79.0.2${i}` })),
};

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function step(title: string): void {
  console.log(`\n\x1b[1m== ${title}\x1b[0m`);
}
/** ns null: a command that enters no namespace (`network create|show` only talk to etcd, and refuse --netns). */
function xdpnet(args: string[], ns: string | null = host): void {
  console.log(`$ xdpnet${ns === host || ns === null ? '' : ` --netns ${ns}`} ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [CLI, ...(ns === null ? [] : ['--netns', ns]), ...args], { encoding: 'utf8' });
  process.stdout.write(r.stdout + r.stderr);
  if (r.status !== 0) throw new Error(`xdpnet ${args.join(' ')} failed`);
}

function build(): void {
  for (const n of [host, ...containers.map((c) => c.ns)]) {
    run('ip', ['netns', 'add', n]);
    made.push(n);
    run('ip', ['-n', n, 'link', 'set', 'lo', 'up']);
  }
  for (const c of containers) {
    run('ip', ['-n', host, 'link', 'add', c.port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', c.ns]);
    run('ip', ['-n', c.ns, 'addr', 'add', `${c.ip}/24`, 'dev', 'eth0']);
    run('ip', ['-n', host, 'link', 'set', c.port, 'up']);
    run('ip', ['-n', c.ns, 'link', 'set', 'eth0', 'up']);
    run('ip', ['-n', c.ns, 'route', 'add', 'default', 'via', '10.77.0.1']);
  }
  run('ip', ['netns', 'add', outside.ns]);
  made.push(outside.ns);
  run('ip', ['-n', host, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside.ns]);
  run('ip', ['-n', host, 'addr', 'add', `${outside.host}/24`, 'dev', 'up0']);
  run('ip', ['-n', outside.ns, 'addr', 'add', `${outside.gw}/24`, 'dev', 'eth0']);
  run('ip', ['-n', outside.ns, 'addr', 'add', `${outside.server}/32`, 'dev', 'lo']);
  for (const [n, d] of [[host, 'up0'], [outside.ns, 'eth0'], [outside.ns, 'lo']]) run('ip', ['-n', n, 'link', 'set', d, 'up']);
  run('ip', ['-n', host, 'route', 'add', 'default', 'via', outside.gw]);
  run('ip', ['netns', 'exec', host, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  // XDP on up0 expects complete checksums from its far end, as a NIC's wire has them (up0 keeps TSO).
  run('ip', ['netns', 'exec', outside.ns, 'ethtool', '-K', 'eth0', 'tx', 'off']);
}

function teardown(): void {
  const cli = (...a: string[]) => spawnSync(process.execPath, [CLI, '--netns', host, ...a], { stdio: 'ignore' });
  cli('nat', 'flush');
  cli('detach', '--all');
  cli('bridge', 'del', 'br0', '--force');
  cli('bridge', 'del', 'br1', '--force');
  for (const a of [['detach', '--all'], ['bridge', 'del', 'br0', '--force']]) {
    spawnSync(process.execPath, [CLI, '--netns', hostC.ns, ...a], { stdio: 'ignore' });
  }
  for (const n of made.splice(0)) spawnSync('ip', ['netns', 'del', n]);
}

function ping(from: (typeof containers)[number], to: string): void {
  const out = run('ip', ['netns', 'exec', from.ns, 'ping', '-c', '3', '-i', '0.2', to]);
  console.log(`${from.ip} -> ${to}: ${/(\d+) received/.exec(out)?.[1]}/3 replies, ${/= [\d.]+\/([\d.]+)/.exec(out)?.[1]} ms avg`);
}

async function iperf(seconds: number): Promise<string> {
  const [a, , c] = containers;
  const server = spawn('ip', ['netns', 'exec', c.ns, 'iperf3', '-s', '-1', '-B', c.ip], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 500));
    const out = run('ip', ['netns', 'exec', a.ns, 'iperf3', '-c', c.ip, '-t', String(seconds), '-J']);
    const bps = JSON.parse(out).end.sum_received.bits_per_second as number;
    return `${(bps / 1e9).toFixed(2)} Gbit/s`;
  } finally {
    server.kill();
  }
}

/** A 1 s iperf3 run: server in serverNs bound to bind, client in clientNs to host:port; what the server saw. */
async function iperfVia(serverNs: string, bind: string, clientNs: string, target: string, port: number): Promise<string> {
  const server = spawn('ip', ['netns', 'exec', serverNs, 'iperf3', '-s', '-1', '-B', bind, '-J'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  server.stdout!.on('data', (d: Buffer) => (out += d));
  const closed = new Promise((r) => server.once('close', r));
  try {
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 0; ; i++) { // a server slow to start (a busy machine) refuses the first try
      try {
        run('ip', ['netns', 'exec', clientNs, 'iperf3', '-c', target, '-p', String(port), '-t', '1']);
        break;
      } catch (e) {
        if (i === 2) throw e;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    await Promise.race([closed, new Promise((r) => setTimeout(r, 3000))]);
    const j = JSON.parse(out);
    return `${(j.end.sum_received.bits_per_second / 1e9).toFixed(2)} Gbit/s, the server saw ${j.start.connected[0].remote_host}`;
  } finally {
    server.kill();
  }
}

/** Host B the kernel way (what Docker overlay and Flannel build), joined to the host by the underlay ul0. */
function buildHostB(): void {
  for (const n of [hostB.ns, hostB.container]) {
    run('ip', ['netns', 'add', n]);
    made.push(n);
    run('ip', ['-n', n, 'link', 'set', 'lo', 'up']);
  }
  const inB = (...a: string[]) => run('ip', ['-n', hostB.ns, ...a]);
  run('ip', ['-n', host, 'link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul0', 'netns', hostB.ns]);
  run('ip', ['-n', host, 'addr', 'add', `${hostB.underA}/24`, 'dev', 'ul0']);
  inB('addr', 'add', `${hostB.underB}/24`, 'dev', 'ul0');
  run('ip', ['-n', host, 'link', 'set', 'ul0', 'up']);
  inB('link', 'set', 'ul0', 'up');
  // the far end of an XDP uplink: GRO (XDP redirects into it), complete checksums
  for (const n of [host, hostB.ns]) run('ip', ['netns', 'exec', n, 'ethtool', '-K', 'ul0', 'gro', 'on', 'tx', 'off']);
  inB('link', 'add', 'vx0', 'type', 'vxlan', 'id', hostB.vni, 'local', hostB.underB, 'remote', hostB.underA, 'dstport', '4789', 'dev', 'ul0');
  inB('link', 'add', 'kbr0', 'type', 'bridge');
  inB('link', 'add', 'vd1', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', hostB.container);
  for (const d of ['vx0', 'vd1']) inB('link', 'set', d, 'master', 'kbr0', 'up');
  inB('link', 'set', 'kbr0', 'up');
  run('ip', ['-n', hostB.container, 'addr', 'add', `${hostB.ip}/24`, 'dev', 'eth0']);
  run('ip', ['-n', hostB.container, 'link', 'set', 'eth0', 'mtu', '1450', 'up']);
}

/** `xdpnet monitor` while c1 pings c2 and the outside, and a frame made to be dropped (a VLAN c1's port does not carry). */
async function monitorStep(): Promise<void> {
  step('xdpnet monitor: what the datapath does with a ping (bridge, NAT) and why it drops a frame');
  const args = ['--netns', host, 'monitor', '--duration', '3'];
  console.log(`$ xdpnet ${args.slice(2).join(' ')}`);
  const mon = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  mon.stdout!.on('data', (d: Buffer) => (out += d));
  const done = new Promise((r) => mon.once('close', r));
  // traffic only once it listens (its "monitoring ..." line on stderr); --duration counts from there
  await new Promise<void>((r) => {
    let err = '';
    mon.stderr!.on('data', (d: Buffer) => ((err += d), err.includes('monitoring') && r()));
    mon.once('close', () => r());
  });
  run('ip', ['netns', 'exec', containers[0].ns, 'ping', '-c', '1', containers[1].ip]);
  run('ip', ['netns', 'exec', containers[0].ns, 'ping', '-c', '1', outside.server]);
  // an ARP tagged VLAN 20 from c1 (this kernel may lack 8021q, so it is sent raw): c1's port is an access port of VLAN 1
  injectFrame(containers[0].ns, 'eth0', containers[0].port, taggedArp(macOf(containers[0].ns, 'eth0'), 20, '10.20.0.11', '10.20.0.12'));
  await done;
  const lines = out.trim().split('\n');
  console.log(lines.filter((l) => !l.includes(' IPv6')).slice(0, 14).join('\n'));
}

function macOf(ns: string, dev: string): string {
  return (JSON.parse(run('ip', ['-n', ns, '-j', 'link', 'show', 'dev', dev])) as Array<{ address: string }>)[0].address;
}

/** Broadcast ARP who-has `target` tell `sender`, 802.1Q-tagged. */
function taggedArp(src: string, vid: number, sender: string, target: string): Buffer {
  const mac = (m: string) => Buffer.from(m.split(':').map((x) => parseInt(x, 16)));
  const ip = (a: string) => Buffer.from(a.split('.').map(Number));
  const tag = Buffer.alloc(4);
  tag.writeUInt16BE(0x8100, 0);
  tag.writeUInt16BE(vid, 2);
  const arp = Buffer.from([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]); // ethertype ARP, Ethernet/IPv4, request
  return Buffer.concat([Buffer.alloc(6, 0xff), mac(src), tag, arp, mac(src), ip(sender), Buffer.alloc(6), ip(target)]);
}

/**
 * Sends one raw frame out of dev in ns: a live-frames test run of the bench
 * object's redirect program (no packet socket, no extra tool). The far end
 * (hostPort, in the host namespace) needs GRO to take an XDP-sent frame.
 */
function injectFrame(ns: string, dev: string, hostPort: string, frame: Buffer): void {
  run('ip', ['netns', 'exec', host, 'ethtool', '-K', hostPort, 'gro', 'on']);
  withNetns(ns, () => {
    const b = BenchObject.load('redirect', { redirectIfindex: ifNameToIndex(dev) });
    try {
      b.prog.testRun({ data: frame, flags: BPF_F_TEST_XDP_LIVE_FRAMES, repeat: 1 });
    } finally {
      b.close();
    }
  });
}

async function overlayStep(): Promise<void> {
  step(`VXLAN: host B (kernel vxlan device on a Linux bridge, container d1 ${hostB.ip}) behind the underlay ul0`);
  buildHostB();
  xdpnet(['vxlan', 'add', '--bridge', 'br0', '--vni', hostB.vni, '--local', hostB.underA, '--dev', 'ul0', '--learning']);
  xdpnet(['vxlan', 'remote', 'add', '--vni', hostB.vni, hostB.underB]);
  console.log('setting the inner MTU (1450) on c1..c3, and GRO (the uplink\'s XDP redirects decapsulated frames into their veths)');
  for (const c of containers) {
    run('ip', ['-n', c.ns, 'link', 'set', 'eth0', 'mtu', '1450']);
    run('ip', ['netns', 'exec', c.ns, 'ethtool', '-K', 'eth0', 'gro', 'on']);
  }
  ping(containers[0], hostB.ip);
  const server = spawn('ip', ['netns', 'exec', hostB.container, 'iperf3', '-s', '-1', '-B', hostB.ip], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 500));
    const out = run('ip', ['netns', 'exec', containers[0].ns, 'iperf3', '-c', hostB.ip, '-t', '1', '-J']);
    console.log(`iperf3 c1 -> d1 across the overlay: ${(JSON.parse(out).end.sum_received.bits_per_second / 1e9).toFixed(2)} Gbit/s`);
  } finally {
    server.kill();
  }
  xdpnet(['vxlan', 'show']);
  xdpnet(['fdb', 'show', '--bridge', 'br0']);
}

/** A container namespace whose eth0 (addr, inner MTU 1450) faces port in hostNs. */
function containerOn(hostNs: string, c: { ns: string; port: string; ip: string }): void {
  run('ip', ['netns', 'add', c.ns]);
  made.push(c.ns);
  run('ip', ['-n', c.ns, 'link', 'set', 'lo', 'up']);
  run('ip', ['-n', hostNs, 'link', 'add', c.port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', c.ns]);
  run('ip', ['-n', c.ns, 'addr', 'add', `${c.ip}/24`, 'dev', 'eth0']);
  run('ip', ['-n', c.ns, 'link', 'set', 'eth0', 'mtu', '1450', 'up']);
  run('ip', ['netns', 'exec', c.ns, 'ethtool', '-K', 'eth0', 'gro', 'on']);
  run('ip', ['-n', hostNs, 'link', 'set', c.port, 'up']);
}

async function xdpnetOverlayStep(): Promise<void> {
  step(`VXLAN, xdpnet on both hosts: host C (containers e1, e2 on its xdpnet bridge) behind the underlay ul1, VNI ${hostC.vni}`);
  run('ip', ['netns', 'add', hostC.ns]);
  made.push(hostC.ns);
  run('ip', ['-n', hostC.ns, 'link', 'set', 'lo', 'up']);
  run('ip', ['-n', host, 'link', 'add', 'ul1', 'type', 'veth', 'peer', 'name', 'ul1', 'netns', hostC.ns]);
  for (const [n, a] of [[host, hostC.underA], [hostC.ns, hostC.underC]]) {
    run('ip', ['-n', n, 'addr', 'add', `${a}/24`, 'dev', 'ul1']);
    run('ip', ['-n', n, 'link', 'set', 'ul1', 'up']);
  }
  containerOn(host, hostC.a);
  for (const c of hostC.containers) containerOn(hostC.ns, c);
  for (const [ns, local, remote, ports] of [
    [host, hostC.underA, hostC.underC, [hostC.a.port]], [hostC.ns, hostC.underC, hostC.underA, hostC.containers.map((c) => c.port)],
  ] as const) {
    xdpnet(['bridge', 'add', ns === host ? 'br1' : 'br0'], ns);
    const br = ns === host ? 'br1' : 'br0';
    xdpnet(['vxlan', 'add', '--bridge', br, '--vni', hostC.vni, '--local', local, '--dev', 'ul1', '--hook', 'tc', '--learning'], ns);
    xdpnet(['vxlan', 'remote', 'add', '--vni', hostC.vni, remote], ns);
    for (const p of ports) xdpnet(['attach', p, '--bridge', br], ns);
  }
  for (const c of hostC.containers) ping(hostC.a, c.ip);
  ping(hostC.containers[1], hostC.a.ip);
  const [e1] = hostC.containers;
  const server = spawn('ip', ['netns', 'exec', e1.ns, 'iperf3', '-s', '-1', '-B', e1.ip], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 500));
    const out = run('ip', ['netns', 'exec', hostC.a.ns, 'iperf3', '-c', e1.ip, '-t', '1', '-J']);
    console.log(`iperf3 c4 -> e1 across the xdpnet overlay: ${(JSON.parse(out).end.sum_received.bits_per_second / 1e9).toFixed(2)} Gbit/s`);
  } finally {
    server.kill();
  }
  xdpnet(['vxlan', 'show'], hostC.ns);
  xdpnet(['fdb', 'show', '--bridge', 'br0'], hostC.ns);
  xdpnet(['stats'], hostC.ns);
}

async function main(): Promise<void> {
  process.on('SIGINT', () => {
    teardown();
    process.exit(130);
  });
  try {
    step('topology: containers c1..c3 (10.77.0.11-13) on veth ports of a "host" namespace');
    build();
    step('an xdpnet bridge with a host address (like docker0), the veths as its ports (tc hook)');
    xdpnet(['bridge', 'add', 'br0', '--address', '10.77.0.1/24']);
    for (const c of containers) xdpnet(['attach', c.port, '--bridge', 'br0']);
    xdpnet(['status']);
    step('real traffic: containers ping each other and the host, then one iperf3 TCP stream');
    ping(containers[0], containers[1].ip);
    ping(containers[1], containers[2].ip);
    ping(containers[2], '10.77.0.1');
    console.log(`iperf3 c1 -> c3: ${await iperf(3)}`);
    step('what the bridge learned and counted');
    xdpnet(['bridge', 'show']);
    xdpnet(['fdb', 'show']);
    xdpnet(['stats']);
    await overlayStep();
    await xdpnetOverlayStep();
    step('NAT: masquerade to an "outside" namespace (which routes nothing back), a port mapping in');
    xdpnet(['nat', 'masquerade', 'add', '--src', '10.77.0.0/24', '--out', 'up0']);
    xdpnet(['nat', 'portmap', 'add', '--proto', 'tcp', '--host-port', '10080', '--to', `${containers[2].ip}:5201`]);
    ping(containers[0], outside.server);
    console.log(`iperf3 c1 -> ${outside.server}:5201 (outside): ${await iperfVia(outside.ns, outside.server, containers[0].ns, outside.server, 5201)}`);
    console.log(`iperf3 outside -> ${outside.host}:10080 (mapped to c3): ${await iperfVia(containers[2].ns, containers[2].ip, outside.ns, outside.host, 10080)}`);
    xdpnet(['nat', 'show']);
    xdpnet(['conntrack', 'list']);
    await monitorStep();

    step('podman: a real container on an xdpnet network through the CNI plugin (xdpnet-cni)');
    podmanStep(host, outside, (args) => xdpnet(args));
    step('many hosts: two hosts joined through etcd, a container on each (CNI plugin, ipam xdpnet-cluster) pinging the other');
    await clusterStep(tag, (args, ns) => xdpnet(args, ns === undefined ? host : ns));
    step('clean up');
    xdpnet(['nat', 'flush']);
    xdpnet(['vxlan', 'del', '--vni', hostB.vni]);
    xdpnet(['vxlan', 'del', '--vni', hostC.vni]);
    xdpnet(['detach', '--all']);
    xdpnet(['bridge', 'del', 'br0']);
    xdpnet(['bridge', 'del', 'br1']);
    xdpnet(['bridge', 'del', 'br0', '--force'], hostC.ns);
    xdpnet(['detach', '--all'], hostC.ns);
  } finally {
    teardown();
  }
  console.log('demo done: namespaces removed, nothing left on bpffs');
}

main().catch((e) => {
  console.error(`demo failed: ${(e as Error).message}`);
  process.exitCode = 1;
});
