// `make demo`: the main job on an embedded default topology. Two "containers"
// (namespaces) reach each other through a "host" namespace that routes; xdpnet
// is attached to the host's ports (XDP on one, tc on the other), real traffic
// flows (ping, then an iperf3 TCP stream), and xdpnet's own status and stats
// are shown. Everything is removed at the end, also on Ctrl-C or failure.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const tag = `xd${process.pid}`;
const ns = { host: `${tag}-host`, c1: `${tag}-c1`, c2: `${tag}-c2` };
const made: string[] = [];

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function step(title: string): void {
  console.log(`\n\x1b[1m== ${title}\x1b[0m`);
}
function xdpnet(args: string[]): void {
  console.log(`$ xdpnet ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  process.stdout.write(r.stdout + r.stderr);
  if (r.status !== 0) throw new Error(`xdpnet ${args.join(' ')} failed`);
}

function build(): void {
  for (const n of Object.values(ns)) {
    run('ip', ['netns', 'add', n]);
    made.push(n);
    run('ip', ['-n', n, 'link', 'set', 'lo', 'up']);
  }
  run('ip', ['netns', 'exec', ns.host, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  for (const [i, c] of [[1, ns.c1], [2, ns.c2]] as const) {
    run('ip', ['-n', ns.host, 'link', 'add', `port${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', c]);
    run('ip', ['-n', ns.host, 'addr', 'add', `10.77.${i}.1/24`, 'dev', `port${i}`]);
    run('ip', ['-n', c, 'addr', 'add', `10.77.${i}.2/24`, 'dev', 'eth0']);
    run('ip', ['-n', ns.host, 'link', 'set', `port${i}`, 'up']);
    run('ip', ['-n', c, 'link', 'set', 'eth0', 'up']);
    run('ip', ['-n', c, 'route', 'add', 'default', 'via', `10.77.${i}.1`]);
  }
}

function teardown(): void {
  spawnSync(process.execPath, [CLI, '--netns', ns.host, 'detach', '--all'], { stdio: 'ignore' });
  for (const n of made.splice(0)) spawnSync('ip', ['netns', 'del', n]);
}

async function iperf(seconds: number): Promise<string> {
  const server = spawn('ip', ['netns', 'exec', ns.c2, 'iperf3', '-s', '-1', '-B', '10.77.2.2'], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 500));
    const out = run('ip', ['netns', 'exec', ns.c1, 'iperf3', '-c', '10.77.2.2', '-t', String(seconds), '-J']);
    const bps = JSON.parse(out).end.sum_received.bits_per_second as number;
    return `${(bps / 1e9).toFixed(2)} Gbit/s`;
  } finally {
    server.kill();
  }
}

async function main(): Promise<void> {
  process.on('SIGINT', () => {
    teardown();
    process.exit(130);
  });
  try {
    step('topology: c1 (10.77.1.2) <-> host (routes) <-> c2 (10.77.2.2), all network namespaces');
    build();
    step('attach xdpnet to the host side of each container link');
    xdpnet(['--netns', ns.host, 'attach', 'port1']);
    xdpnet(['--netns', ns.host, 'attach', 'port2', '--hook', 'tc']);
    xdpnet(['--netns', ns.host, 'status']);
    step('real traffic: ping c1 -> c2, then an iperf3 TCP stream for 3 s');
    console.log(run('ip', ['netns', 'exec', ns.c1, 'ping', '-c', '5', '-i', '0.2', '10.77.2.2']).trim().split('\n').slice(-2).join('\n'));
    console.log(`iperf3 c1 -> c2: ${await iperf(3)}`);
    step('what xdpnet counted (per interface, summed over CPUs)');
    xdpnet(['--netns', ns.host, 'stats']);
    step('clean up');
    xdpnet(['--netns', ns.host, 'detach', '--all']);
  } finally {
    teardown();
  }
  console.log('demo done: namespaces removed, nothing left on bpffs');
}

main().catch((e) => {
  console.error(`demo failed: ${(e as Error).message}`);
  process.exitCode = 1;
});
