// Hitless upgrade under live traffic. A "host" namespace runs a bridge with
// four containers: two tc (tcx) ports, one XDP port (its frames leave through
// the devmap's egress program) and one tc port on a clsact filter; NAT
// masquerades the bridge out of an uplink to an "outside" namespace (tc on
// the bridge's host interface, XDP on the uplink). Sequence-numbered UDP
// streams cross every kind of hook, one through NAT and back, and a TCP
// connection through NAT stays open. Then `xdpnet upgrade` runs
// XDPNET_UPGRADE_ROUNDS times (100 by default), each time to another build (a
// build salt makes the same object a new build), then is killed midway and
// re-run, an attach finds an old build and upgrades, and a record that does
// not fit is refused. At the end: every frame sent arrived (both ends
// counted), the TCP connection never broke, the maps are the same maps (ids)
// with the same FDB and conntrack entries.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BRIDGE, DevmapVal, FdbEntry } from '../../src/objects/bridge.js';
import { decodeLayout, encodeLayout, encodeName, LAYOUT_MAP } from '../../src/objects/layout.js';
import { objectSet } from '../../src/objects/paths.js';
import { BpfMap } from '../../src/sys/libbpf.js';
import { cleanup, CLI, ROOT, sh, slow, tcFlavour, xdpnet } from '../helpers/sys.js';
import { natTopology, startIn as start, type Proc } from '../helpers/topology.js';

const ROUNDS = Number(process.env.XDPNET_UPGRADE_ROUNDS ?? 100);
const PPS = 1000;
const S = '198.51.100.8'; // a server outside
const SEQ = `${ROOT}test/helpers/seqstream.mjs`;
const PEER = `${ROOT}test/helpers/peer.mjs`;

/** Stops a stream end with SIGTERM and returns the JSON it prints last. */
function stop(x: Proc): Promise<Record<string, number>> {
  return new Promise((res) => {
    x.p.on('exit', () => res(JSON.parse(x.out().trim().split('\n').pop()!)));
    x.p.kill('SIGTERM');
  });
}

interface Status { iface: string; hook: string; tc: string | null; progId: number; nat: boolean }
interface Report { builds: Array<{ object: string; from: string[]; to: string }>; replaced: Array<{ kind: string; iface: string | null; hook: string; program: string; from: number; to: number }> }

