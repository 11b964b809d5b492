// State hygiene: modes of the state tree, planted symlinks, and the state of
// a network namespace that was deleted (reported, removed by the daemon, not
// inherited by a new namespace of the same name).
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCK_DIR } from '../../src/dataplane/host.js';
import { CLI, cleanup, netns, sh, slow, veth, xdpnet } from '../helpers/sys.js';

const mode = (p: string) => statSync(p).mode & 0o777;

describe('state hygiene', () => {
  let ns: string;
  const dir = () => `/sys/fs/bpf/xdpnet/ns-${ns}`;
  const run = (...a: string[]) => xdpnet(['--netns', ns, ...a]);
  beforeAll(() => {
    ns = netns('hyg');
    veth(ns, 'p1', ns, 'p1x');
  });
  afterAll(() => cleanup());

  it('state dirs are 0700 and pins 0600', () => {
    expect(run('bridge', 'add', 'br0')).toMatchObject({ code: 0, stderr: '' });
    expect(run('attach', 'p1', '--bridge', 'br0')).toMatchObject({ code: 0, stderr: '' });
    for (const d of ['/sys/fs/bpf/xdpnet', dir(), join(dir(), 'maps'), join(dir(), 'links')]) expect([d, mode(d)]).toEqual([d, 0o700]);
    for (const sub of ['maps', 'links']) {
      const pins = readdirSync(join(dir(), sub));
      expect(pins.length).toBeGreaterThan(0);
      // folders among them (a clsact qdisc's mark) are 0700 too
      for (const f of pins) expect([f, mode(join(dir(), sub, f))]).toEqual([f, statSync(join(dir(), sub, f)).isDirectory() ? 0o700 : 0o600]);
    }
  });

  it('refuses a symlink planted in the state directory, and changes nothing', () => {
    const evil = join(dir(), 'maps', 'xn_evil');
    symlinkSync('/tmp', evil);
    try {
      const before = readdirSync(join(dir(), 'maps'));
      for (const args of [['bridge', 'add', 'br1'], ['bridge', 'show']]) {
        expect(run(...args)).toMatchObject({ code: 1, stderr: `xdpnet: error: refusing to use ${evil}: it is a symbolic link, and xdpnet makes none\nhint: inspect it, then remove it: rm ${evil}\n` });
      }
      expect(readdirSync(join(dir(), 'maps'))).toEqual(before);
    } finally {
      unlinkSync(evil);
    }
    expect(run('bridge', 'add', 'br1')).toMatchObject({ code: 0, stderr: '' });
  });

  it('an empty identity record (a command killed while writing it) is not another namespace\'s: the state stays', () => {
    expect(run('bridge', 'add', 'brid')).toMatchObject({ code: 0, stderr: '' });
    writeFileSync(join(LOCK_DIR, `ns-${ns}.netns`), ''); // what a kill between truncating and writing left
    expect(run('bridge', 'add', 'brid2')).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(run('bridge', 'show', '--json').stdout).map((b: { name: string }) => b.name).sort()).toEqual(['br0', 'br1', 'brid', 'brid2']);
    expect(readFileSync(join(LOCK_DIR, `ns-${ns}.netns`), 'utf8')).toMatch(/^cookie:\d+\n$/); // recorded again, whole
    for (const b of ['brid', 'brid2']) expect(run('bridge', 'del', b)).toMatchObject({ code: 0 });
  });

  it('a namespace whose state is gone leaves no lock or identity record in /run', () => {
    const ns2 = netns('hygrun');
    const files = () => ['lock', 'netns'].filter((x) => existsSync(join(LOCK_DIR, `ns-${ns2}.${x}`)));
    expect(xdpnet(['--netns', ns2, 'bridge', 'add', 'b0'])).toMatchObject({ code: 0, stderr: '' });
    expect(files()).toEqual(['lock', 'netns']); // state, so both stay
    expect(xdpnet(['--netns', ns2, 'bridge', 'del', 'b0'])).toMatchObject({ code: 0, stderr: '' });
    expect(existsSync(`/sys/fs/bpf/xdpnet/ns-${ns2}`)).toBe(false);
    expect(files()).toEqual([]);
  });

  it('a command waiting on a lock file that its holder removed waits again, for the file now at the path', async () => {
    const ns3 = netns('hyglk');
    const file = join(LOCK_DIR, `ns-${ns3}.lock`);
    writeFileSync(file, '', { mode: 0o600 });
    const exited = (p: ReturnType<typeof spawn>) => new Promise<number>((resolve) => p.on('exit', () => resolve(Date.now())));
    // flock(1) hands the locked fd to its command too: the holder is killed as a process group
    const holder = spawn('flock', [file, 'sleep', '600'], { stdio: 'ignore', detached: true });
    const holderExit = exited(holder);
    try {
      await new Promise((r) => setTimeout(r, 200));
      const w = spawn(process.execPath, [CLI, '--netns', ns3, 'bridge', 'add', 'b0'], { stdio: ['ignore', 'ignore', 'pipe'] });
      const wExit = exited(w);
      await new Promise<void>((resolve) => w.stderr!.on('data', (d) => String(d).includes('waiting for another') && resolve())); // w holds the old file open
      unlinkSync(file); // what a holder whose instance is gone does last
      const newcomer = spawn('flock', [file, 'sleep', String(slow(2000) / 1000)], { stdio: 'ignore' }); // locks the new file at once
      const newcomerExit = exited(newcomer);
      await new Promise((r) => setTimeout(r, 200));
      process.kill(-holder.pid!, 'SIGTERM');
      await holderExit;
      // w may take the lock only once the newcomer is done: a lock on the removed file excludes no one
      const [tw, tn] = await Promise.all([wExit, newcomerExit]);
      expect(tw).toBeGreaterThanOrEqual(tn);
    } finally {
      try { process.kill(-holder.pid!, 'SIGKILL'); } catch { /* gone */ }
    }
    expect(xdpnet(['--netns', ns3, 'bridge', 'show', '--json'])).toMatchObject({ code: 0, stdout: expect.stringContaining('"b0"') });
    expect(xdpnet(['--netns', ns3, 'bridge', 'del', 'b0'])).toMatchObject({ code: 0 });
  }, slow(60_000));

  it('the state of a deleted namespace: status reports it, a new namespace of the same name does not inherit it, the daemon removes it', async () => {
    sh('ip', ['netns', 'del', ns]);
    const st = xdpnet(['status']);
    expect(st.code).toBe(0);
    expect(st.stderr).toContain(`note: stale state ${dir()}: network namespace ${ns} no longer exists (\`xdpnet daemon\` removes it)\n`);
    for (const cmd of ['status', 'stats']) { // every instance: the stale one is the same note, not an error, and not shown
      const all = xdpnet([cmd, '--all-namespaces', '--json']);
      expect(all.code).toBe(0);
      expect(all.stderr).toContain(`note: stale state ${dir()}: network namespace ${ns} no longer exists (\`xdpnet daemon\` removes it)\n`);
      expect(all.stderr).not.toContain(`xdpnet: ns-${ns}`);
      expect(JSON.parse(all.stdout).some((r: { netns: string }) => r.netns === `ns-${ns}`)).toBe(false);
    }
    sh('ip', ['netns', 'add', ns]); // same name, another namespace
    const show = run('bridge', 'show');
    expect(show).toMatchObject({ code: 0, stdout: 'no bridges\n' });
    expect(show.stderr).toMatch(/^note: ignoring stale state .*: network namespace .* was deleted and made again; this state was the old one's\n$/);
    expect(existsSync(dir())).toBe(true); // readers write nothing

    const d = spawn(process.execPath, [CLI, '--verbose', 'daemon', '--interval', '0.2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    d.stdout.on('data', (b) => (out += b));
    await new Promise<void>((resolve) => d.stdout.on('data', () => out.includes(`ns-${ns} removed:`) && resolve()));
    d.kill('SIGTERM');
    await new Promise((resolve) => d.on('exit', resolve));
    expect(existsSync(dir())).toBe(false);
    expect(['lock', 'netns'].filter((x) => existsSync(join(LOCK_DIR, `ns-${ns}.${x}`)))).toEqual([]); // nor its files in /run
    expect(run('bridge', 'add', 'br0')).toMatchObject({ code: 0, stderr: '' }); // a fresh start
    expect(run('bridge', 'show', '--json')).toMatchObject({ code: 0, stderr: '' });
  });
});
