// The CLI grammar where it changes state: renamed options still work under
// their old spelling and say so, state-changing commands print what they made
// with --json, and `detach --all` names what it leaves (with the command that
// removes each) or, with --everything, removes it, leaving nothing pinned.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, cliIn, netns, sh, veth } from '../helpers/sys.js';

describe('state-changing CLI: renamed options, --json, detach --all [--everything]', () => {
  let h: string;
  let c: string;
  let o: string;
  const { run, ok, okJson } = cliIn(() => h);
  const links = () => okJson<Array<{ iface: string }>>('status').map((l) => l.iface).sort();

  beforeAll(() => {
    h = netns('clih');
    c = netns('clic');
    o = netns('clio');
    veth(h, 'eth0', o, 'up0', '192.0.2.1/24', '192.0.2.2/24');
    veth(h, 'u0', o, 'u0x', '198.51.100.1/24', '198.51.100.2/24');
    veth(h, 'p1', c, 'eth0');
    sh('ip', ['-n', h, 'route', 'add', 'default', 'via', '192.0.2.2']);
  });
  afterAll(() => cleanup());

  it('bridge add, attach and nat masquerade add print what they created with --json', () => {
    expect(okJson('bridge', 'add', 'br0', '--address', '172.30.0.1/16', '--mac', '02:30:00:00:00:01'))
      .toMatchObject({ name: 'br0', mac: '02:30:00:00:00:01', hostIface: 'br0', addresses: ['172.30.0.1/16'], ports: [{ iface: 'xnp1', host: true }] });
    expect(okJson('attach', 'p1', '--bridge', 'br0'))
      .toMatchObject({ iface: 'p1', bridge: 'br0', hook: 'tc', pvid: 1, hostPort: false, defunct: false, notes: expect.any(Array) });
    // one time format in JSON: ISO 8601, like status' since and monitor's time
    const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
    expect(okJson<{ at: string }>('stats').at).toMatch(iso);
    expect(okJson<Array<{ since: string }>>('status')[0].since).toMatch(iso);
    expect(okJson('nat', 'masquerade', 'add', '--src', '172.30.0.0/16', '--out', 'eth0'))
      .toMatchObject({ kind: 'masquerade', src: '172.30.0.0/16', out: 'eth0', to: '192.0.2.1' });
  });

  it('nat portmap: --host-port and --out; the old --port and --on still work and say so on stderr', () => {
    expect(okJson('nat', 'portmap', 'add', '--proto', 'tcp', '--host-port', '8081', '--to', '172.30.0.2:80'))
      .toMatchObject({ proto: 'tcp', port: 8081, to: '172.30.0.2:80', on: null });
    const old = run('nat', 'portmap', 'add', '--proto', 'udp', '--port', '5353', '--to', '172.30.0.2:53', '--on', 'eth0');
    expect(old.code).toBe(0);
    expect(old.stderr).toContain('xdpnet: warning: --port is deprecated here, use --host-port');
    expect(old.stderr).toContain('xdpnet: warning: --on is deprecated here, use --out');
    expect(okJson<Array<{ proto: string; port: number; on: string | null }>>('nat', 'portmap', 'show').map((p) => `${p.proto}/${p.port}/${p.on}`).sort())
      .toEqual(['tcp/8081/null', 'udp/5353/eth0']);
    expect(run('nat', 'portmap', 'del', '--proto', 'udp', '--host-port', '5353', '--on', 'eth0').code).toBe(0);
    const both = run('nat', 'portmap', 'del', '--proto', 'tcp', '--host-port', '8081', '--port', '8081');
    expect(both).toMatchObject({ code: 2, stderr: expect.stringContaining('--port and --host-port are the same option') });
    expect(okJson<unknown[]>('nat', 'portmap', 'show')).toHaveLength(1); // the refused command changed nothing
  });

  it('detach --all detaches ports and names what stays, each with the command that removes it', () => {
    ok('vxlan', 'add', '--bridge', 'br0', '--vni', '100', '--local', '198.51.100.1', '--dev', 'u0', '--hook', 'tc');
    const before = links();
    expect(before).toEqual(expect.arrayContaining(['p1', 'u0', 'eth0', 'br0']));
    expect(run('detach', '--everything')).toMatchObject({ code: 2, stderr: expect.stringContaining('--everything goes with --all') });
    const out = ok('detach', '--all').split('\n');
    expect(out).toContain('detached p1');
    expect(out).toContain('left: bridge br0 with its host port xnp1 (xdpnet bridge del br0 --force)');
    expect(out).toContain('left: VTEP uplink u0 of VNI 100 (xdpnet vxlan del --vni 100)');
    expect(out.find((l) => l.startsWith('left: NAT on '))).toMatch(/eth0 \(xdp\).*\(xdpnet nat flush\)$/);
    expect(out).toContain('hint: `xdpnet detach --all --everything` removes them too');
    expect(links()).toEqual(before.filter((l) => l !== 'p1')); // what it said stays did stay
  });

  it('detach --all --everything --json removes NAT, VTEPs and bridges too, and says so; nothing stays pinned', () => {
    const r = okJson<{ detached: string[]; removed: { natRules: number; natLinks: number; bridges: string[] }; left: unknown[] }>('detach', '--all', '--everything');
    expect(r).toEqual({ detached: [], removed: { natRules: 2, natLinks: 2, bridges: ['br0'] }, left: [] });
    expect(links()).toEqual([]);
    expect(okJson('vxlan', 'show')).toEqual([]);
    expect(sh('ip', ['-n', h, '-br', 'link', 'show'])).not.toMatch(/^br0|^xnp/m);
    expect(ok('detach', '--all')).toBe('nothing attached\n');
    expect(existsSync(`/sys/fs/bpf/xdpnet/ns-${h}/links`) && sh('ls', [`/sys/fs/bpf/xdpnet/ns-${h}/links`]).trim()).toBeFalsy();
  });
});
