// Each error the CLI promises: message, hint, exit code, and nothing changed.
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, netns, sh, veth, xdpnet, ROOT } from '../helpers/sys.js';

describe('errors', () => {
  let ns: string;
  let tmp: string;
  beforeAll(() => {
    ns = netns('err');
    veth(ns, 'xe0', ns, 'xe1');
    tmp = mkdtempSync(join(tmpdir(), 'xdpnet-e2e-'));
  });
  afterAll(() => {
    cleanup();
    rmSync(tmp, { recursive: true, force: true });
  });
  const nothingPinned = () => expect(existsSync(`/sys/fs/bpf/xdpnet/ns-${ns}`)).toBe(false);

  it('not root', () => {
    const r = xdpnet(['--netns', ns, 'attach', 'xe0'], {}, ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('xdpnet: error: permission denied: xdpnet needs root (CAP_BPF and CAP_NET_ADMIN)\nhint: run it as root, e.g. with sudo\n');
    nothingPinned();
  });

  it('bpffs not mounted: mounts it', () => {
    // In a private mount namespace, so the host's bpffs is untouched.
    const r = xdpnet(['status'], {}, ['unshare', '-m', '--propagation', 'private', 'sh', '-c', 'umount /sys/fs/bpf && ! mountpoint -q /sys/fs/bpf && "$@" && mountpoint /sys/fs/bpf', 'sh']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/nothing attached\n\/sys\/fs\/bpf is a mountpoint/);
    expect(sh('mountpoint', ['/sys/fs/bpf'])).toMatch(/is a mountpoint/);
  });

  it('bpffs not mounted and not mountable', () => {
    const r = xdpnet(['status'], { XDPNET_BPFFS: '/proc/xdpnet-nowhere/bpf' });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('xdpnet: error: bpffs is not mounted at /proc/xdpnet-nowhere/bpf and mounting it failed: ENOENT\nhint: mount it yourself: mount -t bpf bpf /proc/xdpnet-nowhere/bpf\n');
  });

  it('a kernel version string decides nothing: features are probed', () => {
    // setarch's UNAME26 personality makes uname(2) report a 2.6 kernel to the CLI; the
    // probes ask the kernel itself (test/unit/features.test.ts covers a kernel that lacks one).
    const r = xdpnet(['--netns', ns, 'attach', 'xe0'], {}, ['setarch', 'x86_64', '--uname-2.6']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(xdpnet(['--netns', ns, 'detach', 'xe0']).code).toBe(0);
    nothingPinned();
  });

  it('unknown interface', () => {
    const r = xdpnet(['--netns', ns, 'attach', 'nope0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`xdpnet: error: interface nope0 not found in network namespace ${ns}\nhint: list interfaces with \`ip -n ${ns} link\`\n`);
    nothingPinned();
  });

  it('unknown network namespace', () => {
    const r = xdpnet(['--netns', 'xdpnet-no-such-ns', 'status']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('xdpnet: error: network namespace xdpnet-no-such-ns not found (ENOENT)\nhint: list them with `ip netns list`\n');
  });

  it('object file missing', () => {
    const r = xdpnet(['--netns', ns, 'attach', 'xe0'], { XDPNET_BPF_DIR: tmp });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`xdpnet: error: object file missing: ${tmp}/counter.bpf.o\nhint: build it with \`make\`\n`);
    nothingPinned();
    expect(sh('ip', ['-n', ns, 'link', 'show', 'xe0'])).not.toMatch(/ xdp/);
  });

  it('verifier rejection: the tail of the log, and all of it with --verbose', () => {
    copyFileSync(join(ROOT, 'build/fixtures/reject.bpf.o'), join(tmp, 'counter.bpf.o'));
    const r = xdpnet(['--netns', ns, 'attach', 'xe0'], { XDPNET_BPF_DIR: tmp });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^xdpnet: error: load program xn_count_xdp: EACCES \(Permission denied\)\nverifier log \(tail\):\n[\s\S]*invalid access to packet[\s\S]*\nhint: the verifier rejected it; rerun with --verbose for the full log\n$/);
    expect(r.stderr.split('\n').length).toBeLessThan(20);
    const v = xdpnet(['--verbose', '--netns', ns, 'attach', 'xe0'], { XDPNET_BPF_DIR: tmp });
    expect(v.code).toBe(1);
    expect(v.stderr).toMatch(/^xdpnet: error: load program xn_count_xdp: verifier rejected it\n0: R1=ctx\([^)]*\) R10=fp0\n[\s\S]*invalid access to packet/); // 6.1 prints ctx(off=0,imm=0)
    nothingPinned();
  });

  it('already attached and not attached', () => {
    expect(xdpnet(['--netns', ns, 'attach', 'xe1']).code).toBe(0);
    const twice = xdpnet(['--netns', ns, 'attach', 'xe1']);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(/^xdpnet: error: xe1 is already attached \(xdp native/);
    const not = xdpnet(['--netns', ns, 'detach', 'xe0']);
    expect(not.code).toBe(1);
    expect(not.stderr).toMatch(/^xdpnet: error: xe0 is not attached\n/);
    expect(xdpnet(['--netns', ns, 'detach', 'xe1']).code).toBe(0);
    nothingPinned();
  });
});
