// Podman fenced in, for the demo and the e2e tests: its own containers.conf
// (CONTAINERS_CONF: /etc is untouched), storage and CNI config/plugin dirs in a
// temporary dir, and it runs inside a network namespace the caller made, so
// bridges, routes, iptables and forwarding settings (ours or the reference
// plugins') never reach the real host. The image is busybox-static, imported.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const IMAGE = 'localhost/xnbusy:latest';
const BUSYBOX = '/bin/busybox';

/** Why podman cannot run here, or undefined when it can. */
export function podmanMissing(): string | undefined {
  for (const [what, path] of [['podman', '/usr/bin/podman'], ['runc', '/usr/sbin/runc'],
    ['host-local (containernetworking-plugins)', '/usr/lib/cni/host-local'], ['busybox-static', BUSYBOX]] as const) {
    if (!existsSync(path)) return `${what} is not installed (make setup installs it)`;
  }
  if (process.getuid?.() !== 0) return 'podman with CNI networks needs root';
  return undefined;
}

/**
 * A container cannot get rlimits above its caller's (root on this kind of
 * machine lacks CAP_SYS_RESOURCE) and podman's defaults are higher: these are
 * ordinary limits. NET_RAW lets busybox ping.
 */
export const RUN_FLAGS = ['--cap-add', 'NET_RAW', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];

export interface Podman {
  dir: string;
  /** podman ARGS inside the host namespace; throws with podman's stderr on failure. */
  run(args: string[], timeout?: number): string;
  /** The same without waiting (parallel starts): the exit code and output. */
  start(args: string[]): Promise<{ code: number; out: string }>;
  conflist(name: string, plugins: object[]): void;
  ip(container: string, network: string): string;
  close(): void;
}

/** plugin: the xdpnet-cni executable to offer as type "xdpnet". */
export function podman(hostNs: string, plugin: string): Podman {
  const dir = mkdtempSync(join(tmpdir(), 'xnpod-'));
  for (const d of ['bin', 'net.d', 'rootfs/bin', 'rootfs/www']) mkdirSync(join(dir, d), { recursive: true });
  symlinkSync(plugin, join(dir, 'bin/xdpnet'));
  writeFileSync(join(dir, 'containers.conf'), `[network]
network_backend = "cni"
cni_plugin_dirs = ["${dir}/bin", "/usr/lib/cni"]
network_config_dir = "${dir}/net.d"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
`);
  const env = { ...process.env, CONTAINERS_CONF: join(dir, 'containers.conf') };
  const base = [`--net=/run/netns/${hostNs}`, 'podman', '--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'),
    '--storage-driver', 'vfs', '--tmpdir', join(dir, 'tmp')];
  const run = (args: string[], timeout = 120_000) => {
    try {
      return execFileSync('nsenter', [...base, ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout });
    } catch (e) {
      throw new Error(`podman ${args.join(' ')}: ${(e as { stderr?: string }).stderr ?? (e as Error).message}`);
    }
  };
  const close = () => {
    spawnSync('nsenter', [...base, 'rm', '-af', '-t', '0'], { env, timeout: 120_000 });
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    copyFileSync(BUSYBOX, join(dir, 'rootfs/bin/busybox'));
    for (const a of ['sh', 'ping', 'httpd', 'sleep', 'nc', 'ip', 'cat', 'printf']) symlinkSync('busybox', join(dir, 'rootfs/bin', a));
    writeFileSync(join(dir, 'rootfs/www/index.html'), 'hello from a container\n');
    execFileSync('tar', ['-C', join(dir, 'rootfs'), '-cf', join(dir, 'rootfs.tar'), '.']);
    run(['import', join(dir, 'rootfs.tar'), IMAGE]);
  } catch (e) {
    close();
    throw e;
  }
  return {
    dir,
    run,
    start: (args) => new Promise((resolve) => {
      const p = spawn('nsenter', [...base, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d) => { out += d; });
      p.stderr.on('data', (d) => { out += d; });
      p.on('close', (code) => resolve({ code: code ?? -1, out }));
    }),
    conflist: (name, plugins) => writeFileSync(join(dir, 'net.d', `${name}.conflist`), JSON.stringify({ cniVersion: '1.0.0', name, plugins })),
    ip: (c, net) => run(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, c]).trim(),
    close,
  };
}
