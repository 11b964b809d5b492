// The plugin run directly, as a runtime runs it, inside a namespace made here
// ("the host"): ADD's result and datapath state, CHECK naming what is missing,
// DEL twice, a container whose netns vanished without DEL (reaped by the daemon
// and by `detach IFINDEX`), and 20 concurrent ADDs then DELs.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODES } from '../../src/cni/spec.js';
import { expectCniError, expectValidResult, PLUGIN, runPlugin, type PluginRun } from '../helpers/cni.js';
import { cleanup, CLI, netns, sh, sleep, slow, veth, xdpnet } from '../helpers/sys.js';

const hasIpam = existsSync('/usr/lib/cni/host-local');
let host = '';
let dir = '';
const containers: string[] = [];
const NET = `xc${process.pid % 100000}`;

const conf = (o: object = {}) => JSON.stringify({
  cniVersion: '1.0.0', name: NET, type: 'xdpnet', bridge: NET, isGateway: true, ipMasq: true, hook: 'tc',
  ipam: { type: 'host-local', ranges: [[{ subnet: '10.91.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: `${dir}/ipam` },
  runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] }, ...o,
});

/** A container's netns: no xdpnet state of its own, so it is simply deleted afterwards. */
function container(): string {
  const ns = `xnt${process.pid}-k${containers.length}`;
  sh('ip', ['netns', 'add', ns]);
  containers.push(ns);
  return ns;
}

const env = (cmd: string, ns: string, id = ns) => ({ CNI_COMMAND: cmd, CNI_CONTAINERID: id, CNI_NETNS: `/run/netns/${ns}`, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' });
const plugin = (cmd: string, ns: string, stdin = conf(), id = ns): PluginRun => runPlugin(env(cmd, ns, id), stdin, ['nsenter', `--net=/run/netns/${host}`]);
const state = () => ({
  ports: JSON.parse(xdpnet(['--netns', host, 'bridge', 'show', '--json']).stdout || '[]').flatMap((b: { ports: Array<{ host: boolean; iface: string }> }) => b.ports.filter((p) => !p.host)),
  allocations: existsSync(`${dir}/ipam/${NET}`) ? readdirSync(`${dir}/ipam/${NET}`).filter((f) => /^\d/.test(f)) : [],
  pins: existsSync(`/sys/fs/bpf/xdpnet/ns-${host}`),
});

describe.skipIf(!hasIpam)('CNI plugin, run directly', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'xncni-'));
    host = netns('chost');
    const out = netns('cout');
    veth(host, 'up0', out, 'eth0', '10.214.0.1/24', '10.214.0.2/24');
    sh('ip', ['-n', host, 'route', 'add', 'default', 'via', '10.214.0.2']);
  });
  afterAll(() => {
    for (const c of containers) spawnSync('ip', ['netns', 'del', c]);
    cleanup(); // with "the host" namespace go the records of attachments whose DEL never came (the vanished netns)
    rmSync(dir, { recursive: true, force: true });
  }, slow(180_000));

  it('ADD wires the container; CHECK passes, then names what is missing; DEL twice succeeds', () => {
    const c = container();
    const add = plugin('ADD', c);
    expect(add.code, add.stdout + add.stderr).toBe(0);
    expectValidResult(add.json, '1.0.0');
    const ifs = add.json.interfaces as Array<{ name: string; mac: string }>;
    expect(ifs.map((i) => i.name)).toEqual([NET, expect.stringMatching(/^xnc/), 'eth0']);
    expect(sh('ip', ['-n', c, '-j', '-4', 'route', 'show', 'default'])).toContain('"gateway":"10.91.0.1"');
    // the MACs the result names are the interfaces' own (the plugin chooses them), and GRO is on in the container
    expect(JSON.parse(sh('ip', ['-n', host, '-j', 'link', 'show', 'dev', ifs[1].name]))[0].address).toBe(ifs[1].mac);
    expect(JSON.parse(sh('ip', ['-n', c, '-j', 'link', 'show', 'dev', 'eth0']))[0].address).toBe(ifs[2].mac);
    expect(sh('ip', ['netns', 'exec', c, 'ethtool', '-k', 'eth0'])).toMatch(/^generic-receive-offload: on$/m);
    expect(plugin('CHECK', c).code).toBe(0);
    // CHECK names the part that went missing
    const mac = ifs[2].mac;
    expect(xdpnet(['--netns', host, 'fdb', 'del', mac, '--bridge', NET]).code).toBe(0);
    expectCniError(plugin('CHECK', c), CODES.CHECK_FAILED, new RegExp(`static FDB entry for ${mac}`));
    sh('ip', ['-n', c, 'route', 'del', 'default']);
    expectCniError(plugin('CHECK', c), CODES.CHECK_FAILED, /FDB entry|default route/);
    expect(plugin('DEL', c).code).toBe(0);
    const again = plugin('DEL', c);
    expect(again.code, again.stdout).toBe(0);
    expect(again.stdout).toBe('');
    expectCniError(plugin('CHECK', c), CODES.UNKNOWN_CONTAINER, /has no eth0 on network/);
    expect(state()).toEqual({ ports: [], allocations: [], pins: false });
  });

  it('a runtime namespace made again under an old name starts from its own state, not the old one\'s', () => {
    // The runtime's namespace holds state (a bridge), is deleted, and one of the same name is made:
    // the state left on bpffs was the old namespace's, and the plugin must not build on it.
    const rt = netns('crenew');
    expect(xdpnet(['--netns', rt, 'bridge', 'add', 'old0']).code).toBe(0);
    sh('ip', ['netns', 'del', rt]);
    sh('ip', ['netns', 'add', rt]);
    sh('ip', ['-n', rt, 'link', 'set', 'lo', 'up']);
    const c = container();
    const cfg = conf({ ipMasq: false, runtimeConfig: {} });
    const add = runPlugin(env('ADD', c), cfg, ['nsenter', `--net=/run/netns/${rt}`]);
    try {
      expect(add.code, add.stdout + add.stderr).toBe(0);
      const show = xdpnet(['--netns', rt, 'bridge', 'show', '--json']);
      expect(show.stderr).not.toMatch(/stale/);
      expect((JSON.parse(show.stdout) as Array<{ name: string }>).map((b) => b.name)).toEqual([NET]);
    } finally {
      expect(runPlugin(env('DEL', c), cfg, ['nsenter', `--net=/run/netns/${rt}`]).code).toBe(0);
      rmSync(`/run/xdpnet/cni/ns-${rt}`, { recursive: true, force: true });
    }
  });

  it('locks each container\'s port to its MAC and address (portLock, on by default); portLock false leaves it open', () => {
    const [a, b] = [container(), container()];
    const open = conf({ portLock: false, runtimeConfig: {} }); // A has the port mapping
    const addA = plugin('ADD', a);
    const addB = plugin('ADD', b, open);
    expect([addA.code, addB.code], addA.stderr + addB.stderr).toEqual([0, 0]);
    const ifs = (r: PluginRun) => r.json.interfaces as Array<{ name: string; mac: string }>;
    const ip = (r: PluginRun) => (r.json.ips as Array<{ address: string }>)[0].address.split('/')[0];
    const lock = (r: PluginRun) => (state().ports as Array<{ iface: string; lock: unknown }>).find((p) => p.iface === ifs(r)[1].name)?.lock;
    expect(lock(addA)).toEqual({ mac: ifs(addA)[2].mac, ips: [ip(addA)] });
    expect(lock(addB)).toBeNull();
    expect(plugin('CHECK', a).code).toBe(0);
    expect(plugin('CHECK', b, open).code).toBe(0);
    // A pings the gateway from B's address (the gateway's MAC given, so no ARP first): dropped at A's port, counted
    sh('ip', ['-n', a, 'addr', 'add', `${ip(addB)}/32`, 'dev', 'eth0']);
    sh('ip', ['-n', a, 'neigh', 'replace', '10.91.0.1', 'lladdr', ifs(addA)[0].mac, 'dev', 'eth0', 'nud', 'permanent']);
    expect(spawnSync('ip', ['netns', 'exec', a, 'ping', '-c', '2', '-i', '0.1', '-W', '1', '-I', ip(addB), '10.91.0.1']).status).not.toBe(0);
    const stats = JSON.parse(xdpnet(['--netns', host, 'stats', '--json']).stdout) as { interfaces: Array<{ iface: string; drops: Record<string, number> }> };
    // (port-lock-proto counts the container's IPv6 autoconfiguration: a lock passes IPv4 and ARP only)
    expect(stats.interfaces.find((i) => i.iface === ifs(addA)[1].name)?.drops['port-lock-ip']).toBe(2);
    expect(spawnSync('ip', ['netns', 'exec', a, 'ping', '-c', '1', '-W', '2', '10.91.0.1']).status).toBe(0); // its own address still works
    expect([plugin('DEL', a).code, plugin('DEL', b, open).code]).toEqual([0, 0]);
    expect(state()).toEqual({ ports: [], allocations: [], pins: false });
  });

  it('an XDP port\'s container end gets GRO on and tx checksum offload off', () => {
    const c = container();
    const xdp = conf({ hook: 'xdp', runtimeConfig: { portMappings: [] } });
    const add = plugin('ADD', c, xdp);
    expect(add.code, add.stdout + add.stderr).toBe(0);
    const k = sh('ip', ['netns', 'exec', c, 'ethtool', '-k', 'eth0']);
    expect(k).toMatch(/^generic-receive-offload: on$/m);
    expect(k).toMatch(/^tx-checksumming: off$/m);
    expect(plugin('DEL', c, xdp).code).toBe(0);
  });

  it('a second ADD of the same attachment and a taken host port fail without changing anything', () => {
    const a = container();
    const b = container();
    expect(plugin('ADD', a).code).toBe(0);
    const before = state();
    expectCniError(plugin('ADD', a), CODES.DATAPLANE, /already has eth0/);
    expectCniError(plugin('ADD', b), CODES.DATAPLANE, /tcp port 8080 is already mapped/);
    expect(state()).toEqual(before); // b's veth, port and address were rolled back
    // IPAM runs while the veth and the port are made: when it then fails, they go again
    const full = conf({ ipam: { type: 'host-local', ranges: [[{ subnet: '10.91.0.0/24', rangeStart: '10.91.0.200', rangeEnd: '10.91.0.200' }]], dataDir: `${dir}/ipam` },
      runtimeConfig: {} });
    expect(plugin('ADD', b, full).code).toBe(0);
    const c = container();
    const veths = () => sh('ip', ['-n', host, '-br', 'link', 'show', 'type', 'veth']).split('\n').filter((l) => l.startsWith('xnc')).length;
    const withB = { ...state(), veths: veths() };
    expectCniError(plugin('ADD', c, full), 999, /no IP addresses available/);
    expect({ ...state(), veths: veths() }).toEqual(withB);
    expect(sh('ip', ['-n', c, '-br', 'link'])).not.toContain('eth0');
    expect(plugin('DEL', b, full).code).toBe(0);
    expect(plugin('DEL', c, full).code).toBe(0);
    expect(plugin('DEL', a).code).toBe(0);
    expect(plugin('DEL', b).code).toBe(0);
  });

  it('a port whose netns vanished without DEL is reaped by `detach IFINDEX` and by the daemon', () => {
    const gone = [container(), container()];
    const ifindex = gone.map((c) => {
      expect(plugin('ADD', c, conf({ runtimeConfig: {} })).code).toBe(0);
      return (JSON.parse(sh('ip', ['-n', host, '-j', 'link', 'show', 'type', 'veth'])) as Array<{ ifname: string; ifindex: number }>)
        .filter((l) => l.ifname.startsWith('xnc')).map((l) => l.ifindex);
    }).flat();
    for (const c of gone) sh('ip', ['netns', 'del', c]); // the veth pairs go with them
    expect(state().ports.map((p: { iface: string | null }) => p.iface)).toEqual([null, null]);
    const one = xdpnet(['--netns', host, 'detach', String(ifindex[0])]);
    expect(one.stdout + one.stderr).toMatch(new RegExp(`detached ifindex ${ifindex[0]} \\(interface gone\\)`));
    expect(state().ports).toHaveLength(1);
    const d = spawn(process.execPath, [CLI, '--netns', host, 'daemon', '--interval', '1'], { stdio: 'ignore' });
    for (let i = 0; i < 50 && state().ports.length; i++) sleep(100);
    d.kill();
    expect(state().ports).toEqual([]);
    for (const c of gone) expect(spawnSync('nsenter', [`--net=/run/netns/${host}`, process.execPath, PLUGIN], { input: conf(), env: { ...process.env, ...env('DEL', c), CNI_NETNS: '' } }).status).toBe(0);
    expect(state()).toEqual({ ports: [], allocations: [], pins: false });
  });

  it('20 concurrent ADDs, then 20 concurrent DELs, all succeed and leave consistent maps', async () => {
    const cs = Array.from({ length: 20 }, () => container());
    const call = (cmd: string, c: string) => new Promise<PluginRun>((resolve) => {
      const p = spawn('nsenter', [`--net=/run/netns/${host}`, process.execPath, PLUGIN], { env: { ...process.env, ...env(cmd, c) } });
      let out = '';
      p.stdout.on('data', (d) => { out += d; });
      p.stdin.end(conf({ runtimeConfig: {} }));
      p.on('close', (code) => resolve({ code: code ?? -1, stdout: out, stderr: '', json: out ? JSON.parse(out) : {} }));
    });
    const adds = await Promise.all(cs.map((c) => call('ADD', c)));
    for (const a of adds) expect(a.code, a.stdout).toBe(0);
    const s = state();
    expect(s.ports).toHaveLength(20);
    expect(s.allocations).toHaveLength(20);
    const fdb = JSON.parse(xdpnet(['--netns', host, 'fdb', 'show', '--bridge', NET, '--json']).stdout) as Array<{ mac: string; port: string; type: string }>;
    for (const a of adds) {
      const i = (a.json.interfaces as Array<{ name: string; mac: string }>);
      expect(fdb).toContainEqual(expect.objectContaining({ mac: i[2].mac, port: i[1].name, type: 'static' }));
    }
    // every container reaches the next one through the bridge
    const ips = adds.map((a) => (a.json.ips as Array<{ address: string }>)[0].address.split('/')[0]);
    for (const [i, c] of cs.entries()) expect(spawnSync('ip', ['netns', 'exec', c, 'ping', '-c', '1', '-W', '2', ips[(i + 1) % 20]]).status, `${c}`).toBe(0);
    const dels = await Promise.all(cs.map((c) => call('DEL', c)));
    for (const d of dels) expect(d.code, d.stdout).toBe(0);
    expect(state()).toEqual({ ports: [], allocations: [], pins: false });
  }, slow(300_000));
});
