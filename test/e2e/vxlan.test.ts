// The VXLAN overlay across two simulated hosts joined by an underlay veth,
// against a real peer nobody here wrote: host A runs xdpnet (containers on an
// xdpnet bridge, one port on tc and one on XDP, a VTEP on its uplink); host B
// runs the Linux kernel's vxlan device on a Linux bridge. Then xdpnet on both
// hosts, isolation between two VNIs, and tshark's reading of our packets.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, inNs, netns, nsMac as mac, ok, sh, veth, xdpnet } from '../helpers/sys.js';

const UA = '192.168.60.1'; // host A's uplink
const UB = '192.168.60.2'; // host B's uplink
const INNER_MTU = 1450;

interface StatsJson { interfaces: Array<{ iface: string; drops: Record<string, number> }> }

const ping = (ns: string, ip: string, count = 3) => inNs(ns, 'ping', ['-c', String(count), '-i', '0.1', '-W', '1', ip]);
const quiet = (ns: string) => sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);

/**
 * A container namespace whose eth0 (addr, inner MTU, GRO on: XDP redirects into it) faces `port` in `host`.
 * xdpPort: no tx checksum offload either, since a frame that enters XDP loses its partial checksum (TCP would break).
 */
function container(host: string, tag: string, port: string, addr: string, xdpPort = false): string {
  const c = netns(tag);
  quiet(c);
  veth(host, port, c, 'eth0', undefined, addr);
  sh('ip', ['-n', c, 'link', 'set', 'eth0', 'mtu', String(INNER_MTU)]);
  sh('ip', ['netns', 'exec', c, 'ethtool', '-K', 'eth0', 'gro', 'on', ...(xdpPort ? ['tx', 'off'] : [])]);
  return c;
}

/** Two hosts joined by an underlay veth ua (A) — ub (B). */
function hosts(): { a: string; b: string } {
  const a = netns('hostA');
  const b = netns('hostB');
  quiet(a);
  quiet(b);
  veth(a, 'ua', b, 'ub', `${UA}/24`, `${UB}/24`);
  // The far end of an XDP uplink: GRO (XDP redirects into it) and no tx checksum offload (veth would leave partial checksums).
  sh('ip', ['netns', 'exec', a, 'ethtool', '-K', 'ua', 'gro', 'on', 'tx', 'off']);
  sh('ip', ['netns', 'exec', b, 'ethtool', '-K', 'ub', 'gro', 'on', 'tx', 'off']);
  return { a, b };
}

/** Host B the kernel way: vx<n> (VNI, port) on Linux bridge kbr<n> with a container on it. */
function kernelOverlay(b: string, n: number, vni: number, port: number, learning: boolean, cport: string): void {
  inNs(b, 'ip', ['link', 'del', `vx${n}`]);
  sh('ip', ['-n', b, 'link', 'add', `vx${n}`, 'type', 'vxlan', 'id', String(vni), 'local', UB, 'remote', UA, 'dstport', String(port), 'dev', 'ub',
    ...(learning ? [] : ['nolearning'])]);
  if (!JSON.parse(sh('ip', ['-n', b, '-j', 'link', 'show'])).some((l: { ifname: string }) => l.ifname === `kbr${n}`)) {
    sh('ip', ['-n', b, 'link', 'add', `kbr${n}`, 'type', 'bridge']);
    sh('ip', ['-n', b, 'link', 'set', cport, 'master', `kbr${n}`]);
    sh('ip', ['-n', b, 'link', 'set', `kbr${n}`, 'up']);
  }
  sh('ip', ['-n', b, 'link', 'set', `vx${n}`, 'master', `kbr${n}`]);
  sh('ip', ['-n', b, 'link', 'set', `vx${n}`, 'up']);
}

