// `xdpnet monitor` against traffic made to be dropped or forwarded: frames
// injected raw from a container (a wrong VLAN, a cut-short tag), a kernel
// vxlan peer sending an unknown VNI, pings across the bridge, the overlay and
// NAT; the pcapng read back by tshark. And the case that used to be silent: a
// VXLAN decap redirected into a container veth without GRO.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MonCfg } from '../../src/objects/monitor.js';
import { u32 } from '../../src/objects/codec.js';
import { BpfMap } from '../../src/sys/libbpf.js';
import { udpFrame, vxlanFrame } from '../../src/objects/bench.js';
import { CLI, ROOT, cleanup, inNs, netns, nsMac, ok, sh, veth, xdpnet } from '../helpers/sys.js';

interface Ev { event: string; hook: string; iface: string; out: string | null; reason: string | null; vni: number | null; len: number; summary: string; data: string }

/** A monitor running in the background; stop() ends it (SIGINT) and returns what it printed. */
async function monitor(ns: string, args: string[]): Promise<{ stop(): Promise<string>; done: Promise<string> }> {
  const p = spawn(process.execPath, [CLI, '--netns', ns, 'monitor', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => (out += d));
  p.stderr.on('data', (d: Buffer) => (err += d));
  const done = new Promise<string>((res, rej) => p.on('exit', (code) => (code === 0 ? res(out) : rej(new Error(`monitor exited ${code}: ${err}`)))));
  for (let i = 0; !err.includes('monitoring') && i < 200; i++) {
    if (p.exitCode !== null) throw new Error(`monitor exited: ${err}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  expect(err).toMatch(/^monitoring ns-\S+: /);
  return { done, stop: () => (p.kill('SIGINT'), done) };
}
const events = (out: string): Ev[] => out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
const inject = (ns: string, dev: string, ...frames: string[]) => {
  const r = inNs(ns, process.execPath, [`${ROOT}test/helpers/inject.mjs`, dev, ...frames]);
  expect(r.status, r.stderr).toBe(0);
};
const ping = (ns: string, ip: string, count = 2) => inNs(ns, 'ping', ['-c', String(count), '-i', '0.2', '-W', '1', ip]);
const quiet = (ns: string) => sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
const macHex = (m: string) => m.replace(/:/g, '');

describe('monitor on a bridge: drops by reason, traces, pcapng', () => {
  let h: string;
  let c1: string;
  let c2: string;
  let tmp: string;
  beforeAll(() => {
    h = netns('monh');
    c1 = netns('monc');
    c2 = netns('monc');
    for (const n of [h, c1, c2]) quiet(n);
    veth(h, 'p1', c1, 'eth0', undefined, '10.77.0.1/24');
    veth(h, 'p2', c2, 'eth0', undefined, '10.77.0.2/24');
    sh('ip', ['netns', 'exec', h, 'ethtool', '-K', 'p1', 'gro', 'on']); // inject.mjs's frames are XDP-redirected into eth0, so arrive at p1 through NAPI
    ok(['--netns', h, 'bridge', 'add', 'br0']);
    ok(['--netns', h, 'attach', 'p1', '--bridge', 'br0']);
    ok(['--netns', h, 'attach', 'p2', '--bridge', 'br0']);
    tmp = mkdtempSync(join(tmpdir(), 'xdpnet-mon-'));
  });
  afterAll(() => {
    cleanup();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('shows each drop with its reason, interface, hook and frame; the pcapng holds them with comments', async () => {
    const src = nsMac(c1);
    // ARP who-has 10.77.0.2 tagged VLAN 20 on an access port of VLAN 1; a frame from a multicast source MAC
    const arp = `ffffffffffff${macHex(src)}81000014080600010800060400 01${macHex(src)}0a4d00010000000000000a4d0002`.replace(' ', '');
    const mcast = `${macHex(nsMac(c2))}01005e0000010800${'4500001400000000400100000000000000000000'}`;
    const pcap = join(tmp, 'drops.pcapng');
    const m = await monitor(h, ['--type', 'drop', '--json', '--pcap', pcap, '--count', '2']);
    inject(c1, 'eth0', arp, mcast);
    const ev = events(await m.done);
    expect(ev.map((e) => [e.event, e.reason, e.iface, e.hook])).toEqual([
      ['drop', 'vlan-ingress-denied', 'p1', 'tc'],
      ['drop', 'invalid-source-mac', 'p1', 'tc'],
    ]);
    expect(ev[0].summary).toBe(`${src}→ff:ff:ff:ff:ff:ff vlan 20 ARP who-has 10.77.0.2 tell 10.77.0.1`);
    expect(ev[0].data).toBe(arp); // the frame as it arrived, the tag the kernel held outside the data put back
    expect(ev[1]).toMatchObject({ len: 34, data: mcast, summary: `01:00:5e:00:00:01→${nsMac(c2)} IPv4 0.0.0.0→0.0.0.0 ttl 64 ICMP truncated` });

    const fields = sh('tshark', ['-r', pcap, '-T', 'fields', '-E', 'separator=|', '-e', 'frame.comment', '-e', 'vlan.id', '-e', 'arp.dst.proto_ipv4', '-e', 'frame.interface_name']);
    expect(fields.trim().split('\n')).toEqual([
      'drop reason=vlan-ingress-denied iface=p1 hook=tc|20|10.77.0.2|p1',
      'drop reason=invalid-source-mac iface=p1 hook=tc|||p1',
    ]);
    const stats = JSON.parse(ok(['--netns', h, 'stats', '--json']));
    expect(stats.drops).toEqual({ 'vlan-ingress-denied': 1, 'invalid-source-mac': 1 });
  });

  it('prints one decoded line per event, and traces forwarding and flooding only while asked', async () => {
    const m = await monitor(h, ['--type', 'trace', '--iface', 'p1']);
    expect(ping(c1, '10.77.0.2').status).toBe(0);
    const lines = (await m.stop()).trim().split('\n');
    expect(lines).toContain(`FORWARD p1 → p2 tc ${nsMac(c1)}→${nsMac(c2)} IPv4 10.77.0.1→10.77.0.2 ttl 64 ICMP echo-request`);
    expect(lines).toContain(`FORWARD p2 → p1 tc ${nsMac(c2)}→${nsMac(c1)} IPv4 10.77.0.2→10.77.0.1 ttl 64 ICMP echo-reply`);
    expect(lines.every((l) => / p1 /.test(l) || / → p1 /.test(l))).toBe(true); // --iface p1 only
    // Stopped: the switch is off again and the datapath emits nothing.
    const cfg = BpfMap.usePin(`/sys/fs/bpf/xdpnet/ns-${h}/maps/xn_mon`, (x) => MonCfg.decode(x.lookup(u32(0))!));
    expect(cfg).toEqual({ flags: 0, sample: 0 });
  });

  it('status and stats --all-namespaces show every instance, each read in its own namespace', () => {
    // every instance on a shared machine: another run's leftovers are noted (never this suite's); nothing else on stderr
    const okAll = (args: string[]) => {
      const r = xdpnet(args);
      expect(r.stderr.replace(/^note: stale state .*\n/gm, (l) => (l.includes(`/ns-${h}:`) ? l : '')), `xdpnet ${args.join(' ')}`).toBe('');
      expect(r.code).toBe(0);
      return r.stdout;
    };
    const status = JSON.parse(okAll(['status', '--all-namespaces', '--json'])) as Array<{ netns: string; iface: string; bridge: string }>;
    expect(status.filter((r) => r.netns === `ns-${h}`).map((r) => `${r.iface} ${r.bridge}`)).toEqual(['p1 br0', 'p2 br0']);
    expect(okAll(['status', '-A'])).toMatch(new RegExp(`^ns-${h}:\n  IFACE .*\n  p1 +tc `, 'm'));
    const stats = JSON.parse(okAll(['stats', '--all-namespaces', '--json'])) as Array<{ netns: string; drops: Record<string, number> }>;
    expect(stats.find((x) => x.netns === `ns-${h}`)?.drops).toEqual({ 'vlan-ingress-denied': 1, 'invalid-source-mac': 1 });
    expect(xdpnet(['--netns', h, 'stats', '-A']).stderr).toContain('--all-namespaces and --netns exclude each other');
  });

  it('refuses bad options before touching anything', () => {
    const r = xdpnet(['--netns', h, 'monitor', '--type', 'bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("argument 'bogus' is invalid");
    expect(xdpnet(['--netns', h, 'monitor', '--sample', '3']).stderr).toContain('--sample must be a power of two, got 3');
    expect(xdpnet(['--netns', h, 'monitor', '--bridge', 'nope']).stderr).toContain('no bridge nope');
  });
});


const UA = '192.168.61.1';
const UB = '192.168.61.2';

describe('monitor on a VXLAN overlay (the kernel vxlan device as the peer)', () => {
  let a: string;
  let b: string;
  let ca1: string;
  let cb1: string;
  let tmp: string;
  let attachOut = '';
  beforeAll(() => {
    a = netns('monA');
    b = netns('monB');
    ca1 = netns('monca');
    cb1 = netns('moncb');
    for (const n of [a, b, ca1, cb1]) quiet(n);
    veth(a, 'ua', b, 'ub', `${UA}/24`, `${UB}/24`);
    sh('ip', ['netns', 'exec', b, 'ethtool', '-K', 'ub', 'gro', 'on', 'tx', 'off']); // the far end of an XDP uplink
    veth(a, 'pa1', ca1, 'eth0', undefined, '10.61.0.11/24'); // GRO left off at eth0: attach must see to it
    veth(b, 'pb1', cb1, 'eth0', undefined, '10.61.0.21/24');
    for (const [n, d] of [[ca1, 'eth0'], [cb1, 'eth0']]) sh('ip', ['-n', n, 'link', 'set', d, 'mtu', '1450']);
    ok(['--netns', a, 'bridge', 'add', 'br0']);
    attachOut = ok(['--netns', a, 'attach', 'pa1', '--bridge', 'br0']);
    ok(['--netns', a, 'vxlan', 'add', '--bridge', 'br0', '--vni', '100', '--local', UA, '--dev', 'ua']);
    ok(['--netns', a, 'vxlan', 'remote', 'add', '--vni', '100', UB]);
    sh('ip', ['-n', b, 'link', 'add', 'vx0', 'type', 'vxlan', 'id', '100', 'local', UB, 'remote', UA, 'dstport', '4789', 'dev', 'ub']);
    sh('ip', ['-n', b, 'link', 'add', 'kbr0', 'type', 'bridge']);
    for (const d of ['pb1', 'vx0']) sh('ip', ['-n', b, 'link', 'set', d, 'master', 'kbr0']);
    for (const d of ['kbr0', 'vx0']) sh('ip', ['-n', b, 'link', 'set', d, 'up']);
    tmp = mkdtempSync(join(tmpdir(), 'xdpnet-mon-'));
  });
  afterAll(() => {
    cleanup();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('attach turned GRO on at the container end; a ping across the overlay traces decap and encap with the VNI', async () => {
    expect(attachOut).toContain(`note: turned GRO on at eth0 (in network namespace ${ca1})`);
    expect(sh('ip', ['netns', 'exec', ca1, 'ethtool', '-k', 'eth0'])).toMatch(/generic-receive-offload: on/);
    const m = await monitor(a, ['--type', 'trace', '--vni', '100', '--json']);
    expect(ping(cb1, '10.61.0.11').status).toBe(0);
    const ev = events(await m.stop());
    const steps = new Set(ev.map((e) => `${e.event} ${e.iface}→${e.out} ${e.hook} vni ${e.vni}`));
    expect(steps, JSON.stringify(ev.map((e) => [e.event, e.iface, e.out, e.hook, e.vni, e.summary]), null, 1)).toContain('decap ua→pa1 xdp vni 100');
    expect(steps, JSON.stringify(ev.map((e) => [e.event, e.iface, e.out, e.hook, e.vni, e.summary]), null, 1)).toContain('encap pa1→ua tc vni 100');
    const req = ev.find((e) => e.event === 'decap' && e.summary.includes('echo-request'))!;
    expect(req.summary).toBe(`${nsMac(cb1)}→${nsMac(ca1)} IPv4 10.61.0.21→10.61.0.11 ttl 64 ICMP echo-request`); // the inner frame, delivered
    const rep = ev.find((e) => e.event === 'encap' && e.summary.includes('echo-reply'))!;
    expect(rep.summary).toMatch(new RegExp(`IPv4 ${UA}→${UB} ttl \\d+ UDP \\d+→4789 VXLAN vni 100: ${nsMac(ca1)}→${nsMac(cb1)} IPv4 10.61.0.11→10.61.0.21 ttl 64 ICMP echo-reply$`));
  });

  it('drops an unknown VNI and a cut-short VXLAN header at the uplink, and the pcapng has both', async () => {
    const outer = { srcMac: nsMac(b, 'ub'), dstMac: nsMac(a, 'ua'), srcIp: UB, dstIp: UA, sport: 40000, dport: 4789 };
    const inner = udpFrame({ srcMac: '02:00:00:00:09:01', dstMac: '02:00:00:00:09:02', srcIp: '10.9.0.1', dstIp: '10.9.0.2', sport: 1, dport: 2, size: 150 });
    const unknown = vxlanFrame(outer, 999, inner);
    const short = vxlanFrame(outer, 100, Buffer.alloc(4)); // a VXLAN header, then 4 bytes: no inner Ethernet header
    const pcap = join(tmp, 'vx.pcapng');
    const m = await monitor(a, ['--type', 'drop', '--json', '--pcap', pcap, '--count', '2']);
    inject(b, 'ub', unknown.toString('hex'), short.toString('hex'));
    const ev = events(await m.done);
    expect(ev.map((e) => [e.event, e.reason, e.iface, e.hook, e.vni])).toEqual([
      ['drop', 'vxlan-unknown-vni', 'ua', 'xdp', 999],
      ['drop', 'vxlan-truncated', 'ua', 'xdp', 100],
    ]);
    expect(ev[0].data).toBe(unknown.subarray(0, 128).toString('hex'));
    expect(ev[0].len).toBe(unknown.length);
    const fields = sh('tshark', ['-r', pcap, '-d', 'udp.port==4789,vxlan', '-T', 'fields', '-E', 'separator=|', '-e', 'frame.comment', '-e', 'vxlan.vni', '-e', 'frame.len', '-e', 'frame.cap_len']);
    expect(fields.trim().split('\n')).toEqual([
      `drop reason=vxlan-unknown-vni iface=ua hook=xdp vni=999|999|${unknown.length}|128`,
      'drop reason=vxlan-truncated iface=ua hook=xdp vni=100|100|60|60',
    ]);
  });

  it('counts and shows the frames the kernel refuses: decap into a container veth without GRO is no longer silent', async () => {
    sh('ip', ['netns', 'exec', ca1, 'ethtool', '-K', 'eth0', 'gro', 'off']); // as a container runtime might leave it
    const m = await monitor(a, ['--type', 'drop', '--json']);
    expect(ping(cb1, '10.61.0.11', 3).status).not.toBe(0);
    const ev = events(await m.stop());
    expect(ev.length).toBeGreaterThan(0);
    expect(ev.every((e) => e.event === 'drop' && e.reason === 'redirect-refused' && e.iface === 'ua' && e.hook === 'kernel')).toBe(true);
    const stats = JSON.parse(ok(['--netns', a, 'stats', '--json'])) as { interfaces: Array<{ iface: string; dropped: number; drops: Record<string, number> }> };
    const ua = stats.interfaces.find((i) => i.iface === 'ua')!;
    expect(ua.drops['redirect-refused']).toBeGreaterThanOrEqual(ev.length);
    expect(ok(['--netns', a, 'stats'])).toMatch(/drops: .*ua: .*redirect-refused=\d+/);
    sh('ip', ['netns', 'exec', ca1, 'ethtool', '-K', 'eth0', 'gro', 'on']);
    expect(ping(cb1, '10.61.0.11').status).toBe(0);
  });
});

describe('monitor with NAT: a ping from a container out through masquerade', () => {
  let h: string;
  let o: string;
  let c1: string;
  beforeAll(() => {
    h = netns('monnh');
    o = netns('monno');
    c1 = netns('monnc');
    for (const n of [h, o, c1]) quiet(n);
    veth(h, 'up0', o, 'eth0', '10.98.0.1/24', '10.98.0.254/24');
    sh('ip', ['-n', o, 'addr', 'add', '198.51.100.7/32', 'dev', 'lo']);
    sh('ip', ['-n', h, 'route', 'add', 'default', 'via', '10.98.0.254']);
    sh('ip', ['netns', 'exec', h, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    sh('ip', ['netns', 'exec', o, 'ethtool', '-K', 'eth0', 'tx', 'off']); // XDP on up0 takes complete checksums
    veth(h, 'v1', c1, 'eth0', undefined, '172.18.0.2/16');
    sh('ip', ['-n', c1, 'route', 'add', 'default', 'via', '172.18.0.1']);
    ok(['--netns', h, 'bridge', 'add', 'br0', '--address', '172.18.0.1/16']);
    ok(['--netns', h, 'attach', 'v1', '--bridge', 'br0']);
    ok(['--netns', h, 'nat', 'masquerade', 'add', '--src', '172.18.0.0/16', '--out', 'up0']);
  });
  afterAll(() => cleanup());

  it('traces the translation both ways and the bridge hop back to the container', async () => {
    const m = await monitor(h, ['--type', 'trace', '--json']);
    expect(ping(c1, '198.51.100.7').status).toBe(0);
    const ev = events(await m.stop());
    const nat = ev.filter((e) => e.event === 'nat');
    expect(nat.find((e) => e.summary.includes('echo-request'))).toMatchObject({ summary: expect.stringMatching(/IPv4 10\.98\.0\.1→198\.51\.100\.7 ttl 63 ICMP echo-request$/), iface: 'br0', out: 'up0' });
    expect(nat.find((e) => e.summary.includes('echo-reply'))).toMatchObject({ summary: expect.stringMatching(/IPv4 198\.51\.100\.7→172\.18\.0\.2 ttl \d+ ICMP echo-reply$/), iface: 'up0' });
    expect(ev.some((e) => e.event === 'forward' && e.out === 'v1' && e.summary.endsWith('ICMP echo-reply')), JSON.stringify(ev.map((e) => [e.event, e.iface, e.out, e.hook, e.summary]), null, 1)).toBe(true);
  });
});