describe('hitless upgrade: every program replaced in place under live traffic', () => {
  let h: string;
  let o: string;
  let c: string[] = [];
  const sinks: Record<string, Proc> = {};
  const senders: Record<string, Proc> = {};
  let tcp: Proc;
  const others: ChildProcess[] = [];
  const dir = () => `/sys/fs/bpf/xdpnet/ns-${h}`;
  /** The CLI with a build salt; a loaded machine can take long to verify three objects, so no 30 s limit. */
  const run = (args: string[], salt?: string) => {
    const r = spawnSync(process.execPath, [CLI, '--netns', h, ...args], { encoding: 'utf8', timeout: slow(300_000), env: { ...process.env, ...(salt ? { XDPNET_BUILD_SALT: salt } : {}) } });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  const okRun = (args: string[]) => {
    const r = run(args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };
  /**
   * Datagrams the kernel dropped at a full receive buffer in a namespace
   * (Udp RcvbufErrors): a receiver starved of CPU, not the dataplane, on a
   * machine shared with other test runs. Each namespace has one UDP receiver.
   */
  const rcvbufErrors = (ns: string): number => {
    const lines = sh('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Udp:'));
    const [names, values] = lines.map((l) => l.split(/\s+/).slice(1));
    return Number(values[names.indexOf('RcvbufErrors')]);
  };
  const status = (): Status[] => JSON.parse(okRun(['status', '--json']));
  const hooks = () => status().map((s) => `${s.iface} ${s.tc ? `tc (${s.tc})` : s.hook}`).sort();
  const mapIds = () => Object.fromEntries(readdirSync(join(dir(), 'maps')).map((m) => [m, BpfMap.usePin(join(dir(), 'maps', m), (x) => x.info.id)]));
  const fdb = () => BpfMap.usePin(join(dir(), 'maps', BRIDGE.maps.fdb), (m) => m.entries().map(([k, v]) => `${k.toString('hex')}>${FdbEntry.decode(v).ifindex}`).sort())!;
  const devmap = () => BpfMap.usePin(join(dir(), 'maps', BRIDGE.maps.txPorts), (m) => m.entries().map(([, v]) => DevmapVal.decode(v)))!;
  const tcpFlow = () => (JSON.parse(okRun(['conntrack', 'list', '--json', '--dst', S])) as Array<Record<string, unknown>>)
    .filter((f) => f.proto === 'tcp' && f.dport === 7000).map((f) => JSON.stringify({ ...f, age: undefined, expires: undefined, timeout: undefined }));
  const builds = () => (existsSync(join(dir(), 'progs')) ? readdirSync(join(dir(), 'progs')).sort() : []);
  /**
   * Frames the veths on a path dropped (rx and tx dropped of each interface, by
   * namespace and name): a veth whose peer runs XDP or NAPI has a 256-frame ring,
   * and a starved receiver's echo burst overflows it. Those drops are counted
   * by the kernel on the interface, so they are not the dataplane's.
   */
  const linkDrops = (): Record<string, number> => Object.fromEntries([h, o, ...c].flatMap((ns) =>
    (JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show'])) as Array<{ ifname: string; stats64: { rx: { dropped: number }; tx: { dropped: number } } }>)
      .map((l) => [`${ns === h ? 'h' : ns === o ? 'o' : `c${c.indexOf(ns) + 1}`}:${l.ifname}`, l.stats64.rx.dropped + l.stats64.tx.dropped])));
  /** XDP redirects the kernel refused (a veth's ring full: a burst into it), counted by xdpnet's observer under the interface the frame came in on. */
  const refused = (): Record<string, number> => Object.fromEntries(
    (JSON.parse(okRun(['stats', '--json'])) as { interfaces: Array<{ iface: string; drops: Record<string, number> }> })
      .interfaces.map((i) => [i.iface, i.drops['redirect-refused'] ?? 0]));
  /** Each path's XDP ingress: its refused redirects are counted losses, not silent ones. */
  const xdpIngress: Record<string, string> = { xdpTc: 'v3', echo: 'up0' };
  let before: { ids: Record<string, number | undefined>; fdb: string[]; tcp: string[]; rcvbuf: Record<string, number>; drops: Record<string, number>; refused: Record<string, number> };
  const receivers = () => ({ tcTc: c[1], xdpTc: c[0], clsactXdp: c[2], nat: o, echo: c[3] });
  const times: number[] = [];

  beforeAll(async () => {
    ({ host: h, outside: o, containers: c } = natTopology({
      tag: 'up', uplink: { host: '10.98.0.1', outside: '10.98.0.254' }, outside: [S], gateway: '172.18.0.1',
      containers: [1, 2, 3, 4].map((i) => `172.18.0.${i + 1}`), txChecksum: false,
    }));
    okRun(['bridge', 'add', 'br0', '--address', '172.18.0.1/16']);
    okRun(['attach', 'v1', '--bridge', 'br0']);
    okRun(['attach', 'v2', '--bridge', 'br0']);
    okRun(['attach', 'v3', '--bridge', 'br0', '--hook', 'xdp']);
    const clsact = xdpnet(['--netns', h, 'attach', 'v4', '--bridge', 'br0'], { XDPNET_TC: 'clsact' }); // this port only
    expect(clsact.code, clsact.stderr).toBe(0);
    okRun(['nat', 'masquerade', 'add', '--src', '172.18.0.0/16', '--out', 'up0']);
    // every neighbour and FDB entry in place before counting starts
    for (const [ns, dst] of [[c[0], '172.18.0.3'], [c[2], '172.18.0.2'], [c[3], '172.18.0.4'], [c[1], S], [c[0], S]]) {
      expect(spawnSync('ip', ['netns', 'exec', ns, 'ping', '-c', '2', '-i', '0.2', '-W', '2', dst]).status, `ping ${dst}`).toBe(0);
    }
    // the drop counters from before the first frame: \`sent\` counts from there too (read 500 ms into
    // the traffic, the kernel's refusals while the senders ramped up counted as frames the dataplane lost)
    const counters = { rcvbuf: Object.fromEntries(Object.entries(receivers()).map(([k, ns]) => [k, rcvbufErrors(ns)])), drops: linkDrops(), refused: refused() };
    sinks.tcTc = await start(c[1], SEQ, ['sink', '9001', '0.0.0.0']);
    sinks.xdpTc = await start(c[0], SEQ, ['sink', '9002', '0.0.0.0']);
    sinks.clsactXdp = await start(c[2], SEQ, ['sink', '9003', '0.0.0.0']);
    sinks.nat = await start(o, SEQ, ['sink', '9004', S, 'echo']);
    others.push((await start(o, PEER, ['tcp-server', '7000', S])).p);
    senders.tcTc = await start(c[0], SEQ, ['send', '172.18.0.3', '9001', String(PPS)]); // tcx port → tcx port
    senders.xdpTc = await start(c[2], SEQ, ['send', '172.18.0.2', '9002', String(PPS)]); // XDP port → devmap egress → tcx port
    senders.clsactXdp = await start(c[3], SEQ, ['send', '172.18.0.4', '9003', String(PPS)]); // clsact port → XDP port
    senders.nat = await start(c[3], SEQ, ['send', S, '9004', String(PPS)]); // bridge → NAT tc out, NAT XDP back
    tcp = await start(c[0], PEER, ['tcp-long', S, '7000']);
    await new Promise((r) => setTimeout(r, 500));
    before = { ids: mapIds(), fdb: fdb(), tcp: tcpFlow(), ...counters };
    expect(before.tcp).toHaveLength(1);
  }, slow(300_000));

  afterAll(() => {
    for (const x of [...Object.values(senders), ...Object.values(sinks), tcp]) x?.p.kill('SIGKILL');
    for (const p of others) p.kill('SIGKILL');
    cleanup();
  }, slow(300_000));

  it('programs are loaded once per instance: every attach after the first reuses the pinned build', () => {
    const set = objectSet().set === 'compat' ? '-compat' : ''; // kernels before 6.8 (6.1) run the compat objects
    expect(builds().map((b) => b.replace(/-[0-9a-f]{16}$/, ''))).toEqual(['bridge', 'nat', 'observe'].map((o) => o + set));
    const pinned = readdirSync(join(dir(), 'progs', builds()[0])).sort();
    expect(pinned).toEqual(['xn_br_egress', 'xn_br_tc', 'xn_br_xdp', 'xn_vx_uplink', 'xn_vx_uplink_tc']);
    // the four ports run the same two programs, loaded once
    const ids = new Set(status().filter((s) => !s.nat).map((s) => s.progId));
    expect(ids.size).toBe(2); // xn_br_tc (tcx and clsact ports), xn_br_xdp
    expect(new Set(devmap().map((d) => d.prog_fd)).size).toBe(1); // one egress program in every devmap entry
  }, slow(300_000));

  it(`${ROUNDS} upgrades in a row replace every program in place`, () => {
    const want = hooks();
    // xnp1: the bridge's host port (peer of br0, where NAT runs). v4 is on clsact; the other tc hooks
    // are too where the kernel has no tcx (6.1), so every tc hook there is a filter.
    const tc = tcFlavour();
    expect(want).toEqual(['br0 tc (TC)', 'up0 xdp', 'v1 tc (TC)', 'v2 tc (TC)', 'v3 xdp', 'v4 tc (clsact)', 'xnp1 tc (TC)'].map((x) => x.replace('TC', tc)));
    const filters = tc === 'clsact' ? ['br0', 'v1', 'v2', 'v4', 'xnp1'] : ['v4'];
    const ports = devmap().length;
    for (let i = 0; i < ROUNDS; i++) {
      const t0 = process.hrtime.bigint();
      const r = run(['upgrade', '--json'], `round${i}`);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      expect(r.code, r.stderr).toBe(0);
      const rep = JSON.parse(r.stdout) as Report;
      const swapped = rep.replaced.filter((x) => x.kind === 'link' || x.kind === 'filter');
      expect(swapped.map((x) => `${x.iface} ${x.hook}`).sort(), `round ${i}`).toEqual(want);
      expect(rep.replaced.filter((x) => x.kind === 'filter').map((x) => x.iface).sort()).toEqual(filters);
      expect(rep.replaced.filter((x) => x.kind === 'devmap')).toHaveLength(ports);
      expect(rep.replaced.filter((x) => x.kind === 'observer')).toHaveLength(2);
      expect(rep.builds.map((b) => b.object).sort()).toEqual(['bridge', 'nat', 'observe']);
      for (const x of rep.replaced) expect(x.to).not.toBe(x.from);
    }
    // what runs is what is pinned, one build an object
    expect(builds()).toHaveLength(3);
    const again = JSON.parse(run(['upgrade', '--json'], `round${ROUNDS - 1}`).stdout) as Report;
    expect(again).toEqual({ builds: [], replaced: [] });
    expect(run(['upgrade'], `round${ROUNDS - 1}`).stdout).toMatch(/^nothing to do/);
    const sorted = [...times].sort((a, b) => a - b);
    console.log(`upgrade: ${ROUNDS} runs, median ${sorted[sorted.length >> 1].toFixed(0)} ms, max ${sorted[sorted.length - 1].toFixed(0)} ms (CLI process included)`);
  }, slow(1_800_000));

  it('killed midway, an upgrade leaves working programs and the next run finishes it', async () => {
    for (const [i, delay] of [350, 500, 650, 800, 950].entries()) {
      const p = spawn(process.execPath, [CLI, '--netns', h, 'upgrade'], { stdio: 'ignore', env: { ...process.env, XDPNET_BUILD_SALT: `killed${i}` } });
      setTimeout(() => p.kill('SIGKILL'), delay);
      await new Promise((r) => p.on('exit', r));
      const r = run(['upgrade', '--json'], `killed${i}`);
      expect(r.code, r.stderr).toBe(0);
      // now every hook runs the one pinned build of its object
      expect(builds()).toHaveLength(3);
      const again = JSON.parse(run(['upgrade', '--json'], `killed${i}`).stdout) as Report;
      expect(again.replaced).toEqual([]);
    }
  }, slow(300_000));

  it('an attach that finds an older build running upgrades the instance first', () => {
    const old = status().map((s) => s.progId);
    sh('ip', ['-n', h, 'link', 'add', 'v9', 'type', 'veth', 'peer', 'name', 'v9x']);
    sh('ip', ['-n', h, 'link', 'set', 'v9', 'up']);
    sh('ip', ['-n', h, 'link', 'set', 'v9x', 'up']);
    const a = run(['attach', 'v9', '--bridge', 'br0'], 'attach-salt');
    expect(a.code, a.stderr).toBe(0);
    const now = status();
    for (const [i, id] of old.entries()) expect(now[i].progId).not.toBe(id); // every hook moved to the new build
    expect(JSON.parse(run(['upgrade', '--json'], 'attach-salt').stdout)).toEqual({ builds: [], replaced: [] });
    okRun(['detach', 'v9']);
  }, slow(300_000));

  it('a map whose layout differs from the record is refused before anything is touched', () => {
    const pin = join(dir(), 'maps', LAYOUT_MAP);
    const key = encodeName(BRIDGE.maps.fdb);
    const rec = BpfMap.usePin(pin, (m) => decodeLayout(key, m.lookup(key)!))!;
    const progs = () => status().map((s) => s.progId);
    const was = { progs: progs(), builds: builds(), devmap: devmap() };
    const tamper = (l: typeof rec) => BpfMap.usePin(pin, (m) => m.update(key, encodeLayout(l)));
    try {
      tamper({ ...rec, valueHash: '00'.repeat(8) });
      let r = run(['upgrade'], 'layout');
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/the installed bridge\.bpf\.o does not fit this instance's maps .*nothing was changed:\n\s+xn_fdb: value layout changed \(same 24 bytes/);
      expect(r.stderr).toMatch(/hint: no migration exists/);
      expect({ progs: progs(), builds: builds(), devmap: devmap() }).toEqual(was);
      tamper({ ...rec, valueSize: 32 });
      r = run(['upgrade'], 'layout');
      expect(r.stderr).toMatch(/xn_fdb: value size 32 → 24 bytes/);
      // an attach with that build refuses too, and leaves nothing
      r = run(['attach', 'v9x', '--bridge', 'br0'], 'layout');
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/xn_fdb: value size 32 → 24 bytes/);
      expect({ progs: progs(), builds: builds(), devmap: devmap() }).toEqual(was);
    } finally {
      tamper(rec);
    }
    // an instance pinned before records existed gets one when its layouts match
    BpfMap.usePin(pin, (m) => m.delete(key));
    const r = run(['upgrade', '--json'], 'layout');
    expect(r.code, r.stderr).toBe(0);
    expect(BpfMap.usePin(pin, (m) => decodeLayout(key, m.lookup(key)!))).toEqual(rec);
  }, slow(300_000));

  it('no frame was lost, the TCP connection held, and the maps are the same maps with the same entries', async () => {
    const sent = Object.fromEntries(await Promise.all(Object.entries(senders).map(async ([k, x]) => [k, await stop(x)] as const)));
    await new Promise((r) => setTimeout(r, 300));
    const got = Object.fromEntries(await Promise.all(Object.entries(sinks).map(async ([k, x]) => [k, await stop(x)] as const)));
    const starved = Object.fromEntries(Object.entries(receivers()).map(([k, ns]) => [k, rcvbufErrors(ns) - before.rcvbuf[k]]));
    const drops = Object.fromEntries(Object.entries(linkDrops()).map(([k, n]) => [k, n - (before.drops[k] ?? 0)]).filter(([, n]) => n));
    const echoPath = ['o:eth0', 'h:up0', 'h:br0', 'h:xnp1', 'h:v4', 'c4:eth0'].reduce((n, l) => n + (drops[l] ?? 0), 0);
    const now = refused();
    const refusedOn = (k: string) => (xdpIngress[k] ? (now[xdpIngress[k]] ?? 0) - (before.refused[xdpIngress[k]] ?? 0) : 0);
    const kernelRefused = refusedOn('echo'); // the echoes' XDP redirect from up0 into br0's ring
    console.log(`interfaces that dropped frames: ${JSON.stringify(drops)}; redirects the kernel refused, by ingress: ${JSON.stringify(now)} (before: ${JSON.stringify(before.refused)})`);
    const lost = Object.fromEntries(Object.keys(senders).map((k) => [k, {
      sent: sent[k].sent, lost: sent[k].sent - got[k].distinct - starved[k] - refusedOn(k), starved: starved[k], refused: refusedOn(k),
    }]));
    console.log(`frames sent, lost by the dataplane, dropped by a starved receiver's socket, refused by the kernel: ${JSON.stringify(lost)}; ` +
      `NAT echoes ${sent.nat.echoed} of ${got.nat.received} (${starved.echo} dropped by the socket, ${echoPath} by the echo path's veths, ${kernelRefused} redirects refused)`);
    for (const k of Object.keys(senders)) {
      expect(sent[k].sent, k).toBeGreaterThan(PPS * 10);
      expect(got[k].dups, `${k}: duplicates`).toBe(0);
      expect(lost[k].lost, `${k}: frames lost`).toBe(0);
    }
    expect(got.nat.received - sent.nat.echoed - starved.echo - echoPath - kernelRefused, 'echoes through NAT lost').toBe(0);
    expect(tcp.out()).not.toMatch(/closed/);
    const echoes = (tcp.out().match(/echo \d+/g) ?? []).length;
    expect(echoes).toBeGreaterThan(50);
    expect(mapIds()).toEqual(before.ids);
    expect(fdb()).toEqual(expect.arrayContaining(before.fdb));
    expect(tcpFlow()).toEqual(before.tcp);
  }, slow(300_000));
});