function iperf(client: string, server: string, serverIp: string, reverse = false): number {
  const s = inNs(server, 'iperf3', ['-s', '-D', '-1', '-B', serverIp]);
  expect(s.status, s.stderr).toBe(0);
  sh('sleep', ['0.3']);
  const r = inNs(client, 'iperf3', ['-c', serverIp, '-t', '2', '-J', ...(reverse ? ['-R'] : [])]);
  expect(r.status, r.stdout + r.stderr).toBe(0);
  return JSON.parse(r.stdout).end.sum_received.bits_per_second as number;
}

describe('xdpnet VTEP with the kernel vxlan device as its peer', () => {
  let a: string;
  let b: string;
  let ca1: string; // tc port pa1
  let ca2: string; // XDP port pa2
  let cb1: string;

  beforeAll(() => {
    ({ a, b } = hosts());
    ca1 = container(a, 'ca1', 'pa1', '10.60.0.11/24');
    ca2 = container(a, 'ca2', 'pa2', '10.60.0.12/24', true);
    cb1 = container(b, 'cb1', 'pb1', '10.60.0.21/24');
    sh('ip', ['-n', b, 'link', 'set', 'pb1', 'up']);
    ok(['--netns', a, 'bridge', 'add', 'br0']);
    ok(['--netns', a, 'attach', 'pa1', '--bridge', 'br0']);
    ok(['--netns', a, 'attach', 'pa2', '--bridge', 'br0', '--hook', 'xdp']);
  });
  afterAll(() => cleanup());

  const vtep = (port: number, learning: boolean) => {
    xdpnet(['--netns', a, 'vxlan', 'del', '--vni', '100']);
    if (learning) sh('ip', ['netns', 'exec', a, 'sysctl', '-qw', 'net.ipv4.conf.ua.forwarding=0']); // off for the first and last adds, on (left by the first) for the second
    const out = ok(['--netns', a, 'vxlan', 'add', '--bridge', 'br0', '--vni', '100', '--local', UA, '--dev', 'ua', '--udp-port', String(port),
      ...(learning ? ['--learning'] : [])]);
    ok(['--netns', a, 'vxlan', 'remote', 'add', '--vni', '100', UB]);
    kernelOverlay(b, 0, 100, port, learning, 'pb1');
    return out;
  };

  for (const [port, learning] of [[4789, true], [4789, false], [8472, true]] as const) {
    describe(`port ${port}, learning ${learning ? 'on' : 'off'}`, () => {
      let added = '';
      beforeAll(() => {
        added = vtep(port, learning);
        if (!learning) ok(['--netns', a, 'fdb', 'add', mac(cb1), '--bridge', 'br0', '--remote', UB]);
      });

      it('says what it set up: forwarding, the inner MTU, the slow path of the XDP port', () => {
        expect(added).toContain(`added VTEP VNI 100: bridge br0 VLAN 1 over ua (${UA}, UDP ${port}, learning ${learning ? 'on' : 'off'})`);
        // said only when this add turned it on: the first add and the one after it was turned off
        if (port === 4789 && !learning) expect(added).not.toContain('forwarding');
        else expect(added).toContain('note: set net.ipv4.conf.ua.forwarding=1');
        expect(added).toContain(`inner MTU ${INNER_MTU}`);
        expect(added).toContain('XDP ports pa2 got the tc slow path');
        expect(sh('ip', ['netns', 'exec', a, 'sysctl', '-n', 'net.ipv4.conf.ua.forwarding']).trim()).toBe('1');
        const status = JSON.parse(ok(['--netns', a, 'status', '--json'])) as Array<{ iface: string; hook: string; vtepUplink: number[] | null }>;
        expect(status.filter((s) => s.iface === 'pa2').map((s) => s.hook).sort()).toEqual(['tc', 'xdp']);
        expect(status.find((s) => s.iface === 'ua')).toMatchObject({ hook: 'xdp', vtepUplink: [100] });
        expect(ok(['--netns', a, 'status'])).toMatch(/ua\s+xdp\s+native\s+\d+\s+VTEP uplink \(VNI 100\)/);
      });

      it('containers on both hosts ping each other (tc and XDP ports)', () => {
        for (const [from, to] of [[ca1, '10.60.0.21'], [ca2, '10.60.0.21'], [cb1, '10.60.0.11'], [cb1, '10.60.0.12']] as const) {
          const r = ping(from, to);
          expect(r.status, `${from} -> ${to}\n${r.stdout}${r.stderr}`).toBe(0);
        }
      });

      it('shows the remote MAC behind the kernel VTEP', () => {
        const rows = JSON.parse(ok(['--netns', a, 'fdb', 'show', '--bridge', 'br0', '--json'])) as Array<{ mac: string; remote: string | null; type: string; port: string }>;
        expect(rows).toContainEqual(expect.objectContaining({ mac: mac(cb1), remote: UB, port: 'ua', type: learning ? 'learned' : 'static' }));
        expect(ok(['--netns', a, 'fdb', 'show', '--bridge', 'br0'])).toContain(`vtep ${UB} via ua`);
      });

      it('sends what tshark decodes as VXLAN with VNI 100 and a good IPv4 checksum', () => {
        // host B's uplink has no XDP, so its capture sees every frame we send
        const file = `/tmp/xnt${process.pid}-vxlan-${port}.pcap`;
        const bg = sh('sh', ['-c', `ip netns exec ${b} timeout 8 tcpdump -i ub -Q in -U -w ${file} -c 6 udp port ${port} >/dev/null 2>&1 & echo $!`]).trim();
        sh('sleep', ['1']);
        ping(ca1, '10.60.0.21', 3); // tc encap
        ping(ca2, '10.60.0.21', 3); // XDP encap
        sh('sh', ['-c', `while kill -0 ${bg} 2>/dev/null; do sleep 0.1; done`]);
        const out = sh('tshark', ['-r', file, '-o', 'ip.check_checksum:TRUE', '-d', `udp.port==${port},vxlan`, '-T', 'fields', '-E', 'separator=;',
          '-E', 'occurrence=f', '-e', 'ip.src', '-e', 'vxlan.vni', '-e', 'ip.checksum.status', '-e', 'udp.checksum', '-Y', 'vxlan']);
        sh('rm', ['-f', file]);
        const rows = out.trim().split('\n').filter(Boolean).map((l) => l.split(';'));
        expect(rows.length, out).toBeGreaterThanOrEqual(6);
        for (const r of rows) expect(r, out).toEqual([UA, '100', '1', '0x0000']); // ours, VNI 100, checksum good, UDP checksum 0
      });

      it('carries iperf3 TCP in both directions', () => {
        expect(iperf(ca1, cb1, '10.60.0.21')).toBeGreaterThan(50e6);
        expect(iperf(ca1, cb1, '10.60.0.21', true)).toBeGreaterThan(50e6);
      });

      if (!learning) {
        it('drops frames from a VTEP that stops being a peer at once, cached decisions included', () => {
          const unknownVtep = () => (JSON.parse(ok(['--netns', a, 'stats', '--json'])) as StatsJson)
            .interfaces.find((i) => i.iface === 'ua')?.drops['vxlan-unknown-vtep'] ?? 0;
          ok(['--netns', a, 'fdb', 'del', mac(cb1), '--bridge', 'br0']); // UB stays a peer: a remote VTEP of VNI 100
          // cb1 → ca2 (the XDP port) gets a cached decap decision; replies reach cb1 as floods to the remote VTEP
          expect(ping(cb1, '10.60.0.12').status).toBe(0);
          ok(['--netns', a, 'vxlan', 'remote', 'del', '--vni', '100', UB]); // a change to the peers alone
          const before = unknownVtep();
          expect(ping(cb1, '10.60.0.12', 5).status).not.toBe(0);
          expect(unknownVtep() - before).toBeGreaterThanOrEqual(5);
          ok(['--netns', a, 'vxlan', 'remote', 'add', '--vni', '100', UB]);
          ok(['--netns', a, 'fdb', 'add', mac(cb1), '--bridge', 'br0', '--remote', UB]);
          expect(ping(cb1, '10.60.0.12').status).toBe(0);
        });
      }
    });
  }

  it('vxlan show lists the VTEP', () => {
    const rows = JSON.parse(ok(['--netns', a, 'vxlan', 'show', '--json']));
    expect(rows).toEqual([{ vni: 100, bridge: 'br0', vlan: 1, local: UA, dev: 'ua', ifindex: expect.any(Number), port: 8472, learning: true, remotes: [UB], innerMtu: INNER_MTU }]);
    expect(ok(['--netns', a, 'vxlan', 'show']).trim()).toMatch(/^VNI\s+BRIDGE.*\n100\s+br0\s+1\s+192\.168\.60\.1\s+ua\s+8472\s+on\s+1450\s+192\.168\.60\.2$/);
  });

  it('refuses bad or conflicting VTEPs before writing anything', () => {
    const add = (...extra: string[]) => xdpnet(['--netns', a, 'vxlan', 'add', '--bridge', 'br0', '--local', UA, '--dev', 'ua', ...extra]);
    expect(add('--vni', '0')).toMatchObject({ code: 2, stderr: expect.stringContaining("invalid VNI '0': expected a number from 1 to 16777215") });
    expect(add('--vni', '16777216').code).toBe(2);
    expect(xdpnet(['--netns', a, 'vxlan', 'add', '--bridge', 'br0', '--vni', '5', '--local', '192.168.60.300', '--dev', 'ua'])).toMatchObject({ code: 2, stderr: expect.stringContaining("--local: invalid IPv4 address '192.168.60.300'") });
    expect(add('--vni', '100', '--vlan', '2')).toMatchObject({ code: 1, stderr: expect.stringContaining('VNI 100 already exists (bridge br0 VLAN 1)') });
    expect(add('--vni', '101')).toMatchObject({ code: 1, stderr: expect.stringContaining('bridge br0 VLAN 1 already has a VTEP (VNI 100)') });
    expect(xdpnet(['--netns', a, 'vxlan', 'add', '--bridge', 'nope', '--vni', '7', '--local', UA, '--dev', 'ua'])).toMatchObject({ code: 1, stderr: expect.stringContaining('bridge nope not found') });
    expect(xdpnet(['--netns', a, 'vxlan', 'add', '--bridge', 'br0', '--vni', '7', '--vlan', '7', '--local', '192.168.60.9', '--dev', 'ua'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/ua does not have the address 192\.168\.60\.9 \(it has 192\.168\.60\.1\)\nhint: /) });
    expect(xdpnet(['--netns', a, 'vxlan', 'add', '--bridge', 'br0', '--vni', '7', '--vlan', '7', '--local', UA, '--dev', 'nope0'])).toMatchObject({ code: 1, stderr: expect.stringContaining('interface nope0 not found') });
    expect(xdpnet(['--netns', a, 'vxlan', 'add', '--bridge', 'br0', '--vni', '7', '--vlan', '7', '--local', UA, '--dev', 'pa1'])).toMatchObject({ code: 1, stderr: expect.stringContaining('pa1 is a port of bridge br0, it cannot be an uplink') });
    expect(xdpnet(['--netns', a, 'vxlan', 'remote', 'add', '--vni', '100', UB])).toMatchObject({ code: 1, stderr: expect.stringContaining(`${UB} is already a remote VTEP of VNI 100`) });
    expect(xdpnet(['--netns', a, 'vxlan', 'remote', 'del', '--vni', '9', UB])).toMatchObject({ code: 1, stderr: expect.stringContaining('no VTEP with VNI 9') });
    expect(xdpnet(['--netns', a, 'fdb', 'add', '02:00:00:00:00:99', '--bridge', 'br0', '--remote', UB, '--vlan', '5'])).toMatchObject({ code: 1, stderr: expect.stringContaining('bridge br0 VLAN 5 has no VTEP') });
    expect(xdpnet(['--netns', a, 'fdb', 'add', '02:00:00:00:00:99', '--bridge', 'br0'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--port IFACE or --remote VTEP-IP') });
    expect(xdpnet(['--netns', a, 'detach', 'ua'])).toMatchObject({ code: 1, stderr: expect.stringContaining('ua is the uplink of VTEP VNI 100') });
    expect(xdpnet(['--netns', a, 'bridge', 'del', 'br0'])).toMatchObject({ code: 1 });
    expect(JSON.parse(ok(['--netns', a, 'vxlan', 'show', '--json'])).map((v: { vni: number }) => v.vni)).toEqual([100]);
  });

  it('vxlan del removes the VTEP, its uplink program and the XDP port\'s slow path', () => {
    expect(ok(['--netns', a, 'vxlan', 'del', '--vni', '100'])).toContain('deleted VTEP VNI 100');
    const status = JSON.parse(ok(['--netns', a, 'status', '--json'])) as Array<{ iface: string; hook: string }>;
    expect(status.map((s) => `${s.iface}/${s.hook}`).sort()).toEqual(['pa1/tc', 'pa2/xdp']);
    expect(ok(['--netns', a, 'vxlan', 'show'])).toBe('no VTEPs\n');
    expect((JSON.parse(ok(['--netns', a, 'fdb', 'show', '--json'])) as Array<{ remote: string | null }>).filter((r) => r.remote)).toEqual([]);
  });
});

describe('xdpnet on both hosts; two VNIs that never see each other', () => {
  let a: string;
  let b: string;
  const c: Record<string, string> = {};

  beforeAll(() => {
    ({ a, b } = hosts());
    // VNI 100: a1 (tc) on A, b1 (XDP) on B. VNI 200, same subnet: a2 on A, b2 on B.
    c.a1 = container(a, 'a1', 'pa1', '10.61.0.11/24');
    c.a2 = container(a, 'a2', 'pa2', '10.61.0.12/24');
    c.b1 = container(b, 'b1', 'pb1', '10.61.0.21/24', true);
    c.b2 = container(b, 'b2', 'pb2', '10.61.0.22/24');
    for (const [h, me, other] of [[a, UA, UB], [b, UB, UA]] as const) {
      ok(['--netns', h, 'bridge', 'add', 'br100']);
      ok(['--netns', h, 'bridge', 'add', 'br200']);
      ok(['--netns', h, 'vxlan', 'add', '--bridge', 'br100', '--vni', '100', '--local', me, '--dev', h === a ? 'ua' : 'ub', '--learning']);
      ok(['--netns', h, 'vxlan', 'add', '--bridge', 'br200', '--vni', '200', '--local', me, '--dev', h === a ? 'ua' : 'ub']);
      for (const vni of ['100', '200']) ok(['--netns', h, 'vxlan', 'remote', 'add', '--vni', vni, other]);
    }
    ok(['--netns', a, 'attach', 'pa1', '--bridge', 'br100']);
    ok(['--netns', a, 'attach', 'pa2', '--bridge', 'br200']);
    const joined = ok(['--netns', b, 'attach', 'pb1', '--bridge', 'br100', '--hook', 'xdp']);
    expect(joined).toContain(`set the MTU behind pb1 to ${INNER_MTU}`);
    ok(['--netns', b, 'attach', 'pb2', '--bridge', 'br200']);
  });
  afterAll(() => cleanup());

  it('connects containers of one VNI across the hosts, TCP both ways', () => {
    for (const [from, to] of [[c.a1, '10.61.0.21'], [c.b1, '10.61.0.11'], [c.a2, '10.61.0.22'], [c.b2, '10.61.0.12']] as const) {
      const r = ping(from, to);
      expect(r.status, `${from} -> ${to}\n${r.stdout}${r.stderr}`).toBe(0);
    }
    expect(iperf(c.a1, c.b1, '10.61.0.21')).toBeGreaterThan(50e6);
    expect(iperf(c.a1, c.b1, '10.61.0.21', true)).toBeGreaterThan(50e6);
  });

  it('never lets VNI 100 and VNI 200 see each other', () => {
    expect(ping(c.a1, '10.61.0.22', 2).status).not.toBe(0);
    expect(ping(c.b2, '10.61.0.11', 2).status).not.toBe(0);
    const learned = (h: string, br: string) => (JSON.parse(ok(['--netns', h, 'fdb', 'show', '--bridge', br, '--json'])) as Array<{ mac: string }>).map((r) => r.mac);
    for (const h of [a, b]) {
      expect(learned(h, 'br200')).not.toContain(mac(c.a1));
      expect(learned(h, 'br200')).not.toContain(mac(c.b1));
      expect(learned(h, 'br100')).not.toContain(mac(c.a2));
      expect(learned(h, 'br100')).not.toContain(mac(c.b2));
    }
  });
});

describe('xdpnet on both hosts, decap at tc (vxlan add --hook tc): GSO survives the veth underlay', () => {
  let a: string;
  let b: string;
  const c: Record<string, string> = {};

  beforeAll(() => {
    ({ a, b } = hosts());
    // Checksum offload back on: nothing on the underlay runs XDP, so TSO/GSO skbs cross it whole.
    sh('ip', ['netns', 'exec', a, 'ethtool', '-K', 'ua', 'tx', 'on']);
    sh('ip', ['netns', 'exec', b, 'ethtool', '-K', 'ub', 'tx', 'on']);
    c.a1 = container(a, 'a1', 'pa1', '10.62.0.11/24');
    c.b1 = container(b, 'b1', 'pb1', '10.62.0.21/24');
    for (const [h, me, other, up] of [[a, UA, UB, 'ua'], [b, UB, UA, 'ub']] as const) {
      ok(['--netns', h, 'bridge', 'add', 'br0']);
      ok(['--netns', h, 'vxlan', 'add', '--bridge', 'br0', '--vni', '300', '--local', me, '--dev', up, '--hook', 'tc']);
      ok(['--netns', h, 'vxlan', 'remote', 'add', '--vni', '300', other]);
      ok(['--netns', h, 'attach', h === a ? 'pa1' : 'pb1', '--bridge', 'br0']);
    }
  });
  afterAll(() => cleanup());

  it('shows the uplink at tc and refuses another hook for it', () => {
    const status = JSON.parse(ok(['--netns', a, 'status', '--json'])) as Array<{ iface: string; hook: string }>;
    expect(status.map((s) => `${s.iface}/${s.hook}`).sort()).toEqual(['pa1/tc', 'ua/tc']);
    expect(xdpnet(['--netns', a, 'vxlan', 'add', '--bridge', 'br0', '--vni', '301', '--vlan', '2', '--local', UA, '--dev', 'ua', '--hook', 'xdp']))
      .toMatchObject({ code: 1, stderr: expect.stringContaining('uplink ua already decapsulates at tc, not xdp') });
  });

  it('connects the containers, TCP both ways', () => {
    for (const [from, to] of [[c.a1, '10.62.0.21'], [c.b1, '10.62.0.11']] as const) {
      const r = ping(from, to);
      expect(r.status, `${from} -> ${to}\n${r.stdout}${r.stderr}`).toBe(0);
    }
    expect(iperf(c.a1, c.b1, '10.62.0.21')).toBeGreaterThan(50e6);
    expect(iperf(c.a1, c.b1, '10.62.0.21', true)).toBeGreaterThan(50e6);
    const st = JSON.parse(ok(['--netns', b, 'stats', '--json'])) as { drops: Record<string, number> };
    expect(Object.keys(st.drops).filter((r) => r.startsWith('vxlan-'))).toEqual([]); // no decap drop of any kind
  });
});
