// A real etcd (Debian's etcd-server) for the e2e tests and the agent bench: 127.0.0.1 only, free
// ports, a temporary data dir; stop() kills it by PID and removes the dir. The dir is on tmpfs
// where there is one: every write waits for a WAL fsync, and a busy disk's fsync latency would
// read in the tests as the agents' delay.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export class TestEtcd {
  proc?: ChildProcess;
  readonly dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'xdpnet-etcd-'));
  log = '';
  clientPort = 0;
  peerPort = 0;

  get url(): string {
    return `http://127.0.0.1:${this.clientPort}`;
  }

  /** Starts (or restarts, same ports and data) etcd and waits until it answers. */
  async start(): Promise<void> {
    if (!this.clientPort) {
      this.clientPort = await freePort();
      this.peerPort = await freePort();
    }
    const peer = `http://127.0.0.1:${this.peerPort}`;
    this.proc = spawn('etcd', [
      '--name', 'xdpnet-test', '--data-dir', join(this.dir, 'data'),
      '--listen-client-urls', this.url, '--advertise-client-urls', this.url,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `xdpnet-test=${peer}`,
      '--log-level', 'warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (d) => { this.log += d; });
    this.proc.stderr!.on('data', (d) => { this.log += d; });
    for (let i = 0; i < 100; i++) {
      try {
        const r = await fetch(`${this.url}/health`);
        if (r.ok && ((await r.json()) as { health: string }).health === 'true') return;
      } catch {
        // not up yet
      }
      if (this.proc.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`etcd did not start: ${this.log.slice(-2000)}`);
  }

  /** Kills it by PID and waits for the exit (data dir kept for a restart). */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
