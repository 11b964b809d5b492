// The CNI plugin under real podman (Debian's 4.3, CNI backend), side by side
// with the reference plugins (containernetworking's bridge + portmap): the same
// containers, the same checks, the same answers. Podman runs inside a network
// namespace made here ("the host"), whose uplink leads to a server namespace;
// nothing reaches the real host's network.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { podman, podmanMissing, RUN_FLAGS, IMAGE, type Podman } from '../helpers/podman.js';
import { cleanup, netns, ROOT, sh, slow, veth, xdpnet } from '../helpers/sys.js';

const missing = podmanMissing();
const HOST_UP = '10.213.0.1';
const SERVER = '10.213.0.2';
const tag = String(process.pid % 100000);
const XNET = `xn${tag}`; // network and bridge name (<= 15 characters)
const REF = `rb${tag}`;

let host = '';
let srv = '';
let pod: Podman;
let server: ChildProcess | undefined;

function inContainer(c: string, cmd: string): string {
  return pod.run(['exec', c, 'sh', '-c', cmd], slow(30_000));
}

const pings = (c: string, dst: string) => {
  try {
    // up to 3 echoes: the first may go to ARP on a path no packet took yet (both plugins alike)
    return /[1-9] packets received/.test(inContainer(c, `ping -c 1 -W 2 ${dst} || ping -c 2 -W 2 ${dst}`));
  } catch {
    return false;
  }
};

/** From the server namespace, as an outside client: the page behind HOST_UP:8080. */
function fetchOutside(port: number): string {
  return execFileSync('ip', ['netns', 'exec', srv, process.execPath, '-e',
    `fetch('http://${HOST_UP}:${port}/', { signal: AbortSignal.timeout(5000) }).then(r => r.text()).then(t => process.stdout.write(t), e => { console.error(String(e)); process.exit(1); })`],
  { encoding: 'utf8' });
}

/** Two containers on a network: what they can reach, what the outside sees of them. */
function scenario(net: string, port: number) {
  pod.run(['run', '-d', '--name', `${net}-web`, '--network', net, ...RUN_FLAGS, '-p', `${port}:80`, IMAGE, 'httpd', '-f', '-p', '80', '-h', '/www']);
  pod.run(['run', '-d', '--name', `${net}-cli`, '--network', net, ...RUN_FLAGS, IMAGE, 'sleep', '600']);
  const web = pod.ip(`${net}-web`, net);
  const cli = pod.ip(`${net}-cli`, net);
  return {
    clientPingsWeb: pings(`${net}-cli`, web),
    webPingsClient: pings(`${net}-web`, cli),
    pingsServer: pings(`${net}-cli`, SERVER),
    // the server answers "from ADDR:PORT": masquerade must show it the host's uplink address
    serverSees: inContainer(`${net}-cli`, `echo | nc -w 3 ${SERVER} 9000`).split('\n')[0].replace(/:\d+$/, ''),
    // busybox wget crashes in a static build (NSS): a plain HTTP/1.0 request through nc, the body after the headers
    pageInside: inContainer(`${net}-cli`, `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${web} 80`).split('\r\n\r\n')[1],
    pageOutside: fetchOutside(port),
  };
}

const EXPECTED = {
  clientPingsWeb: true, webPingsClient: true, pingsServer: true, serverSees: `from ${HOST_UP}`,
  pageInside: 'hello from a container\n', pageOutside: 'hello from a container\n',
};

/** Everything xdpnet could leave behind in the host namespace, on bpffs and in IPAM. */
function leftovers() {
  const links = (JSON.parse(sh('ip', ['-n', host, '-j', 'link', 'show'])) as Array<{ ifname: string }>).map((l) => l.ifname).filter((n) => n !== 'lo' && n !== 'up0');
  const ipam = `${pod.dir}/ipam/${XNET}`;
  const status = xdpnet(['--netns', host, 'status', '--json']);
  return {
    links,
    attached: JSON.parse(status.stdout || '[]'),
    fdb: JSON.parse(xdpnet(['--netns', host, 'fdb', 'show', '--all', '--json']).stdout || '[]'),
    nat: JSON.parse(xdpnet(['--netns', host, 'nat', 'show', '--json']).stdout || '{}'),
    pins: existsSync(`/sys/fs/bpf/xdpnet/ns-${host}`),
    allocations: existsSync(ipam) ? readdirSync(ipam).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [],
  };
}

