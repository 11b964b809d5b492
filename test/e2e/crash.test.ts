// kill -9 at random points of state-changing commands, under traffic. After
// each kill the command is run again (it must finish, or say the work is
// already done) and then undone; the state must then be exactly what it was
// before the trial: the bridge and NAT configuration maps byte for byte (but
// what traffic changes: learned entries, counters, conntrack), the link pins,
// the counter slots and the namespace's interfaces. So nothing leaks (links,
// pins, veths, slots, locks) and the next command always finds a state it can
// work with. A ping between two containers (bridged) and one from a container
// to the outside (masqueraded, an established conntrack flow) run throughout
// and must still answer at the end. A command that removes something (`pre`)
// gets it made before the kill. XDPNET_CRASH_TRIALS sets the count (`make
// crash`: 100+).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bridge, BRIDGE, FdbEntry, VXLAN } from '../../src/objects/bridge.js';
import { u32 } from '../../src/objects/codec.js';
import { NAT } from '../../src/objects/nat.js';
import { STATS_MAPS } from '../../src/objects/stats.js';
import { BpfMap } from '../../src/sys/libbpf.js';
import { cleanup, CLI, cliTimeoutMs, inNs, netns, nsIfindex, sh, slow, veth, xdpnet } from '../helpers/sys.js';

const TRIALS = Number(process.env.XDPNET_CRASH_TRIALS ?? 11); // each command once in `make test`; `make crash` runs 100

