// The compat objects (build/bpf-compat: no bpf_loop and no 5.18 XDP helpers,
// what Ubuntu 22.04's 5.15 gets; docs/kernels.md) through the CLI: status
// names the set that runs, the two sets never share a pinned build, and
// `upgrade` moves an instance from one to the other. Then the monitor suite
// runs on them: its XDP drop events carry the frame's head byte-exact, which
// the compat objects copy with direct packet access.
import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, netns, ok, veth, xdpnet } from '../helpers/sys.js';

process.env.XDPNET_BPF_COMPAT = '1';

describe('compat objects: status, builds, switching sets', () => {
  let h: string;
  beforeAll(() => {
    h = netns('compat');
    veth(h, 'cp1', h, 'cp1x');
    veth(h, 'cp2', h, 'cp2x');
    ok(['--netns', h, 'bridge', 'add', 'br0']);
    ok(['--netns', h, 'attach', 'cp1', '--bridge', 'br0']);
  });
  afterAll(() => cleanup());

  const progDirs = () => readdirSync(`/sys/fs/bpf/xdpnet/ns-${h}/progs`).sort();

  it('status shows the compat set and why; its builds are named compat-<hash>', () => {
    expect(ok(['--netns', h, 'status'])).toContain('\nObjects: compat (XDPNET_BPF_COMPAT=1)');
    const rows = JSON.parse(ok(['--netns', h, 'status', '--json'])) as Array<{ iface: string; objects: string }>;
    expect(rows.map((r) => [r.iface, r.objects])).toEqual([['cp1', 'compat']]);
    expect(progDirs()).toEqual([expect.stringMatching(/^bridge-compat-[0-9a-f]{16}$/), expect.stringMatching(/^observe-compat-[0-9a-f]{16}$/)]);
  });

  const progIds = () => (JSON.parse(ok(['--netns', h, 'status', '--json'])) as Array<{ progId: number }>).map((r) => r.progId);
  /** The set this kernel gets when nothing forces one (status names it beside the set that runs). */
  const kernelGets = () => {
    const m = /\nObjects: (\w+) \((?:this kernel gets (\w+))?/.exec(xdpnet(['--netns', h, 'status'], { XDPNET_BPF_COMPAT: '' }).stdout);
    return m?.[2] ?? m?.[1];
  };

  it('the normal set is another build: an attach with it swaps the whole instance over in place, `upgrade` swaps back', (ctx) => {
    ctx.skip(kernelGets() !== 'normal', 'this kernel cannot run the normal set (before 6.8): the next case');
    const normal = { XDPNET_BPF_COMPAT: '0' };
    expect(xdpnet(['--netns', h, 'status'], normal).stdout).toContain(
      '\nObjects: compat (this kernel gets normal: XDPNET_BPF_COMPAT=0; `xdpnet upgrade` switches)');
    const before = progIds();
    expect(xdpnet(['--netns', h, 'attach', 'cp2', '--bridge', 'br0'], normal)).toMatchObject({ code: 0, stderr: '' });
    expect(progDirs()).toEqual([expect.stringMatching(/^bridge-[0-9a-f]{16}$/), expect.stringMatching(/^observe-[0-9a-f]{16}$/)]);
    expect(xdpnet(['--netns', h, 'status'], normal).stdout).toContain('\nObjects: normal (XDPNET_BPF_COMPAT=0)');
    expect(progIds()[0]).not.toBe(before[0]); // cp1 runs the normal program now
    expect(xdpnet(['--netns', h, 'upgrade'])).toMatchObject({ code: 0 }); // and back to compat
    expect(progDirs()).toEqual([expect.stringMatching(/^bridge-compat-[0-9a-f]{16}$/), expect.stringMatching(/^observe-compat-[0-9a-f]{16}$/)]);
    expect((JSON.parse(ok(['--netns', h, 'status', '--json'])) as Array<{ objects: string }>).map((r) => r.objects)).toEqual(['compat', 'compat']);
  });

  it('where the kernel cannot run the normal set, forcing it fails in the verifier and changes nothing', (ctx) => {
    ctx.skip(kernelGets() !== 'compat', 'this kernel runs the normal set: the case above');
    const [ids, dirs] = [progIds(), progDirs()];
    const r = xdpnet(['--netns', h, 'attach', 'cp2', '--bridge', 'br0'], { XDPNET_BPF_COMPAT: '0' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^xdpnet: error: load program xn_\w+: [\s\S]*verifier/);
    expect([progIds(), progDirs()]).toEqual([ids, dirs]); // cp1 still runs its compat program; cp2 is not attached
  });

  it('refuses a value of XDPNET_BPF_COMPAT it does not know, changing nothing', () => {
    const ids = progIds();
    const r = xdpnet(['--netns', h, 'attach', 'cp2x', '--bridge', 'br0'], { XDPNET_BPF_COMPAT: 'yes' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('XDPNET_BPF_COMPAT must be 1 (compat objects) or 0 (normal objects), not "yes"');
    expect(progIds()).toEqual(ids);
  });
});

await import('./monitor.test.js');
