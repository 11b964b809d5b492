// `make demo`: the main job on an embedded default topology. Three
// "containers" (namespaces) sit on an xdpnet bridge in a "host" namespace, no
// Linux bridge anywhere; the bridge has a host address like docker0. Real
// traffic flows (ping between containers and to the host, an iperf3 TCP
// stream), then xdpnet shows its bridge, FDB and counters. Everything is
// removed at the end, also on Ctrl-C or failure.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const tag = `xd${process.pid}`;
const host = `${tag}-host`;
const containers = [1, 2, 3].map((i) => ({ ns: `${tag}-c${i}`, port: `veth${i}`, ip: `10.77.0.1${i}` }));
const made: string[] = [];

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function step(title: string): void {
  console.log(`\n\x1b[1m== ${title}\x1b[0m`);
}
function xdpnet(args: string[]): void {
  console.log(`$ xdpnet ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [CLI, '--netns', host, ...args], { encoding: 'utf8' });
  process.stdout.write(r.stdout + r.stderr);
  if (r.status !== 0) throw new Error(`xdpnet ${args.join(' ')} failed`);
}

function build(): void {
  for (const n of [host, ...containers.map((c) => c.ns)]) {
    run('ip', ['netns', 'add', n]);
    made.push(n);
    run('ip', ['-n', n, 'link', 'set', 'lo', 'up']);
  }
  for (const c of containers) {
    run('ip', ['-n', host, 'link', 'add', c.port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', c.ns]);
    run('ip', ['-n', c.ns, 'addr', 'add', `${c.ip}/24`, 'dev', 'eth0']);
    run('ip', ['-n', host, 'link', 'set', c.port, 'up']);
    run('ip', ['-n', c.ns, 'link', 'set', 'eth0', 'up']);
    run('ip', ['-n', c.ns, 'route', 'add', 'default', 'via', '10.77.0.1']);
  }
}

function teardown(): void {
  const cli = (...a: string[]) => spawnSync(process.execPath, [CLI, '--netns', host, ...a], { stdio: 'ignore' });
  cli('detach', '--all');
  cli('bridge', 'del', 'br0', '--force');
  for (const n of made.splice(0)) spawnSync('ip', ['netns', 'del', n]);
}

function ping(from: (typeof containers)[number], to: string): void {
  const out = run('ip', ['netns', 'exec', from.ns, 'ping', '-c', '3', '-i', '0.2', to]);
  console.log(`${from.ip} -> ${to}: ${/(\d+) received/.exec(out)?.[1]}/3 replies, ${/= [\d.]+\/([\d.]+)/.exec(out)?.[1]} ms avg`);
}

async function iperf(seconds: number): Promise<string> {
  const [a, , c] = containers;
  const server = spawn('ip', ['netns', 'exec', c.ns, 'iperf3', '-s', '-1', '-B', c.ip], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 500));
    const out = run('ip', ['netns', 'exec', a.ns, 'iperf3', '-c', c.ip, '-t', String(seconds), '-J']);
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
    step('topology: containers c1..c3 (10.77.0.11-13) on veth ports of a "host" namespace');
    build();
    step('an xdpnet bridge with a host address (like docker0), the veths as its ports (tc hook)');
    xdpnet(['bridge', 'add', 'br0', '--address', '10.77.0.1/24']);
    for (const c of containers) xdpnet(['attach', c.port, '--bridge', 'br0']);
    xdpnet(['status']);
    step('real traffic: containers ping each other and the host, then one iperf3 TCP stream');
    ping(containers[0], containers[1].ip);
    ping(containers[1], containers[2].ip);
    ping(containers[2], '10.77.0.1');
    console.log(`iperf3 c1 -> c3: ${await iperf(3)}`);
    step('what the bridge learned and counted');
    xdpnet(['bridge', 'show']);
    xdpnet(['fdb', 'show']);
    xdpnet(['stats']);
    step('clean up');
    xdpnet(['detach', '--all']);
    xdpnet(['bridge', 'del', 'br0']);
  } finally {
    teardown();
  }
  console.log('demo done: namespaces removed, nothing left on bpffs');
}

main().catch((e) => {
  console.error(`demo failed: ${(e as Error).message}`);
  process.exitCode = 1;
});