describe('crash safety: kill -9 at random points of state-changing commands', () => {
  let h: string;
  let c1: string;
  let tmp: string;
  const dir = () => `/sys/fs/bpf/xdpnet/ns-${h}`;

  /** Everything a command may change but traffic does not, as comparable text. */
  function snapshot(): Record<string, string[]> {
    const hex = (name: string, keep: (k: Buffer, v: Buffer) => string | undefined = (k, v) => `${k.toString('hex')}=${v.toString('hex')}`) =>
      (BpfMap.usePin(join(dir(), 'maps', name), (m) => m.entries().map(([k, v]) => keep(k, v)).filter((x): x is string => x !== undefined).sort()) ?? []);
    const out: Record<string, string[]> = {};
    for (const name of Object.values(BRIDGE.maps)) {
      if (name === BRIDGE.maps.fdb) out[name] = hex(name, (k, v) => (FdbEntry.decode(v).flags ? `${k.toString('hex')}=${v.toString('hex')}` : undefined));
      else if (name === BRIDGE.maps.bridges) out[name] = hex(name, (k, v) => `${k.toString('hex')}=${JSON.stringify({ ...Bridge.decode(v), learned: 0 }, (_, x) => (Buffer.isBuffer(x) || x?.type === 'Buffer' ? Buffer.from(x).toString('hex') : x))}`);
      else out[name] = hex(name);
    }
    for (const name of [NAT.maps.snat, NAT.maps.portmap, STATS_MAPS.ifSlots, ...Object.values(VXLAN.maps)]) out[name] = hex(name);
    out.links = existsSync(join(dir(), 'links')) ? readdirSync(join(dir(), 'links')).sort() : [];
    out.pins = existsSync(join(dir(), 'maps')) ? readdirSync(join(dir(), 'maps')).sort() : [];
    out.ifaces = (JSON.parse(sh('ip', ['-n', h, '-j', 'link', 'show'])) as Array<{ ifname: string; xdp?: unknown }>).map((l) => `${l.ifname}${l.xdp ? ' xdp' : ''}`).sort();
    return out;
  }

  const run = (args: string[]) => xdpnet(['--netns', h, ...args]);

  /** Starts the command and kills it with SIGKILL after delayMs (it may have finished by then). */
  function killed(args: string[], delayMs: number): Promise<boolean> {
    const p = spawn(process.execPath, [CLI, '--netns', h, ...args], { stdio: 'ignore' });
    const t = setTimeout(() => p.kill('SIGKILL'), delayMs);
    return new Promise((resolve) => p.on('exit', (_code, signal) => {
      clearTimeout(t);
      resolve(signal === 'SIGKILL');
    }));
  }

  // Each operation: what a trial kills, runs again to completion, and undoes;
  // a removal gets what it removes made first (pre) and needs no undo.
  const masq = ['--src', '10.77.0.128/25', '--out', 'up0']; // beside the base rule for 10.77.0.0/24
  const vx = ['--bridge', 'br0', '--vni', '4242', '--local', '10.89.0.1', '--dev', 'up1'];
  const pm = ['--proto', 'tcp', '--host-port', '18080'];
  const OPS: Array<{ name: string; pre?: string[]; do: string[]; done: RegExp; undo?: string[] }> = [
    { name: 'bridge add', do: ['bridge', 'add', 'brk', '--address', '10.78.0.1/24'], done: /bridge brk already exists/, undo: ['bridge', 'del', 'brk', '--force'] },
    { name: 'bridge del', pre: ['bridge', 'add', 'brk', '--address', '10.78.0.1/24'], do: ['bridge', 'del', 'brk', '--force'], done: /brk (not found|does not exist)|no bridge/ },
    { name: 'attach', do: ['attach', 's1', '--bridge', 'br0'], done: /already attached/, undo: ['detach', 's1'] },
    { name: 'attach xdp', do: ['attach', 's1', '--bridge', 'br0', '--hook', 'xdp'], done: /already attached/, undo: ['detach', 's1'] },
    { name: 'fdb load', do: ['fdb', 'load', 'FDB'], done: /^$/, undo: ['fdb', 'flush', '--port', 's2'] },
    { name: 'vxlan add', do: ['vxlan', 'add', ...vx], done: /VNI 4242 already exists/, undo: ['vxlan', 'del', '--vni', '4242'] },
    { name: 'vxlan del', pre: ['vxlan', 'add', ...vx], do: ['vxlan', 'del', '--vni', '4242'], done: /no VTEP with VNI 4242/ },
    { name: 'nat masquerade add', do: ['nat', 'masquerade', 'add', ...masq], done: /already exists/, undo: ['nat', 'masquerade', 'del', ...masq] },
    { name: 'nat masquerade del', pre: ['nat', 'masquerade', 'add', ...masq], do: ['nat', 'masquerade', 'del', ...masq], done: /no masquerade rule/ },
    { name: 'nat portmap add', do: ['nat', 'portmap', 'add', ...pm, '--to', '10.77.0.3:80', '--out', 'up0'], done: /already mapped/, undo: ['nat', 'portmap', 'del', ...pm, '--out', 'up0'] },
    { name: 'nat portmap del', pre: ['nat', 'portmap', 'add', ...pm, '--to', '10.77.0.3:80', '--out', 'up0'], do: ['nat', 'portmap', 'del', ...pm, '--out', 'up0'], done: /no mapping of tcp port 18080/ },
  ];

  beforeAll(() => {
    h = netns('crh');
    tmp = mkdtempSync(join(tmpdir(), 'xdpnet-crash-'));
    const o = netns('cro');
    veth(h, 'up0', o, 'eth0', '10.88.0.1/24', '10.88.0.2/24');
    veth(h, 'up1', o, 'eth1', '10.89.0.1/24', '10.89.0.2/24'); // the VXLAN underlay
    for (const p of ['s1', 's2']) veth(h, p, h, `${p}x`);
    const cs: string[] = [];
    for (const [i, addr] of ['10.77.0.2/24', '10.77.0.3/24'].entries()) {
      const c = netns(`crc${i + 1}`);
      veth(h, `k${i + 1}`, c, 'eth0', undefined, addr);
      cs.push(c);
    }
    [c1] = cs;
    for (const c of cs) sh('ip', ['-n', c, 'route', 'add', 'default', 'via', '10.77.0.1']);
    for (const args of [['bridge', 'add', 'br0', '--address', '10.77.0.1/24'], ['attach', 'k1', '--bridge', 'br0'], ['attach', 'k2', '--bridge', 'br0'], ['attach', 's2', '--bridge', 'br0'],
      ['nat', 'masquerade', 'add', '--src', '10.77.0.0/24', '--out', 'up0']]) {
      expect(run(args)).toMatchObject({ code: 0, stderr: '' });
    }
    const rows = Array.from({ length: 3000 }, (_, i) => ({ mac: `02:30:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`, bridge: 'br0', port: 's2' }));
    writeFileSync(join(tmp, 'fdb.json'), JSON.stringify(rows));
    for (const op of OPS) op.do = op.do.map((a) => (a === 'FDB' ? join(tmp, 'fdb.json') : a));
  }, slow(600_000)); // a dozen CLI runs, each allowed cliTimeoutMs() on a loaded machine
  afterAll(() => {
    cleanup();
    rmSync(tmp, { recursive: true, force: true });
  });

  it(`${TRIALS} trials: the command run again finishes, its undo restores the state exactly, traffic keeps flowing`, async () => {
    const ping = spawn('ip', ['netns', 'exec', c1, 'ping', '-i', '0.05', '-q', '10.77.0.3'], { stdio: ['ignore', 'pipe', 'pipe'] });
    // One echo identifier for the whole run: one masqueraded conntrack flow, established before the first trial.
    const out = spawn('ip', ['netns', 'exec', c1, 'ping', '-i', '0.05', '-q', '10.88.0.2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let said = '';
    out.stdout.on('data', (d) => { said += d; });
    out.stderr.on('data', (d) => { said += d; });
    /** Echo replies the masqueraded ping got so far (SIGQUIT makes ping print "received/sent packets"). */
    const replies = async (): Promise<number> => {
      out.kill('SIGQUIT');
      await new Promise((r) => setTimeout(r, 300));
      const m = [...said.matchAll(/(\d+)\/(\d+) packets/g)].pop();
      return m ? Number(m[1]) : 0;
    };
    try {
      expect(inNs(c1, 'ping', ['-c', '2', '-W', '2', '10.77.0.3']).status).toBe(0);
      expect(inNs(c1, 'ping', ['-c', '2', '-W', '2', '10.88.0.2']).status).toBe(0);
      // Once through each first: NAT's maps (conntrack) stay pinned after its last rule goes, by design.
      // Each command's own run time, so that kills land inside it on a fast machine and a slow one alike.
      const took = new Map<string, number>();
      for (const op of OPS) {
        for (const args of [op.pre, op.do, op.undo]) {
          const t0 = Date.now();
          if (args) expect(run(args)).toMatchObject({ code: 0, stderr: '' });
          if (args === op.do) took.set(op.name, Date.now() - t0);
        }
      }
      const base = snapshot();
      const failures: string[] = [];
      let kills = 0;
      for (let i = 0; i < TRIALS; i++) {
        const op = OPS[i % OPS.length];
        const delay = 20 + Math.floor(Math.random() * Math.max(50, 0.9 * took.get(op.name)! - 20)); // within the command's run time
        if (op.pre) {
          const pre = run(op.pre);
          if (pre.code !== 0) failures.push(`#${i} ${op.name}, before: ${pre.stderr.trim()}`);
        }
        if (await killed(op.do, delay)) kills++;
        const again = run(op.do);
        if (again.code !== 0 && !op.done.test(again.stderr)) failures.push(`#${i} ${op.name} (killed at ${delay} ms), run again: ${again.stderr.trim()}`);
        const undo = op.undo ? run(op.undo) : { code: 0, stderr: '' };
        if (undo.code !== 0) failures.push(`#${i} ${op.name} (killed at ${delay} ms), undo: ${undo.stderr.trim()}`);
        const now = snapshot();
        for (const k of Object.keys(base)) {
          if (JSON.stringify(now[k]) !== JSON.stringify(base[k])) failures.push(`#${i} ${op.name} (killed at ${delay} ms): ${k} differs: ${JSON.stringify(now[k]).slice(0, 300)}`);
        }
        if (failures.length > 5) break;
      }
      console.log(`crash trials: ${TRIALS}, killed mid-command: ${kills}, inconsistencies: ${failures.length}`);
      expect(failures).toEqual([]);
      expect(kills).toBeGreaterThan(TRIALS / 2); // the kills landed inside the commands, not after them
      expect(inNs(c1, 'ping', ['-c', '3', '-W', '2', '10.77.0.3']).status).toBe(0); // the established path still carries traffic
      const first = await replies();
      await new Promise((r) => setTimeout(r, 2000));
      const got = (await replies()) - first;
      console.log(`masqueraded ping, one flow through every trial: ${first} replies before the last 2 s, ${got} in them`);
      expect(first).toBeGreaterThan(0);
      expect(got).toBeGreaterThan(10); // ~40 sent: the established NAT flow still translates
    } finally {
      ping.kill('SIGTERM');
      out.kill('SIGTERM');
    }
  }, (60_000 + TRIALS * 6_000) * Math.max(1, cliTimeoutMs() / 30_000));

  // The two windows of the overlay commands, made on purpose rather than hit by chance: what a kill
  // leaves there, and that the next command finds it and finishes.
  const uplinkPins = () => readdirSync(join(dir(), 'links')).filter((f) => f.startsWith(`${nsIfindex(h, 'up1')}-`));
  const ok = (args: string[]) => expect(run(args)).toMatchObject({ code: 0, stderr: '' });

  it('vxlan add killed between linking the uplink and writing the VTEP: the next add takes the uplink over', () => {
    const base = snapshot();
    ok(['vxlan', 'add', ...vx]);
    for (const [name, key] of [[VXLAN.maps.vteps, u32(4242)], [VXLAN.maps.vlans, null], [VXLAN.maps.ports, null]] as const) {
      BpfMap.usePin(join(dir(), 'maps', name), (m) => (key ? m.delete(key) : [...m.keys()].forEach((k) => m.delete(k))));
    }
    expect(uplinkPins()).toHaveLength(1); // the uplink's link, with no VTEP on it
    ok(['vxlan', 'add', ...vx]);
    ok(['vxlan', 'del', '--vni', '4242']);
    expect(snapshot()).toEqual(base);
  });

  it('vxlan del killed after removing the uplink\'s link: running it again frees the counter slot too', () => {
    const base = snapshot();
    ok(['vxlan', 'add', ...vx]);
    for (const f of uplinkPins()) rmSync(join(dir(), 'links', f)); // the link gone, its slot not yet
    ok(['vxlan', 'del', '--vni', '4242']);
    expect(snapshot()).toEqual(base);
  });
});
