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
import { CLI, ROOT, cleanup, inNs, netns, nsMac, ok, sh, veth } from '../helpers/sys.js';

/** A port nobody listens on now (the kernel's pick). */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
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
    sh('ip', ['netns', 'exec', h, 'ethtool', '-K', 'p1', 'gro', 'on']); // inject.mjs's frames reach p1 through NAPI
    ok(['--netns', h, 'bridge', 'add', 'br0']);
    ok(['--netns', h, 'attach', 'p1', '--bridge', 'br0']);
    ok(['--netns', h, 'attach', 'p2', '--bridge', 'br0']);
    // Known traffic from c1 (silent otherwise: no IPv6, no addresses): three ARP requests tagged VLAN 20 on an
    // access port (dropped), two 60-byte frames to c2's MAC, which nobody has learned (flooded to p2).
    const src = macHex(nsMac(c1));
    const denied = `ffffffffffff${src}8100001408060001080006040001${src}0a4d00010000000000000a4d0002`;
    const unicast = `${macHex(nsMac(c2))}${src}0800${'00'.repeat(46)}`;
    const r = inNs(c1, process.execPath, [`${ROOT}test/helpers/inject.mjs`, 'eth0', denied, denied, denied, unicast, unicast]);
    expect(r.status, r.stderr).toBe(0);

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
  afterAll(() => {
    for (const p of procs) if (p.pid && p.exitCode === null) process.kill(p.pid, 'SIGTERM');
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
    expect(drops.map((d) => [d.metric.interface, d.metric.reason, d.value])).toEqual([['p1', 'vlan-ingress-denied', 3]]);
    const rx = await query(`xdpnet_interface_rx_packets_total{${sel}}`);
    expect(Object.fromEntries(rx!.map((x) => [`${x.metric.interface} ${x.metric.hook}`, x.value]))).toEqual({ 'p1 tc': 5, 'p2 tc': 0 });
    const rxBytes = await query(`xdpnet_interface_rx_bytes_total{${sel},interface="p1"}`);
    expect(rxBytes![0].value).toBe(3 * 42 + 2 * 60); // tc counts skb->len: the kernel holds the 4-byte tag outside it
    expect((await query(`xdpnet_interface_flooded_packets_total{${sel},interface="p1"}`))![0].value).toBe(2);
    expect((await query(`xdpnet_interface_tx_packets_total{${sel},interface="p2"}`))![0].value).toBe(2);
    expect((await query(`xdpnet_interface_dropped_packets_total{${sel},interface="p1"}`))![0].value).toBe(3);
    const fdb = await query(`xdpnet_fdb_entries{${sel},bridge="br0"}`);
    expect(Object.fromEntries(fdb!.map((x) => [x.metric.type, x.value]))).toEqual({ static: 0, learned: 1, local: 0 });
    expect((await query(`xdpnet_bridge_ports{${sel},bridge="br0"}`))![0].value).toBe(2);
    expect(await query('process_resident_memory_bytes{job="xdpnet"} > 0')).toBeDefined(); // the daemon's own
  });

  it('promtool accepts the exposition', async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(text).toMatch(/^# TYPE xdpnet_drops_total counter$/m);
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
