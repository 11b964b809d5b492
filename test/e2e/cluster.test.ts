// Many hosts, one network, through a real etcd: three simulated hosts
// (namespaces on one underlay bridge), each with its own xdpnet agent and a
// container attached by hand (`endpoint add`). Every pair pings and talks TCP
// with no flooding; ARP is answered in the datapath; agent kill -9 and
// restart, etcd down and back, and a host that goes away are all exercised
// under traffic.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestEtcd } from '../../bench/etcd.js';
import { cleanup, CLI, inNs, netns, nsMac, ROOT, sh, slow, veth, xdpnet } from '../helpers/sys.js';

/** Like sys.ts's ok(), but the state lock is machine-wide: a wait for another engineer's command is no failure. */
function ok(args: string[]): string {
  const r = xdpnet(args);
  const stderr = r.stderr.replace(/^xdpnet: waiting for another xdpnet command to finish\n/gm, '');
  expect(stderr, `xdpnet ${args.join(' ')}`).toBe('');
  expect(r.code, `xdpnet ${args.join(' ')}`).toBe(0);
  return r.stdout;
}

const NET = 'e2e';
const VNI = 4242;
const BR = `xnb${VNI}`;
const GW = '10.90.0.1';
const TTL = 10; // the default: a restarted agent must be back within it, or the others drop its host
const HOSTS = ['h1', 'h2', 'h3'] as const;
type H = (typeof HOSTS)[number];
const UNDERLAY: Record<H, string> = { h1: '192.168.77.1', h2: '192.168.77.2', h3: '192.168.77.3' };

interface IfStats { iface: string; flooded: number; arpReplied: number; rxPackets: number; drops: Record<string, number> }

const quiet = (ns: string) => sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean, ms = slow(60_000)): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (cond()) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Pings in the background; resolves with [sent, received]. */
function pingRun(ns: string, ip: string, count: number, interval = 0.02): Promise<[number, number]> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', ns, 'ping', '-n', '-q', '-c', String(count), '-i', String(interval), '-W', '1', ip], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('exit', () => {
      const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
      resolve(m ? [Number(m[1]), Number(m[2])] : [count, 0]);
    });
  });
}