const CLEAN = { links: [], attached: [], fdb: [], nat: { snat: [], portmaps: [], links: [], conntrack: null }, pins: false, allocations: [] };

describe.skipIf(missing)('CNI plugin under podman', () => {
  beforeAll(() => {
    host = netns('phost');
    srv = netns('psrv');
    veth(host, 'up0', srv, 'eth0', `${HOST_UP}/24`, `${SERVER}/24`);
    sh('ip', ['-n', host, 'route', 'add', 'default', 'via', SERVER]);
    sh('ip', ['netns', 'exec', srv, 'ethtool', '-K', 'eth0', 'tx', 'off']); // the far end of an XDP uplink (NAT's)
    server = spawn('ip', ['netns', 'exec', srv, process.execPath, `${ROOT}test/helpers/peer.mjs`, 'tcp-server', '9000'], { stdio: 'ignore' });
    pod = podman(host);
    pod.conflist(XNET, [{
      type: 'xdpnet', bridge: XNET, isGateway: true, ipMasq: true, mtu: 1500, hook: 'tc',
      ipam: { type: 'host-local', ranges: [[{ subnet: '10.89.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: `${pod.dir}/ipam` },
      capabilities: { portMappings: true },
    }]);
    pod.conflist(REF, [
      { type: 'bridge', bridge: REF, isGateway: true, ipMasq: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: '10.90.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: `${pod.dir}/ipam` } },
      { type: 'portmap', capabilities: { portMappings: true } },
    ]);
  }, slow(120_000));

  afterAll(() => {
    server?.kill();
    pod?.close();
    cleanup();
  }, slow(180_000));

  it('two containers reach each other, an outside server (masqueraded) and are reached through -p, like bridge+portmap', () => {
    const ours = scenario(XNET, 8080);
    const ref = scenario(REF, 8081);
    expect(ours).toEqual(EXPECTED);
    expect(ref).toEqual(EXPECTED);
    // the datapath is xdpnet's: the ports are attached, the FDB has the containers' MACs
    const fdb = JSON.parse(xdpnet(['--netns', host, 'fdb', 'show', '--bridge', XNET, '--json']).stdout) as Array<{ mac: string; type: string }>;
    const macs = [`${XNET}-web`, `${XNET}-cli`].map((c) => pod.run(['inspect', '-f', `{{(index .NetworkSettings.Networks "${XNET}").MacAddress}}`, c]).trim());
    for (const m of macs) expect(fdb).toContainEqual(expect.objectContaining({ mac: m, type: 'static' }));
  }, slow(240_000));

  it('podman rm -f leaves no port, FDB entry, mapping, veth, pin or IP allocation', () => {
    pod.run(['rm', '-f', '-t', '0', `${XNET}-web`, `${XNET}-cli`, `${REF}-web`, `${REF}-cli`]);
    expect(leftovers()).toEqual({ ...CLEAN, links: [REF] }); // the reference plugin keeps its Linux bridge
    sh('ip', ['-n', host, 'link', 'del', REF]);
  }, slow(120_000));

  it('20 containers started in parallel all get working networking, and go without a trace', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `${XNET}-p${i}`);
    const started = await Promise.all(names.map((n) => pod.start(['run', '-d', '--name', n, '--network', XNET, ...RUN_FLAGS, IMAGE, 'sleep', '600'])));
    for (const [i, s] of started.entries()) expect(s.code, `${names[i]}: ${s.out}`).toBe(0);
    const ips = names.map((n) => pod.ip(n, XNET));
    expect(new Set(ips).size).toBe(20);
    for (const [i, n] of names.entries()) {
      expect(pings(n, SERVER), `${n} -> server`).toBe(true);
      expect(pings(n, ips[(i + 1) % 20]), `${n} -> ${names[(i + 1) % 20]}`).toBe(true);
    }
    const ports = JSON.parse(xdpnet(['--netns', host, 'bridge', 'show', '--json']).stdout)[0].ports.filter((p: { host: boolean }) => !p.host);
    expect(ports).toHaveLength(20);
    const removed = await Promise.all(names.map((n) => pod.start(['rm', '-f', '-t', '0', n])));
    for (const r of removed) expect(r.code, r.out).toBe(0);
    expect(leftovers()).toEqual(CLEAN);
  }, slow(600_000));
});
