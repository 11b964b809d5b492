// `make demo`'s cluster step: two simulated hosts joined through a real etcd
// (Debian's etcd-server on free 127.0.0.1 ports, a temporary data dir, stopped
// by PID), an agent on each, a container on each made by the CNI plugin with
// `"ipam": {"type": "xdpnet-cluster"}`, and a ping across. Skipped, saying
// why, when etcd cannot start. Everything it makes it removes.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TestEtcd } from '../../bench/etcd.js';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const PLUGIN = fileURLToPath(new URL('../cni/main.js', import.meta.url));
const NET = 'demo';
const VNI = 200;

function ip(...a: string[]): void {
  const r = spawnSync('ip', a, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${a.join(' ')}: ${r.stderr.trim()}`);
}

export async function clusterStep(tag: string, show: (args: string[], ns?: string | null) => void): Promise<void> {
  const etcd = new TestEtcd();
  try {
    await etcd.start();
  } catch (e) {
    console.log(`skipped: etcd cannot start here (${(e as Error).message.split('\n')[0]}); apt-get install etcd-server`);
    await etcd.stop();
    return;
  }
  const hosts = ['x', 'y'].map((h, i) => ({ name: `node-${h}`, ns: `${tag}-n${h}`, ctr: `${tag}-k${h}`, under: `192.168.92.${i + 1}`, agent: undefined as ChildProcess | undefined, log: '' }));
  const made: string[] = [];
  const conf = JSON.stringify({ cniVersion: '1.0.0', name: NET, type: 'xdpnet', hook: 'tc', ipam: { type: 'xdpnet-cluster', network: NET } });
  const plugin = (h: (typeof hosts)[number], cmd: string) => spawnSync('nsenter', [`--net=/run/netns/${h.ns}`, process.execPath, PLUGIN], {
    input: conf, encoding: 'utf8',
    env: { ...process.env, CNI_COMMAND: cmd, CNI_CONTAINERID: h.ctr, CNI_NETNS: `/run/netns/${h.ctr}`, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' },
  });
  const etcdArgs = ['--etcd-endpoints', etcd.url];
  try {
    for (const h of hosts) {
      for (const n of [h.ns, h.ctr]) {
        ip('netns', 'add', n);
        made.push(n);
        spawnSync('ip', ['netns', 'exec', n, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
      }
    }
    const [x, y] = hosts;
    ip('-n', x.ns, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0', 'netns', y.ns);
    for (const h of hosts) {
      ip('-n', h.ns, 'addr', 'add', `${h.under}/24`, 'dev', 'up0');
      ip('-n', h.ns, 'link', 'set', 'up0', 'up');
      ip('-n', h.ns, 'route', 'add', 'default', 'dev', 'up0');
    }
    console.log(`etcd ${etcd.url} (pid ${etcd.proc!.pid}); hosts ${x.ns} (${x.under}) and ${y.ns} (${y.under}) on one underlay`);
    show(['network', 'create', NET, '--vni', String(VNI), '--cidr', '10.95.0.0/16', '--block', '/26', ...etcdArgs], null);
    for (const h of hosts) {
      console.log(`$ xdpnet --netns ${h.ns} agent --network ${NET} --node ${h.name} --uplink-hook tc ${etcdArgs.join(' ')} &`);
      h.agent = spawn(process.execPath, [CLI, '--netns', h.ns, 'agent', '--network', NET, '--node', h.name, '--uplink-hook', 'tc', ...etcdArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
      h.agent.stdout!.on('data', (d) => { h.log += d; });
      h.agent.stderr!.on('data', (d) => { h.log += d; });
    }
    await until('both agents to join', () => hosts.every((h) => / joined /.test(h.log) && h.log.includes('serving the CNI plugin')));
    const addrs: string[] = [];
    for (const h of hosts) {
      console.log(`CNI ADD in ${h.ns} for container ${h.ctr} (ipam xdpnet-cluster: the address comes from ${h.name}'s agent)`);
      const r = plugin(h, 'ADD');
      if (r.status !== 0) throw new Error(`CNI ADD on ${h.ns}: ${r.stdout}${r.stderr}`);
      const res = JSON.parse(r.stdout) as { ips: Array<{ address: string }>; interfaces: Array<{ mac: string }> };
      addrs.push(res.ips[0].address.split('/')[0]);
      console.log(`  ${h.ctr}: ${res.ips[0].address}, MAC ${res.interfaces[2].mac}`);
    }
    await until('each agent to program the other\'s container', () => hosts.every((h) => (h.log.match(/ endpoint added /g) ?? []).length >= 2));
    for (const [from, to] of [[x, addrs[1]], [y, addrs[0]]] as const) {
      const out = spawnSync('ip', ['netns', 'exec', from.ctr, 'ping', '-c', '3', '-i', '0.2', '-W', '2', to], { encoding: 'utf8' }).stdout;
      console.log(`${from.ctr} -> ${to} (across the overlay): ${/(\d+) received/.exec(out)?.[1] ?? 0}/3 replies`);
    }
    show(['network', 'show', NET, ...etcdArgs], null);
    show(['fdb', 'show', '--bridge', `xnb${VNI}`], x.ns);
    console.log(`agent ${x.name}'s log:\n${x.log.trim().split('\n').map((l) => `  ${l}`).join('\n')}`);
    for (const h of hosts) {
      const r = plugin(h, 'DEL');
      if (r.status !== 0) console.log(`CNI DEL on ${h.ns} failed: ${r.stdout}${r.stderr}`);
    }
  } finally {
    for (const h of hosts) {
      const a = h.agent;
      if (a && a.exitCode === null && a.signalCode === null) await new Promise<void>((r) => { a.once('exit', () => r()); a.kill('SIGTERM'); });
    }
    await etcd.stop();
    for (const h of hosts) {
      if (!made.includes(h.ns)) continue;
      const cli = (...a: string[]) => spawnSync(process.execPath, [CLI, '--netns', h.ns, ...a], { stdio: 'ignore' });
      cli('vxlan', 'del', '--vni', String(VNI));
      cli('detach', '--all');
      cli('bridge', 'del', `xnb${VNI}`, '--force');
    }
    for (const n of made) spawnSync('ip', ['netns', 'del', n]);
  }
}

async function until(what: string, cond: () => boolean, ms = 60_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
