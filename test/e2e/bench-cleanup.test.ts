// The bench leaves nothing behind when a row fails half-way: a TCP row whose
// iperf3 client fails (a stand-in on PATH that also reports the congestion
// control it found in its namespace) after the namespaces, xdpnet's state, the
// iperf3 server and the host's allowed congestion controls were set up.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, sh } from '../helpers/sys.js';

const ALLOWED = '/proc/sys/net/ipv4/tcp_allowed_congestion_control';

describe('bench cleanup', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'xdpnet-bench-fail-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('a failed TCP row removes its namespaces, xdpnet state and processes, and restores the host sysctl', () => {
    const realIperf = sh('sh', ['-c', 'command -v iperf3']).trim();
    const serverPid = join(tmp, 'server.pid');
    writeFileSync(join(tmp, 'iperf3'), `#!/bin/sh
case " $* " in *" -s "*) echo $$ > ${serverPid}; exec ${realIperf} "$@";; esac
echo "stand-in iperf3 client: cc=$(cat /proc/sys/net/ipv4/tcp_congestion_control)" >&2
exit 1
`);
    chmodSync(join(tmp, 'iperf3'), 0o755);
    const allowedBefore = readFileSync(ALLOWED, 'utf8');

    const r = spawnSync(process.execPath, [join(ROOT, 'dist/bench/main.js'), '--only', 'tcp-xdpnet-bridge', '--reps', '1', '--duration', '1'],
      { encoding: 'utf8', env: { ...process.env, PATH: `${tmp}:${process.env.PATH}` }, timeout: 60_000 });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/bench: iperf3 client failed \(exit 1\)/);
    // cubic was set in the container's namespace, whatever the host allowed before
    expect(r.stderr).toContain('stand-in iperf3 client: cc=cubic');
    if (!allowedBefore.split(/\s+/).includes('cubic')) expect(r.stderr).toMatch(/TCP rows: cubic added to net\.ipv4\.tcp_allowed_congestion_control/);

    const tag = `xnb-${r.pid}-`;
    expect(readFileSync(ALLOWED, 'utf8')).toBe(allowedBefore);
    expect(sh('ip', ['netns', 'list'])).not.toContain(tag);
    const states = existsSync('/sys/fs/bpf/xdpnet') ? readdirSync('/sys/fs/bpf/xdpnet') : [];
    expect(states.filter((d) => d.startsWith(`ns-${tag}`))).toEqual([]);
    expect(existsSync(`/run/xdpnet-bench/cc-${r.pid}.json`)).toBe(false);
    const pid = Number(readFileSync(serverPid, 'utf8'));
    expect(pid).toBeGreaterThan(0);
    // the server was killed with its process group: gone, or dead and not yet reaped by init
    const state = existsSync(`/proc/${pid}/stat`) ? /\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1] : 'gone';
    expect(['gone', 'Z']).toContain(state);
  });
});
