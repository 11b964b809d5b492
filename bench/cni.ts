// CNI ADD wall time, xdpnet's plugin beside the reference bridge + portmap
// plugins (Debian's containernetworking-plugins), on the same machine in one
// run: N containers each, ADDs one after another as a runtime starting
// containers one by one does. Start-to-ping: from the start of the ADD to the
// first echo reply the container gets from its gateway. Everything happens in
// namespaces made here ("the host", one per container); all is removed after.
//   node dist/bench/cni.js [--containers 50]  → bench/results/cni.md
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, release, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { requirePrivileges } from '../src/dataplane/host.js';

const PLUGIN = fileURLToPath(new URL('../xdpnet-cni.js', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const RESULTS = fileURLToPath(new URL('../../bench/results/', import.meta.url));
const CNI_PATH = '/usr/lib/cni';

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];

interface Plugin { name: string; add(ns: string, id: string): object; del(ns: string, id: string): void }

function exec(host: string, bin: string, cmd: string, ns: string, id: string, conf: object): string {
  const r = spawnSync('nsenter', [`--net=/run/netns/${host}`, bin], {
    input: JSON.stringify(conf), encoding: 'utf8',
    env: { ...process.env, CNI_COMMAND: cmd, CNI_CONTAINERID: id, CNI_NETNS: `/run/netns/${ns}`, CNI_IFNAME: 'eth0', CNI_PATH },
  });
  if (r.status !== 0) throw new Error(`${bin} ${cmd}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

const ipam = (subnet: string, dir: string) => ({ type: 'host-local', ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: dir });
const mapping = (i: number) => ({ portMappings: [{ hostPort: 20000 + i, containerPort: 80, protocol: 'tcp' }] });

function xdpnet(host: string, dir: string): Plugin {
  const conf = (i: number) => ({ cniVersion: '1.0.0', name: 'bx', type: 'xdpnet', bridge: 'bx0', isGateway: true, ipMasq: true, hook: 'tc',
    ipam: ipam('10.95.0.0/24', dir), runtimeConfig: mapping(i) });
  let n = 0;
  const idx = new Map<string, number>();
  return {
    name: 'xdpnet',
    add: (ns, id) => { idx.set(id, n); return JSON.parse(exec(host, PLUGIN, 'ADD', ns, id, conf(n++))); },
    del: (ns, id) => void exec(host, PLUGIN, 'DEL', ns, id, conf(idx.get(id)!)),
  };
}

/** The reference chain as libcni runs it: bridge, then portmap with bridge's result as prevResult. */
function reference(host: string, dir: string): Plugin {
  const bridge = { cniVersion: '1.0.0', name: 'br', type: 'bridge', bridge: 'br0', isGateway: true, ipMasq: true, ipam: ipam('10.96.0.0/24', dir) };
  const portmap = (i: number, prev: object) => ({ cniVersion: '1.0.0', name: 'br', type: 'portmap', capabilities: { portMappings: true }, runtimeConfig: mapping(i), prevResult: prev });
  let n = 0;
  const state = new Map<string, { i: number; prev: object }>();
  return {
    name: 'bridge+portmap',
    add: (ns, id) => {
      const prev = JSON.parse(exec(host, `${CNI_PATH}/bridge`, 'ADD', ns, id, bridge));
      const i = n++;
      state.set(id, { i, prev });
      return JSON.parse(exec(host, `${CNI_PATH}/portmap`, 'ADD', ns, id, portmap(i, prev)));
    },
    del: (ns, id) => {
      const s = state.get(id)!;
      exec(host, `${CNI_PATH}/portmap`, 'DEL', ns, id, portmap(s.i, s.prev));
      exec(host, `${CNI_PATH}/bridge`, 'DEL', ns, id, bridge);
    },
  };
}

interface Row { plugin: string; addP50: number; addP95: number; pingP50: number; pingP95: number; delP50: number }

/**
 * Both plugins, their ADDs interleaved (reference, xdpnet, reference, ...) so
 * that a shared machine's changing load weighs on both alike; then the DELs,
 * interleaved the same way.
 */
function measure(plugins: Plugin[], host: string, n: number): Row[] {
  const t = plugins.map(() => ({ add: [] as number[], ping: [] as number[], del: [] as number[], nss: [] as string[] }));
  try {
    for (let i = 0; i < n; i++) {
      plugins.forEach((p, k) => {
        const ns = `xnbc${process.pid}-${p.name === 'xdpnet' ? 'x' : 'r'}${i}`;
        sh('ip', ['netns', 'add', ns]);
        t[k].nss.push(ns);
        const t0 = performance.now();
        const r = p.add(ns, ns) as { ips: Array<{ gateway: string }> };
        t[k].add.push(performance.now() - t0);
        const gw = r.ips[0].gateway;
        while (spawnSync('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '1', '-i', '0.01', gw]).status !== 0) { /* until it answers */ }
        t[k].ping.push(performance.now() - t0);
      });
    }
    for (let i = 0; i < n; i++) {
      plugins.forEach((p, k) => {
        const t0 = performance.now();
        p.del(t[k].nss[i], t[k].nss[i]);
        t[k].del.push(performance.now() - t0);
      });
    }
  } finally {
    for (const { nss } of t) for (const ns of nss) spawnSync('ip', ['netns', 'del', ns]);
  }
  return plugins.map((p, k) => ({
    plugin: p.name, addP50: pct(t[k].add, 50), addP95: pct(t[k].add, 95), pingP50: pct(t[k].ping, 50), pingP95: pct(t[k].ping, 95), delP50: pct(t[k].del, 50),
  }));
}

function main(): void {
  const { values } = parseArgs({ options: { containers: { type: 'string', default: '50' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(`usage: node dist/bench/cni.js [--containers N]

CNI ADD wall time (p50, p95), start-to-ping and DEL of xdpnet's plugin beside
the reference bridge + portmap plugins, N containers each (default 50), one ADD
at a time, all inside namespaces made here. Writes bench/results/cni.md. Needs
root and Debian's containernetworking-plugins; takes about N x 2 s on a loaded
2-core machine.
`);
    return;
  }
  const n = Number(values.containers);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--containers wants a positive integer, not ${values.containers}`);
  requirePrivileges();
  const dir = mkdtempSync(join(tmpdir(), 'xnbench-cni-'));
  const host = `xnbc${process.pid}-host`;
  const out = `xnbc${process.pid}-out`;
  const rows: Row[] = [];
  let load0: number[] = [];
  let load1: number[] = [];
  try {
    for (const ns of [host, out]) sh('ip', ['netns', 'add', ns]);
    sh('ip', ['-n', host, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', out]);
    sh('ip', ['-n', host, 'addr', 'add', '10.215.0.1/24', 'dev', 'up0']);
    for (const [ns, dev] of [[host, 'up0'], [out, 'eth0'], [host, 'lo']]) sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    sh('ip', ['-n', host, 'route', 'add', 'default', 'via', '10.215.0.2']);
    load0 = loadavg();
    rows.push(...measure([reference(host, dir), xdpnet(host, dir)], host, n));
    load1 = loadavg();
  } finally {
    spawnSync(process.execPath, [CLI, '--netns', host, 'nat', 'flush']);
    spawnSync(process.execPath, [CLI, '--netns', host, 'detach', '--all']);
    spawnSync(process.execPath, [CLI, '--netns', host, 'bridge', 'del', 'bx0', '--force']);
    for (const ns of [host, out]) spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  }
  const ms = (x: number) => x.toFixed(0);
  const [ref, ours] = rows;
  const md = `# CNI ADD: xdpnet beside bridge + portmap

${new Date().toISOString()}, kernel ${release()}, ${cpus().length} CPUs (${cpus()[0]?.model}), ${n} containers each, one ADD at a time,
the two plugins' ADDs interleaved (\`node dist/bench/cni.js --containers ${n}\`). Load average (1 min)
${load0[0]?.toFixed(1)} at the start, ${load1[0]?.toFixed(1)} at the end: the machine is shared, so only the ratio in one run
means much. Each ADD maps one host port (bridge + portmap: the chain libcni runs; xdpnet: one
plugin), masquerade on. Start-to-ping: from the ADD's start to the first echo reply from the
gateway inside the container. Wall times in ms.

| plugin | ADD p50 | ADD p95 | start-to-ping p50 | start-to-ping p95 | DEL p50 |
|---|---:|---:|---:|---:|---:|
${rows.map((r) => `| ${r.plugin} | ${ms(r.addP50)} | ${ms(r.addP95)} | ${ms(r.pingP50)} | ${ms(r.pingP95)} | ${ms(r.delP50)} |`).join('\n')}

ADD p50 ratio xdpnet / reference: ${(ours.addP50 / ref.addP50).toFixed(2)}× (target: within 1.5×).
`;
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(join(RESULTS, 'cni.md'), md);
  process.stdout.write(md);
}

main();
