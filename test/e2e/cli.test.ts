// The CLI across processes, in network namespaces with real traffic: what
// one invocation attaches, the next one sees; counters rise with pings;
// detach leaves nothing on bpffs or on the interface.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, inNs, netns, sh, tcFilters, tcFlavour, veth, xdpnet } from '../helpers/sys.js';

const pins = (ns: string) => `/sys/fs/bpf/xdpnet/ns-${ns}`;

interface StatusRow { iface: string | null; ifindex: number; hook: string; mode: string | null; progId: number; since: string; defunct: boolean }
interface StatsJson { interfaces: Array<{ iface: string; rxPackets: number; rxBytes: number }>; drops: Record<string, number> }

function ok(args: string[]): string {
  const r = xdpnet(args);
  expect(r.stderr, `xdpnet ${args.join(' ')}`).toBe('');
  expect(r.code).toBe(0);
  return r.stdout;
}
const kernelLink = (progId: number) =>
  (JSON.parse(sh('bpftool', ['link', 'show', '-j'])) as Array<{ type: string | number; prog_id: number }>).find((l) => l.prog_id === progId);
const status = (ns: string): StatusRow[] => JSON.parse(ok(['--netns', ns, 'status', '--json']));
const stats = (ns: string): StatsJson => JSON.parse(ok(['--netns', ns, 'stats', '--json']));