describe('cluster: three hosts through etcd', { timeout: slow(180_000) }, () => {
  const etcd = new TestEtcd();
  let under: string;
  const host = {} as Record<H, string>;
  const ctr = {} as Record<H, string>;
  const ip = {} as Record<H, string>;
  const mac = {} as Record<H, string>;
  const agents = {} as Partial<Record<H, ChildProcess>>;
  const logs = {} as Record<H, string>;
  const etcdArgs = () => ['--etcd-endpoints', etcd.url];

  function startAgent(h: H): void {
    logs[h] = '';
    const p = spawn(process.execPath, [CLI, '--netns', host[h], 'agent', '--network', NET, '--node', h, '--ttl', String(TTL),
      '--uplink-hook', 'tc', '--log-format', 'json', ...etcdArgs()], { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
    p.stdout!.on('data', (d) => { logs[h] += d; });
    p.stderr!.on('data', (d) => { logs[h] += d; });
    agents[h] = p;
  }
  async function killAgent(h: H, signal: NodeJS.Signals): Promise<void> {
    const p = agents[h];
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((r) => { p.once('exit', () => r()); p.kill(signal); });
    delete agents[h];
  }
  const fdb = (h: H) => JSON.parse(ok(['--netns', host[h], 'fdb', 'show', '--bridge', BR, '--json'])) as Array<{ mac: string; remote: string | null; static: boolean; port?: string }>;
  const remoteMacs = (h: H) => fdb(h).filter((e) => e.remote).map((e) => `${e.mac}@${e.remote}`).sort();
  const vtepRemotes = (h: H) => (JSON.parse(ok(['--netns', host[h], 'vxlan', 'show', '--json'])) as Array<{ vni: number; remotes: string[] }>).find((v) => v.vni === VNI)?.remotes.slice().sort() ?? [];
  const stats = (h: H) => (JSON.parse(ok(['--netns', host[h], 'stats', '--json'])) as { interfaces: IfStats[] }).interfaces;
  /** What h's maps must hold: the other live hosts' VTEPs and their containers' MACs behind them. */
  const expected = (h: H, live: readonly H[]) => ({
    remotes: live.filter((o) => o !== h).map((o) => UNDERLAY[o]).sort(),
    macs: live.filter((o) => o !== h).map((o) => `${mac[o]}@${UNDERLAY[o]}`).sort(),
  });
  const converged = (h: H, live: readonly H[]) => {
    const e = expected(h, live);
    return JSON.stringify(vtepRemotes(h)) === JSON.stringify(e.remotes) && JSON.stringify(remoteMacs(h)) === JSON.stringify(e.macs);
  };

  beforeAll(async () => {
    await etcd.start();
    under = netns('under');
    sh('ip', ['-n', under, 'link', 'add', 'ubr', 'type', 'bridge']);
    sh('ip', ['-n', under, 'link', 'set', 'ubr', 'up']);
    for (const [i, h] of HOSTS.entries()) {
      host[h] = netns(h);
      quiet(host[h]);
      veth(host[h], 'up0', under, `u${i}`, `${UNDERLAY[h]}/24`);
      sh('ip', ['-n', under, 'link', 'set', `u${i}`, 'master', 'ubr']);
      sh('ip', ['-n', host[h], 'route', 'add', 'default', 'dev', 'up0']); // the agent takes its underlay address from here
    }
    ok(['network', 'create', NET, '--vni', String(VNI), '--cidr', '10.90.0.0/16', '--block', '/26', ...etcdArgs()]);
    for (const h of HOSTS) startAgent(h);
    for (const h of HOSTS) await waitFor(`agent ${h} to join`, () => logs[h].includes('"msg":"joined"'));
    for (const h of HOSTS) {
      const c = netns(`c${h}`);
      ctr[h] = c;
      quiet(c);
      veth(host[h], `p${h}`, c, 'eth0');
      sh('ip', ['-n', c, 'link', 'set', 'eth0', 'mtu', '1450']);
      mac[h] = nsMac(c);
      ok(['--netns', host[h], 'attach', `p${h}`, '--bridge', BR]);
      const ep = JSON.parse(ok(['--netns', host[h], 'endpoint', 'add', `p${h}`, '--network', NET, '--mac', mac[h], '--node', h, '--json', ...etcdArgs()])) as { ip: string; prefix: number; gateway: string };
      expect(ep.gateway).toBe(GW);
      ip[h] = ep.ip;
      sh('ip', ['-n', c, 'addr', 'add', `${ep.ip}/${ep.prefix}`, 'dev', 'eth0']);
      sh('ip', ['-n', c, 'route', 'add', 'default', 'via', GW]);
    }
    for (const h of HOSTS) await waitFor(`${h} to learn the others from etcd`, () => converged(h, HOSTS));
  }, slow(300_000));
  afterAll(() => {
    for (const h of HOSTS) if (logs[h]) console.log(`--- agent ${h}\n${logs[h].split('\n').slice(-15).join('\n')}`);
  });

  afterAll(async () => {
    for (const h of HOSTS) await killAgent(h, 'SIGKILL');
    await etcd.stop();
    cleanup();
  }, slow(180_000));

  it('gives each host its own block and each container a unique address of the flat subnet', () => {
    const show = JSON.parse(ok(['network', 'show', NET, '--json', ...etcdArgs()])) as { blocks: Record<string, string>; endpoints: Array<{ ip: string; node: string }> };
    const owners = Object.values(show.blocks).sort();
    expect(owners).toEqual(['h1', 'h2', 'h3']);
    expect(new Set(Object.values(ip)).size).toBe(3);
    for (const h of HOSTS) {
      const [block] = Object.entries(show.blocks).find(([, n]) => n === h)!;
      const base = block.split('/')[0].split('.').map(Number);
      const a = ip[h].split('.').map(Number);
      expect(a.slice(0, 3)).toEqual(base.slice(0, 3));
      expect(a[3] - base[3]).toBeLessThan(64);
    }
  });

  it('every pair pings, ARP answered by the datapath, nothing flooded', async () => {
    for (const a of HOSTS) for (const b of HOSTS) if (a !== b) sh('ip', ['-n', ctr[a], 'neigh', 'flush', 'all']);
    for (const a of HOSTS) {
      for (const b of HOSTS) {
        if (a === b) continue;
        const r = inNs(ctr[a], 'ping', ['-c', '2', '-i', '0.1', '-W', '1', ip[b]]);
        expect(r.status, `${a} -> ${b}: ${r.stdout}`).toBe(0);
      }
    }
    for (const h of HOSTS) {
      const port = stats(h).find((i) => i.iface === `p${h}`)!;
      expect(port.flooded, `flooded on ${h}'s container port`).toBe(0);
      expect(port.arpReplied, `ARP answered on ${h}`).toBeGreaterThanOrEqual(2);
      // the container's neighbour entries hold the right MACs: the datapath's answers
      const neigh = sh('ip', ['-n', ctr[h], 'neigh', 'show']);
      for (const o of HOSTS) if (o !== h) expect(neigh).toContain(`${ip[o]} dev eth0 lladdr ${mac[o]}`);
    }
  });

  it('answers ARP for the distributed gateway on every host with the same MAC', () => {
    for (const h of HOSTS) {
      sh('ip', ['-n', ctr[h], 'neigh', 'flush', 'all']);
      expect(inNs(ctr[h], 'ping', ['-c', '1', '-W', '1', GW]).status).toBe(0);
      expect(sh('ip', ['-n', ctr[h], 'neigh', 'show', GW])).toContain('02:78:6e:00:10:92');
      const up = stats(h).find((i) => i.iface === 'up0');
      expect(up?.flooded ?? 0).toBe(0);
    }
  });

  it('every pair talks TCP', () => {
    const peer = `${ROOT}test/helpers/peer.mjs`;
    for (const b of HOSTS) {
      const server = spawn('ip', ['netns', 'exec', ctr[b], process.execPath, peer, 'tcp-server', '7070'], { stdio: 'ignore' });
      try {
        sh('sleep', ['0.3']);
        for (const a of HOSTS) {
          if (a === b) continue;
          const r = inNs(ctr[a], process.execPath, [peer, 'tcp-client', ip[b], '7070']);
          expect(r.stdout.trim(), `${a} -> ${b}`).toBe(`from ${ip[a]}:${r.stdout.trim().split(':').pop()}`);
        }
      } finally {
        server.kill('SIGKILL');
      }
    }
    for (const h of HOSTS) expect(stats(h).find((i) => i.iface === `p${h}`)!.flooded).toBe(0);
  });

  it('agent kill -9 and restart: traffic never stops, stale entries go, missing ones come back', async () => {
    const traffic = pingRun(ctr.h1, ip.h2, 250); // ~5 s
    await sleep(300);
    // the maps drift behind the agent's back (it watches etcd, not the maps): a stale remote MAC, and h3's container forgotten
    ok(['--netns', host.h2, 'fdb', 'add', '02:de:ad:00:00:01', '--bridge', BR, '--remote', UNDERLAY.h3]);
    ok(['--netns', host.h2, 'fdb', 'del', mac.h3, '--bridge', BR]);
    await killAgent('h2', 'SIGKILL');
    await sleep(300);
    startAgent('h2'); // back within the TTL, so the others never drop h2
    const t = await waitFor('h2 to reconcile', () => converged('h2', HOSTS));
    expect(logs.h1, 'h2 must be back before its old lease expires').not.toContain('"host left"');
    const [sent, got] = await traffic;
    expect(got, `h1 -> h2 during the restart (${t} ms to reconcile)`).toBe(sent);
    expect(remoteMacs('h2')).not.toContain(`02:de:ad:00:00:01@${UNDERLAY.h3}`);
    for (const h of HOSTS) expect(converged(h, HOSTS), h).toBe(true);
    await waitFor('h2\'s "joined" log line', () => logs.h2.includes('"msg":"joined"'), slow(5000)); // stdout may trail the maps
  });

  it('etcd down and back mid-traffic: forwarding goes on, agents reconcile on return', async () => {
    const traffic = pingRun(ctr.h1, ip.h3, 300); // ~6 s
    await sleep(300);
    await etcd.kill();
    await sleep(3000); // the watch resumes from its last revision, the leases are kept alive again
    for (const h of HOSTS) expect(converged(h, HOSTS), `${h} kept its maps while etcd was down`).toBe(true);
    await etcd.start();
    const [sent, got] = await traffic;
    expect(got).toBe(sent);
    // a change made after the return reaches everyone: h3's container gets a second address
    const c2 = JSON.parse(ok(['--netns', host.h3, 'endpoint', 'add', 'ph3', '--network', NET, '--mac', mac.h3, '--node', 'h3', '--json', ...etcdArgs()])) as { ip: string };
    await waitFor('h1 to answer ARP for the new address', () => {
      const r = xdpnet(['network', 'show', NET, '--json', ...etcdArgs()]);
      return r.code === 0 && r.stdout.includes(c2.ip);
    });
    for (const h of HOSTS) await waitFor(`${h} to reconnect`, () => converged(h, HOSTS));
    expect(logs.h1).toMatch(/etcd session ended, retrying|etcd unreachable/);
  });

  it('a host whose agent dies disappears from the others: etcd within TTL + 1.5 s, each agent\'s maps 1 s after', async () => {
    const killed = Date.now();
    await killAgent('h3', 'SIGKILL'); // no revoke: the lease must expire
    await waitFor('h1 and h2 to drop h3', () => converged('h1', ['h1', 'h2']) && converged('h2', ['h1', 'h2']), (TTL + 6) * 1000);
    // when each agent heard of it and when it wrote its maps, by its own log (polling through the CLI would add its own delay)
    const at = (l: string) => Date.parse((JSON.parse(l) as { ts: string }).ts) - killed;
    for (const h of ['h1', 'h2'] as const) {
      const dropped = (l: string) => /"vtepsRemoved":\[[^\]]*"192\.168\.77\.3"/.test(l);
      await waitFor(`${h}'s log line`, () => logs[h].split('\n').some(dropped), slow(5000)); // stdout may trail the maps
      const lines = logs[h].split('\n');
      const leftLine = lines.filter((l) => l.includes('"msg":"host left"') && l.includes('"node":"h3"')).pop();
      expect(leftLine, `${h} logged "host left" for h3`).toBeDefined();
      const left = at(leftLine!);
      const wrote = at(lines.filter(dropped).pop()!);
      // etcd's part: the last keepalive precedes the kill, the lease lasts TTL from it, expiry is checked every 500 ms
      expect(left, `${h} heard h3 left ${left} ms after the kill; etcd said:\n${etcd.log.slice(-2000)}`).toBeLessThanOrEqual(TTL * 1000 + 1500);
      // ours: the watch event to the maps written (~0.1 s here)
      expect(wrote - left, `${h} wrote its maps ${wrote - left} ms after hearing h3 left`).toBeLessThanOrEqual(1000);
    }
    expect(inNs(ctr.h1, 'ping', ['-c', '1', '-W', '1', ip.h2]).status).toBe(0);
  });
});
