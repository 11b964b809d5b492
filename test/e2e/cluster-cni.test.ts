// Containers on a cluster network through the CNI plugin, run directly as a
// runtime runs it (inside each simulated host): the address comes from the
// host's agent over its socket (ipam xdpnet-cluster), the endpoint appears in
// etcd and in the other host's maps, containers on two hosts ping each other,
// and DEL gives the address and the record back everywhere. A real etcd.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestEtcd } from '../../bench/etcd.js';
import { CODES } from '../../src/cni/spec.js';
import { expectCniError, expectValidResult, runPlugin, type PluginRun } from '../helpers/cni.js';
import { cleanup, CLI, inNs, netns, ROOT, sh, slow, veth, xdpnet } from '../helpers/sys.js';

const NET = 'cnie2e';
const VNI = 4343;
const BR = `xnb${VNI}`;
const GW = '10.93.0.1';
const HOSTS = ['h1', 'h2'] as const;
type H = (typeof HOSTS)[number];
const UNDERLAY: Record<H, string> = { h1: '192.168.78.1', h2: '192.168.78.2' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitFor(what: string, cond: () => boolean, ms = slow(60_000)): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('cluster: containers through the CNI plugin', { timeout: slow(180_000) }, () => {
  const etcd = new TestEtcd();
  const host = {} as Record<H, string>;
  const ctr = {} as Record<H, string>;
  const added = {} as Record<H, { ip: string; mac: string }>;
  const agents = {} as Partial<Record<H, ChildProcess>>;
  const logs = {} as Record<H, string>;
  const conf = JSON.stringify({ cniVersion: '1.0.0', name: NET, type: 'xdpnet', hook: 'tc', ipam: { type: 'xdpnet-cluster', network: NET } });
  const plugin = (h: H, cmd: string, c: string, stdin = conf): PluginRun => runPlugin(
    { CNI_COMMAND: cmd, CNI_CONTAINERID: c, CNI_NETNS: `/run/netns/${c}`, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' }, stdin, ['nsenter', `--net=/run/netns/${host[h]}`]);
  const endpoints = () => (JSON.parse(xdpnet(['network', 'show', NET, '--json', '--etcd-endpoints', etcd.url]).stdout) as { endpoints: Array<{ ip: string; mac: string; node: string }> }).endpoints;
  const remoteMacs = (h: H) => (JSON.parse(xdpnet(['--netns', host[h], 'fdb', 'show', '--bridge', BR, '--json']).stdout) as Array<{ mac: string; remote: string | null }>)
    .filter((e) => e.remote).map((e) => `${e.mac}@${e.remote}`);

  function startAgent(h: H): void {
    logs[h] = '';
    const p = spawn(process.execPath, [CLI, '--netns', host[h], 'agent', '--network', NET, '--node', h, '--uplink-hook', 'tc', '--log-format', 'json',
      '--etcd-endpoints', etcd.url], { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
    p.stdout!.on('data', (d) => { logs[h] += d; });
    p.stderr!.on('data', (d) => { logs[h] += d; });
    agents[h] = p;
  }

  beforeAll(async () => {
    await etcd.start();
    const under = netns('cunder');
    sh('ip', ['-n', under, 'link', 'add', 'ubr', 'type', 'bridge']);
    sh('ip', ['-n', under, 'link', 'set', 'ubr', 'up']);
    for (const [i, h] of HOSTS.entries()) {
      host[h] = netns(`c${h}`);
      veth(host[h], 'up0', under, `u${i}`, `${UNDERLAY[h]}/24`);
      sh('ip', ['-n', under, 'link', 'set', `u${i}`, 'master', 'ubr']);
      sh('ip', ['-n', host[h], 'route', 'add', 'default', 'dev', 'up0']);
      ctr[h] = netns(`k${h}`);
      // no IPv6: its DAD and MLD multicast would flood (as it should) and blur the count of what the pings flood
      sh('ip', ['netns', 'exec', ctr[h], 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    }
    expect(xdpnet(['network', 'create', NET, '--vni', String(VNI), '--cidr', '10.93.0.0/16', '--block', '/28', '--etcd-endpoints', etcd.url]).code).toBe(0);
    for (const h of HOSTS) startAgent(h);
    for (const h of HOSTS) await waitFor(`agent ${h} to serve the plugin`, () => logs[h].includes('"msg":"joined"') && logs[h].includes('serving the CNI plugin'));
  }, slow(300_000));

  afterAll(async () => {
    for (const h of HOSTS) if (logs[h]) console.log(`--- agent ${h}\n${logs[h].split('\n').slice(-12).join('\n')}`);
    for (const h of HOSTS) {
      const p = agents[h];
      if (p && p.exitCode === null && p.signalCode === null) await new Promise<void>((r) => { p.once('exit', () => r()); p.kill('SIGTERM'); });
    }
    await etcd.stop();
    cleanup();
  }, slow(180_000));

  it('ADD takes an address of the host\'s block from its agent and publishes the endpoint', () => {
    for (const h of HOSTS) {
      const r = plugin(h, 'ADD', ctr[h]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expectValidResult(r.json, '1.0.0');
      const ifs = r.json.interfaces as Array<{ name: string; mac: string }>;
      expect(ifs[0]).toEqual({ name: BR, mac: '02:78:6e:00:10:f7' }); // the network's bridge, with the distributed gateway's MAC
      const ipc = (r.json.ips as Array<{ address: string; gateway: string }>)[0];
      expect(ipc.gateway).toBe(GW);
      expect(ipc.address).toMatch(/^10\.93\.0\.\d+\/16$/);
      added[h] = { ip: ipc.address.split('/')[0], mac: ifs[2].mac };
      // what the container got is what the result says
      expect(sh('ip', ['-n', ctr[h], '-j', 'link', 'show', 'eth0'])).toContain(`"address":"${ifs[2].mac}"`);
      expect(sh('ip', ['-n', ctr[h], '-4', 'route', 'show', 'default'])).toContain(`via ${GW}`);
    }
    expect(added.h1.ip).not.toBe(added.h2.ip);
    // each host's block is its own (/28: 16 addresses)
    expect(Number(added.h1.ip.split('.')[3]) >> 4).not.toBe(Number(added.h2.ip.split('.')[3]) >> 4);
    const eps = endpoints().map((e) => `${e.ip} ${e.mac} ${e.node}`).sort();
    expect(eps).toEqual(HOSTS.map((h) => `${added[h].ip} ${added[h].mac} ${h}`).sort());
  });

  it('containers on the two hosts ping each other, with no flood and ARP answered by the datapath', async () => {
    await waitFor('each host to program the other\'s container', () => HOSTS.every((h) => {
      const o = h === 'h1' ? 'h2' : 'h1';
      return remoteMacs(h).includes(`${added[o].mac}@${UNDERLAY[o]}`);
    }));
    type Port = { iface: string; flooded: number; arpReplied: number };
    const port = (h: H) => (JSON.parse(xdpnet(['--netns', host[h], 'stats', '--json']).stdout) as { interfaces: Port[] }).interfaces.find((i) => i.iface.startsWith('xnc'))!;
    const before = Object.fromEntries(HOSTS.map((h) => [h, port(h)])) as Record<H, Port>;
    for (const h of HOSTS) sh('ip', ['-n', ctr[h], 'neigh', 'flush', 'all']);
    for (const [a, b] of [['h1', 'h2'], ['h2', 'h1']] as const) {
      const r = inNs(ctr[a], 'ping', ['-c', '3', '-i', '0.1', '-W', '1', added[b].ip]);
      expect(r.status, `${a} -> ${b}: ${r.stdout}`).toBe(0);
    }
    for (const h of HOSTS) {
      const now = port(h);
      expect(now.flooded - before[h].flooded, `flooded on ${h}'s container port`).toBe(0);
      expect(now.arpReplied - before[h].arpReplied, `ARP answered on ${h}`).toBeGreaterThanOrEqual(1);
    }
  });

  it('CHECK passes; DEL releases the address and the record, and the other host forgets the MAC', async () => {
    expect(plugin('h1', 'CHECK', ctr.h1).code).toBe(0);
    const del = plugin('h2', 'DEL', ctr.h2);
    expect(del.code, del.stdout + del.stderr).toBe(0);
    expect(endpoints().map((e) => e.ip)).toEqual([added.h1.ip]);
    await waitFor('h1 to drop h2\'s container', () => !remoteMacs('h1').some((m) => m.startsWith(added.h2.mac)));
    expect(sh('ip', ['-n', host.h2, '-j', 'link', 'show']).includes('xnc')).toBe(false);
    expect(plugin('h2', 'DEL', ctr.h2).code).toBe(0); // twice: still fine
    // the address is free again: the next ADD on h2 gets it back
    const again = plugin('h2', 'ADD', ctr.h2);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect((again.json.ips as Array<{ address: string }>)[0].address).toBe(`${added.h2.ip}/16`);
    expect(plugin('h2', 'DEL', ctr.h2).code).toBe(0);
  });

  it('refuses a bridge of its own, and says when no agent serves the network', () => {
    const bad = plugin('h1', 'ADD', ctr.h2, JSON.stringify({ ...JSON.parse(conf), bridge: 'xn9' }));
    expectCniError(bad, CODES.INVALID_CONFIG, /bridge must be left out with xdpnet-cluster/);
    const other = JSON.stringify({ ...JSON.parse(conf), ipam: { type: 'xdpnet-cluster', network: 'nosuch' } });
    expectCniError(plugin('h1', 'ADD', ctr.h2, other), CODES.TRY_AGAIN_LATER, /no agent of network nosuch listens/);
    expectCniError(plugin('h1', 'STATUS', ctr.h2, other), CODES.NOT_AVAILABLE, /no agent of network nosuch/);
    expect(sh('ip', ['-n', ctr.h2, '-j', 'link', 'show']).includes('eth0')).toBe(false); // nothing was made
  });
});