describe('attach, status, stats, detach between namespaces', () => {
  let a: string;
  let b: string;
  beforeAll(() => {
    a = netns('a');
    b = netns('b');
    veth(a, 'xn0', b, 'xn1', '10.211.0.1/24', '10.211.0.2/24');
  });
  afterAll(cleanup);

  it('attaches XDP (native) on one end and tc on the other; a second process sees both', () => {
    // xn1 (another namespace) sends partial checksums, which XDP on xn0 would lose: warned, with the fix
    expect(ok(['--netns', a, 'attach', 'xn0'])).toMatch(new RegExp(`^attached xn0 \\(xdp native, program \\d+\\)\\nwarning: xn1 \\(in network namespace ${b}\\) sends partial checksums.*: ip netns exec ${b} ethtool -K xn1 tx off\\n$`));
    expect(ok(['--netns', b, 'attach', 'xn1', '--hook', 'tc'])).toMatch(new RegExp(`^attached xn1 \\(tc \\(${tcFlavour()}\\), program \\d+\\)\n$`));
    const [sa] = status(a);
    expect(sa).toMatchObject({ iface: 'xn0', hook: 'xdp', mode: 'native', defunct: false });
    expect(Date.now() - Date.parse(sa.since)).toBeLessThan(60_000);
    expect(status(b)).toMatchObject([{ iface: 'xn1', hook: 'tc', tc: tcFlavour(), mode: null }]);
    expect(sh('ip', ['-n', a, 'link', 'show', 'xn0'])).toMatch(/ xdp /);
    // bpftool (not ours) sees the kernel links: XDP, and tcx (link type 11, unnamed by Debian's bpftool 7.1);
    // on clsact, tc (not ours) sees a direct-action filter running the program, and no link.
    expect(kernelLink(sa.progId)).toMatchObject({ type: 'xdp' });
    if (tcFlavour() === 'tcx') expect(kernelLink(status(b)[0].progId)).toMatchObject({ type: 11 });
    else {
      expect(kernelLink(status(b)[0].progId)).toBeUndefined();
      expect(tcFilters(b, 'xn1')).toMatchObject([{ kind: 'bpf', options: { prog: { id: status(b)[0].progId } } }]);
      expect(ok(['--netns', b, 'status'])).toMatch(/\nxn1\s+tc \(clsact\)\s+-\s+\d+/);
    }
    expect(ok(['--netns', a, 'status'])).toMatch(/^IFACE\s+HOOK\s+MODE\s+PROG\s+ROLE\s+VLANS\s+SINCE\nxn0\s+xdp\s+native\s+\d+\s+-\s+-\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+s ago\)\nMaps: \d+ pinned, [\d.]+ [KM]iB of kernel memory \(each: xdpnet status --memory\)\nObjects: (normal|compat) \(.+\)\n$/);
  });

  it('counts real traffic: pings across the veth raise both ends\' counters', () => {
    const before = { a: stats(a).interfaces[0], b: stats(b).interfaces[0] };
    const r = inNs(a, 'ping', ['-c', '20', '-i', '0.01', '-q', '10.211.0.2']);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const after = { a: stats(a).interfaces[0], b: stats(b).interfaces[0] };
    // 20 echo requests reach xn1 (98-byte frames), 20 replies reach xn0; ARP may add a few.
    expect(after.b.rxPackets - before.b.rxPackets).toBeGreaterThanOrEqual(20);
    expect(after.b.rxBytes - before.b.rxBytes).toBeGreaterThanOrEqual(20 * 98);
    expect(after.a.rxPackets - before.a.rxPackets).toBeGreaterThanOrEqual(20);
    expect(after.a.iface).toBe('xn0');
    expect(stats(a).drops).toEqual({});
  });

  it('stats --watch reports rates while traffic flows', async () => {
    // until killed below: a fixed count was over before stats started under emulation (a CLI start takes seconds there)
    const ping = spawn('ip', ['netns', 'exec', a, 'ping', '-q', '-i', '0.005', '10.211.0.2'], { stdio: 'ignore' });
    try {
      const r = xdpnet(['--netns', b, 'stats', '--watch', '0.5', '--count', '2']);
      expect(r.code).toBe(0);
      const rates = [...r.stdout.matchAll(/^xn1\s+(\d+(?:\.\d+)?) (k?)pps\s+\S+ (k|M)?bit\/s/gm)].map((m) => Number(m[1]) * (m[2] ? 1000 : 1));
      expect(rates.length).toBe(2);
      expect(Math.max(...rates)).toBeGreaterThan(50); // ~200 pps sent
    } finally {
      ping.kill();
    }
  });

  it('refuses a second attach to the same interface and changes nothing', () => {
    const prog = status(a)[0].progId;
    const r = xdpnet(['--netns', a, 'attach', 'xn0', '--hook', 'tc']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^xdpnet: error: xn0 is already attached \(xdp native, program \d+, since .*\)\nhint: detach it first: xdpnet detach xn0\n$/);
    expect(status(a).map((s) => s.progId)).toEqual([prog]);
  });

  it('keeps namespaces apart: same state never shows in another namespace or the host', () => {
    expect(status(b).map((s) => s.iface)).toEqual(['xn1']);
    const host = xdpnet(['status', '--json']);
    expect(host.code).toBe(0);
    expect(host.stderr.replace(/^note: stale state .*\n/gm, '')).toBe(''); // another run's leftovers on this machine may be noted
    expect(JSON.parse(host.stdout).filter((s: StatusRow) => s.iface === 'xn0' || s.iface === 'xn1')).toEqual([]);
  });

  it('detach removes the link, the pins and the program from the interface', () => {
    const progs = [status(a)[0].progId, status(b)[0].progId];
    expect(ok(['--netns', a, 'detach', 'xn0'])).toMatch(/^detached xn0 \(xdp native, program \d+\)\n$/);
    expect(sh('ip', ['-n', a, 'link', 'show', 'xn0'])).not.toMatch(/ xdp/);
    expect(existsSync(pins(a))).toBe(false);
    const r = xdpnet(['--netns', a, 'detach', 'xn0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('xdpnet: error: xn0 is not attached\nhint: see what is attached with `xdpnet status`\n');
    expect(ok(['--netns', b, 'detach', '--all'])).toBe('detached xn1\n');
    expect(existsSync(pins(b))).toBe(false);
    expect(progs.map(kernelLink)).toEqual([undefined, undefined]);
    expect(tcFilters(b, 'xn1')).toEqual([]);
    expect(sh('ip', ['netns', 'exec', b, 'tc', 'qdisc', 'show', 'dev', 'xn1'])).not.toMatch(/clsact/); // xdpnet added it, xdpnet removed it
  });

  it('generic mode is generic XDP on the device', () => {
    ok(['--netns', a, 'attach', 'xn0', '--mode', 'generic']);
    expect(status(a)).toMatchObject([{ hook: 'xdp', mode: 'generic' }]);
    expect(sh('ip', ['-n', a, 'link', 'show', 'xn0'])).toMatch(/ xdpgeneric /);
    ok(['--netns', a, 'detach', 'xn0']);
  });

  it('an interface deleted while attached shows as gone; detach --all clears it', () => {
    const c = netns('c');
    veth(c, 'xg0', c, 'xg1');
    ok(['--netns', c, 'attach', 'xg0']);
    sh('ip', ['-n', c, 'link', 'del', 'xg0']);
    expect(status(c)).toMatchObject([{ iface: null, defunct: true }]);
    expect(ok(['--netns', c, 'status'])).toMatch(/ifindex \d+ \(gone\)/);
    expect(ok(['--netns', c, 'detach', '--all'])).toMatch(/^detached ifindex \d+ \(gone\)\n$/);
    expect(existsSync(pins(c))).toBe(false);
  });
});
