// The daemon's Prometheus metrics scraped by a real Prometheus server
// (Debian's, started here on 127.0.0.1 with a temporary config and data dir,
// stopped by PID): after known traffic its HTTP API returns the expected
// series and values, and promtool accepts the exposition.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IPPROTO, ipv4 } from '../helpers/packet.js';
import { cleanup, CLI, inNs, netns, nsMac, ok, ROOT, sh, slow, veth } from '../helpers/sys.js';

/** A port nobody listens on now (the kernel's pick). */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = slow(20_000)): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
const macHex = (m: string) => m.replace(/:/g, '');

describe('metrics: the daemon scraped by Prometheus', () => {
  let h: string;
  let c1: string;
  let c2: string;
  let tmp: string;
  const procs: ChildProcess[] = [];
  let metricsPort = 0;
  let promPort = 0;

  beforeAll(async () => {
    h = netns('meth');
    c1 = netns('metc');
    c2 = netns('metc');
    for (const n of [h, c1, c2]) sh('ip', ['netns', 'exec', n, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    veth(h, 'p1', c1, 'eth0');
    veth(h, 'p2', c2, 'eth0');
    for (const p of ['p1', 'p2']) sh('ip', ['netns', 'exec', h, 'ethtool', '-K', p, 'gro', 'on']); // inject.mjs's frames arrive through NAPI
    ok(['--netns', h, 'bridge', 'add', 'br0']);
    ok(['--netns', h, 'attach', 'p1', '--bridge', 'br0']);
    ok(['--netns', h, 'attach', 'p2', '--bridge', 'br0']);
    // Known traffic (silent otherwise: no IPv6, no addresses). From c1: three ARP requests tagged VLAN 20 on an
    // access port (dropped), two 60-byte frames to c2's MAC, which nobody has learned (flooded to p2). From c2: a
    // broadcast (flooded to p1; c2 learned on p2). From c1 again: three frames to c2, now known unicast: the first
    // decides and caches, the next two hit the bridge's cache. On one CPU: the cache is per CPU, and the receiving
    // veth's NAPI runs where the frame was sent.
    const src = macHex(nsMac(c1));
    const c2Mac = macHex(nsMac(c2));
    const denied = `ffffffffffff${src}8100001408060001080006040001${src}0a4d00010000000000000a4d0002`;
    const unicast = `${c2Mac}${src}0800${'00'.repeat(46)}`;
    const inject = (ns: string, ...frames: string[]) => {
      const r = inNs(ns, 'taskset', ['-c', '0', process.execPath, `${ROOT}test/helpers/inject.mjs`, 'eth0', ...frames]);
      expect(r.status, r.stderr).toBe(0);
    };
    inject(c1, denied, denied, denied, unicast, unicast);
    inject(c2, `ffffffffffff${c2Mac}0800${'00'.repeat(46)}`);
    inject(c1, unicast, unicast, unicast);
    // An uplink NAT alone runs on (XDP on up0, tc on in0): one TCP packet from outside with 10 bytes for its
    // 20-byte header, which NAT drops there (truncated-tcp). NAT counts drops only: no rx series for up0 or in0.
    const out = netns('meto');
    veth(h, 'up0', out, 'eth0', '10.76.0.1/24', '10.76.0.2/24');
    veth(h, 'in0', h, 'in0x', '172.31.0.1/16');
    ok(['--netns', h, 'nat', 'masquerade', 'add', '--src', '172.31.0.0/16', '--out', 'up0']);
    const ip = Buffer.concat([ipv4({ src: '10.76.0.2', dst: '10.76.0.1', proto: IPPROTO.TCP }, Buffer.alloc(10)), Buffer.alloc(16)]);
    inject(out, `${macHex(nsMac(h, 'up0'))}${macHex(nsMac(out))}0800${ip.toString('hex')}`);

    tmp = mkdtempSync(join(tmpdir(), 'xdpnet-prom-'));
    metricsPort = await freePort();
    const d = spawn(process.execPath, [CLI, '--netns', h, 'daemon', '--metrics-addr', `127.0.0.1:${metricsPort}`], { stdio: 'ignore' });
    procs.push(d);
    promPort = await freePort();
    writeFileSync(join(tmp, 'prometheus.yml'), [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      'scrape_configs:',
      '  - job_name: xdpnet',
      `    static_configs: [ { targets: ["127.0.0.1:${metricsPort}"] } ]`,
    ].join('\n'));
    const p = spawn('prometheus', [`--config.file=${join(tmp, 'prometheus.yml')}`, `--storage.tsdb.path=${join(tmp, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`], { stdio: 'ignore' });
    procs.push(p);
  });
  afterAll(async () => {
    // by PID, and waited for: the data dir is removed only once Prometheus has let go of it
    await Promise.all(procs.map((p) => new Promise<void>((resolve) => {
      if (!p.pid || p.exitCode !== null || p.signalCode !== null) return resolve();
      const kill = setTimeout(() => p.kill('SIGKILL'), 10_000);
      p.once('exit', () => { clearTimeout(kill); resolve(); });
      p.kill('SIGTERM');
    })));
    cleanup();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  /** One instant query: {labels: value} of each series. */
  async function query(q: string): Promise<Array<{ metric: Record<string, string>; value: number }> | undefined> {
    const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`);
    const body = await res.json() as { status: string; data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
    if (body.status !== 'success' || !body.data.result.length) return undefined;
    return body.data.result.map((x) => ({ metric: x.metric, value: Number(x.value[1]) }));
  }
  const inst = () => `ns-${h}`;

  it('Prometheus scrapes the daemon and holds the counters of the known traffic', async () => {
    const up = await until('the scrape target to be up', async () => (await query(`up{job="xdpnet"} == 1`)) ?? undefined, 30_000);
    expect(up).toHaveLength(1);
    const sel = `netns="${inst()}"`; // other instances on this host report too
    const drops = await until('drops', () => query(`xdpnet_drops_total{${sel}}`));
    expect(drops.map((d) => [d.metric.interface, d.metric.reason, d.value]).sort()).toEqual([['p1', 'vlan-ingress-denied', 3], ['up0', 'truncated-tcp', 1]]);
    const rx = await query(`xdpnet_interface_rx_packets_total{${sel}}`);
    expect(Object.fromEntries(rx!.map((x) => [`${x.metric.interface} ${x.metric.hook}`, x.value]))).toEqual({ 'p1 tc': 8, 'p2 tc': 1 });
    const rxBytes = await query(`xdpnet_interface_rx_bytes_total{${sel},interface="p1"}`);
    expect(rxBytes![0].value).toBe(3 * 42 + 5 * 60); // tc counts skb->len: the kernel holds the 4-byte tag outside it
    const byIf = async (m: string) => Object.fromEntries((await query(`${m}{${sel}}`))!.map((x) => [x.metric.interface, x.value]));
    expect(await byIf('xdpnet_interface_flooded_packets_total')).toEqual({ p1: 2, p2: 1 });
    expect(await byIf('xdpnet_interface_tx_packets_total')).toEqual({ p1: 1, p2: 5 });
    expect(await byIf('xdpnet_interface_dropped_packets_total')).toEqual({ p1: 3, p2: 0, up0: 1, in0: 0 });
    const natHooks = await query(`xdpnet_interface_dropped_packets_total{${sel},interface=~"up0|in0"}`);
    expect(Object.fromEntries(natHooks!.map((x) => [x.metric.interface, x.metric.hook]))).toEqual({ up0: 'xdp', in0: 'tc' });
    const fdb = await query(`xdpnet_fdb_entries{${sel},bridge="br0"}`);
    expect(Object.fromEntries(fdb!.map((x) => [x.metric.type, x.value]))).toEqual({ static: 0, learned: 2, local: 0 });
    // every frame with a key looked the bridge cache up: 3 dropped, 2 + 1 flooded and the first known unicast missed
    const cache = await query(`xdpnet_cache_lookups_total{${sel}}`);
    expect(Object.fromEntries(cache!.map((x) => [`${x.metric.cache} ${x.metric.result}`, x.value]))).toEqual({
      'bridge hit': 2, 'bridge miss': 7, 'vxlan-nexthop hit': 0, 'vxlan-nexthop miss': 0, 'nat hit': 0, 'nat miss': 0,
    });
    expect((await query(`xdpnet_bridge_ports{${sel},bridge="br0"}`))![0].value).toBe(2);
    expect(await query('process_resident_memory_bytes{job="xdpnet"} > 0')).toBeDefined(); // the daemon's own
  });

  it('stats shows the same cache lookups, as hit ratios and in --json', () => {
    expect(ok(['--netns', h, 'stats'])).toMatch(/\ncaches: bridge 22\.2% hits \(2 of 9\)\nconntrack: 0 of \d+ entries/); // NAT's table: the uplink's
    expect(JSON.parse(ok(['--netns', h, 'stats', '--json'])).caches).toEqual({
      bridge: { hits: 2, misses: 7 }, 'vxlan-nexthop': { hits: 0, misses: 0 }, nat: { hits: 0, misses: 0 },
    });
  });

  it('promtool accepts the exposition', async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(text).toMatch(/^# TYPE xdpnet_drops_total counter$/m);
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
