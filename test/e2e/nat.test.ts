// NAT with real peers. A "host" namespace holds an xdpnet bridge br0
// (172.17.0.1/16) with two containers, and an uplink up0 (10.99.0.1) to an
// "outside" namespace that routes nothing back to 172.17/16 and holds a server
// S and a client K. The peers are plain sockets (test/helpers/peer.mjs) that
// report the address they see. The same flows then run through iptables
// MASQUERADE/DNAT on the same topology, and both must look the same to them.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eth, ETH_P, IPPROTO, ipv4 } from '../helpers/packet.js';
import { cleanup, CLI, inNs, netns, nsMac, ok, ROOT, sh, veth, xdpnet } from '../helpers/sys.js';
import { natTopology, startIn } from '../helpers/topology.js';

const H = '10.99.0.1'; // the host's uplink address
const GW = '10.99.0.254'; // the outside's end of the uplink
const S = '198.51.100.7'; // a server outside
const K = '203.0.113.9'; // a client outside
const C1 = '172.17.0.2';
const C2 = '172.17.0.3';
const PEER = `${ROOT}test/helpers/peer.mjs`;

const start = (ns: string, args: string[]) => startIn(ns, PEER, args);
/** One exchange with a peer client: the line the server answered ("from ADDR:PORT"). */
function client(ns: string, args: string[]): string {
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, PEER, ...args], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 ? r.stdout.trim() : `failed (${r.status}): ${r.stderr.trim()}`;
}
const addrOf = (line: string) => line.replace(/^from /, '').split(':')[0];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface FlowRow { proto: string; state: string; src: string; sport: number; dst: string; dport: number; toSrc: string; toSport: number; toDst: string; toDport: number }

describe('NAT: containers on an xdpnet bridge and an outside namespace', () => {
  let h: string;
  let o: string;
  let c1: string;
  let c2: string;
  const procs: ChildProcess[] = [];
  const seen: Record<string, Record<string, string>> = { xdpnet: {}, iptables: {} };
  const flows = (...filter: string[]): FlowRow[] => JSON.parse(ok(['--netns', h, 'conntrack', 'list', '--json', ...filter]));

  /** The flows every NAT implementation must carry: who the server sees, by flow. */
  function exchange(): Record<string, string> {
    return {
      'c1 tcp to S': client(c1, ['tcp-client', S, '7000']),
      'c1 udp to S': client(c1, ['udp-client', S, '7000']),
      'K tcp to H:10080': client(o, ['tcp-client', H, '10080', K]),
      'K udp to H:10053': client(o, ['udp-client', H, '10053', K]),
    };
  }

  beforeAll(async () => {
    ({ host: h, outside: o, containers: [c1, c2] } = natTopology({
      tag: 'nat', uplink: { host: H, outside: GW }, outside: [S, K], gateway: '172.17.0.1', containers: [C1, C2], ipv6: false,
    }));
    ok(['--netns', h, 'bridge', 'add', 'br0', '--address', '172.17.0.1/16']);
    ok(['--netns', h, 'attach', 'v1', '--bridge', 'br0']);
    ok(['--netns', h, 'attach', 'v2', '--bridge', 'br0']);
    for (const [ns, args] of [[o, ['tcp-server', '7000', S]], [o, ['udp-server', '7000', S]], [c2, ['tcp-server', '7001']], [c2, ['udp-server', '7001']]] as const) {
      procs.push((await start(ns, [...args])).p);
    }
  });
  afterAll(() => {
    for (const p of procs) p.kill('SIGKILL');
    if (h) spawnSync('ip', ['netns', 'exec', h, 'iptables', '-t', 'nat', '-F']);
    cleanup();
  });

  it('without NAT the outside cannot answer a container', () => {
    expect(client(c1, ['tcp-client', S, '7000'])).toMatch(/^failed/);
  });

  it('masquerade and port mappings: servers see the uplink address, a mapped container sees the client', () => {
    expect(ok(['--netns', h, 'nat', 'masquerade', 'add', '--src', '172.17.0.0/16', '--out', 'up0'])).toMatch(/^masquerade 172\.17\.0\.0\/16 out of up0 as 10\.99\.0\.1, ports \d+-\d+/);
    ok(['--netns', h, 'nat', 'portmap', 'add', '--proto', 'tcp', '--host-port', '10080', '--to', `${C2}:7001`]);
    ok(['--netns', h, 'nat', 'portmap', 'add', '--proto', 'udp', '--host-port', '10053', '--to', `${C2}:7001`]);
    const state = JSON.parse(ok(['--netns', h, 'nat', 'show', '--json']));
    expect(state.links.map((l: { iface: string; hook: string }) => `${l.iface} ${l.hook}`).sort()).toEqual(['br0 tc', 'up0 xdp']);
    // status lists everything attached, NAT's links included
    const status = JSON.parse(ok(['--netns', h, 'status', '--json'])) as Array<{ iface: string; hook: string; nat: boolean }>;
    expect(status.filter((x) => x.nat).map((x) => `${x.iface} ${x.hook}`).sort()).toEqual(['br0 tc', 'up0 xdp']);
    expect(ok(['--netns', h, 'status'])).toMatch(/^up0\s+xdp\s+-\s+\d+\s+NAT\s[^]*\nNAT conntrack table: room for 131072 flows/m);
    expect(state.snat).toEqual([expect.objectContaining({ kind: 'masquerade', src: '172.17.0.0/16', out: 'up0', to: H })]);

    seen.xdpnet = exchange();
    expect(Object.fromEntries(Object.entries(seen.xdpnet).map(([k, v]) => [k, addrOf(v)]))).toEqual({
      'c1 tcp to S': H, 'c1 udp to S': H, 'K tcp to H:10080': K, 'K udp to H:10053': K,
    });
    // The source port is kept where it is free and in range; the rule's range otherwise.
    const [lo, hi] = (state.snat[0].ports as string).split('-').map(Number);
    const port = Number(seen.xdpnet['c1 tcp to S'].split(':')[1]);
    expect(port >= lo && port <= hi).toBe(true);
  });

  it('hairpin: a container reaches a mapping through the host address, and is seen from the host', () => {
    expect(addrOf(client(c1, ['tcp-client', H, '10080']))).toBe(H);
  });

  it('conntrack list shows those flows, translated, and filters by source and destination', () => {
    const all = flows();
    expect(all).toContainEqual(expect.objectContaining({ proto: 'tcp', src: C1, dst: S, dport: 7000, toSrc: H, toDst: S }));
    expect(all).toContainEqual(expect.objectContaining({ proto: 'udp', src: C1, dst: S, dport: 7000, toSrc: H, state: 'udp-replied' }));
    expect(all).toContainEqual(expect.objectContaining({ proto: 'tcp', src: K, dst: H, dport: 10080, toSrc: K, toDst: C2, toDport: 7001 }));
    expect(all).toContainEqual(expect.objectContaining({ proto: 'udp', src: K, dst: H, dport: 10053, toDst: C2, toDport: 7001 }));
    expect(flows('--src', `${K}/32`).every((f) => f.src === K)).toBe(true);
    expect(flows('--src', `${K}/32`).length).toBe(2);
    expect(flows('--dst', S).every((f) => f.dst === S)).toBe(true);
    const text = ok(['--netns', h, 'conntrack', 'list']);
    expect(text).toMatch(/^PROTO\s+STATE\s+ORIGINAL\s+TRANSLATED\s+IDLE\s+TIMEOUT/);
    expect(text).toMatch(new RegExp(`tcp\\s+\\S+\\s+${K.replace(/\./g, '\\.')}:\\d+ > 10\\.99\\.0\\.1:10080\\s+${K.replace(/\./g, '\\.')}:\\d+ > 172\\.17\\.0\\.3:7001`));
  });

  it('stats show the conntrack table fill and counters', () => {
    const s = JSON.parse(ok(['--netns', h, 'stats', '--json']));
    expect(s.conntrack.entries).toBeGreaterThanOrEqual(8);
    expect(s.conntrack.maxFlows).toBe(131072); // the default
    expect(JSON.parse(ok(['--netns', h, 'nat', 'show', '--json'])).conntrack).toMatchObject({ maxFlows: 131072, maxEntries: s.conntrack.max });
    expect(s.conntrack.created).toBeGreaterThanOrEqual(5);
    expect(s.conntrack).toMatchObject({ insertFailed: 0, portExhausted: 0 });
    expect(ok(['--netns', h, 'stats'])).toMatch(new RegExp(`conntrack: \\d+ of ${s.conntrack.max} entries .*created=\\d+ insert_failed=0 port_exhausted=0`));
  });

  it('stats: an interface NAT alone runs on has a row, with its drops (counted once, by reason) and nothing else claimed', () => {
    type Row = { iface: string; natOnly: string | null; rxPackets: number; dropped: number; drops: Record<string, number> };
    const rows = () => (JSON.parse(ok(['--netns', h, 'stats', '--json'])).interfaces as Row[]);
    const natRows = () => Object.fromEntries(rows().filter((r) => r.natOnly).map((r) => [r.iface, r]));
    const before = natRows();
    expect(Object.fromEntries(Object.entries(before).map(([k, r]) => [k, r.natOnly]))).toEqual({ up0: 'xdp', br0: 'tc' });
    // from the outside, a TCP packet whose IPv4 length leaves 10 bytes for the 20-byte TCP header: NAT's XDP on up0 drops it
    const bad = eth({ dst: nsMac(h, 'up0'), src: nsMac(o, 'eth0'), type: ETH_P.IPV4 }, Buffer.concat([ipv4({ src: K, dst: H, proto: IPPROTO.TCP }, Buffer.alloc(10)), Buffer.alloc(16)]));
    const r = inNs(o, process.execPath, [`${ROOT}test/helpers/inject.mjs`, 'eth0', bad.toString('hex'), bad.toString('hex')]);
    expect(r.status, r.stderr).toBe(0);
    const after = natRows();
    expect(after.up0.dropped - before.up0.dropped).toBe(2);
    expect((after.up0.drops['truncated-tcp'] ?? 0) - (before.up0.drops['truncated-tcp'] ?? 0)).toBe(2);
    expect(Object.values(after.up0.drops).reduce((a, b) => a + b, 0)).toBe(after.up0.dropped);
    expect(after.up0.rxPackets).toBe(0); // NAT counts no rx: the text table says '-'
    expect(after.br0.dropped).toBe(before.br0.dropped);
    const text = ok(['--netns', h, 'stats']);
    expect(text).toMatch(new RegExp(`^up0(\\s+-){8}\\s+${after.up0.dropped}$`, 'm'));
    expect(text).toMatch(/^br0(\s+-){8}\s+\d+$/m);
    expect(text).toMatch(/^-: not counted \(NAT alone runs there: it counts drops\)$/m);
    expect(text).toMatch(new RegExp(`^drops: .*up0: [^;]*truncated-tcp=${after.up0.drops['truncated-tcp']}`, 'm'));
  });

  it('a long-lived TCP connection survives rule changes and the control process exiting and restarting', async () => {
    const long = await start(c1, ['tcp-long', S, '7000']);
    procs.push(long.p);
    const echoes = () => Number(/echo (\d+)\n(?!.*echo)/s.exec(long.out())?.[1] ?? 0);
    await sleep(500);
    expect(long.out()).toMatch(new RegExp(`^from ${H.replace(/\./g, '\\.')}:`));
    const before = echoes();
    expect(before).toBeGreaterThan(0);

    // Rules added while it runs, and a daemon (GC, addresses) started, killed and started again.
    ok(['--netns', h, 'nat', 'portmap', 'add', '--proto', 'tcp', '--host-port', '10081', '--to', `${C1}:7001`]);
    ok(['--netns', h, 'nat', 'snat', 'add', '--src', '172.18.0.0/16', '--out', 'up0', '--to', H, '--in', 'br0', '--ports', '20000-20999']);
    for (let i = 0; i < 2; i++) {
      const d = spawn(process.execPath, [CLI, '--netns', h, 'daemon', '--interval', '0.2'], { stdio: 'ignore' });
      await sleep(700);
      d.kill('SIGKILL');
      await new Promise((r) => d.once('exit', r));
    }
    // with --json, each del prints the rule it removed (no extra commands: this test is about timing)
    expect(JSON.parse(ok(['--netns', h, 'nat', 'portmap', 'del', '--proto', 'tcp', '--host-port', '10081', '--json'])))
      .toEqual({ removed: { proto: 'tcp', port: 10081, on: null, onIfindex: 0, to: `${C1}:7001` } });
    expect(JSON.parse(ok(['--netns', h, 'nat', 'snat', 'del', '--src', '172.18.0.0/16', '--out', 'up0', '-j'])))
      .toEqual({ removed: { kind: 'snat', src: '172.18.0.0/16', out: 'up0', outIfindex: expect.any(Number), to: H, ports: '20000-20999' } });
    await sleep(500);
    expect(long.out()).not.toMatch(/closed/);
    expect(echoes()).toBeGreaterThan(before + 10);
    expect(flows('--src', C1, '--dst', S).filter((f) => f.proto === 'tcp' && f.state === 'established').length).toBeGreaterThanOrEqual(1);
    long.p.kill('SIGTERM');
    await new Promise((r) => long.p.once('exit', r));
    expect(long.out()).toMatch(/alive \d+\n$/);
  });

  it('conntrack timeouts are tunable, and gc removes expired flows (both entries)', async () => {
    ok(['--netns', h, 'conntrack', 'timeouts', 'udp=2', 'udp_replied=2']);
    expect(JSON.parse(ok(['--netns', h, 'conntrack', 'timeouts', '--json']))).toMatchObject({ udp: 2, udp_replied: 2, tcp_established: 432000 });
    await sleep(3200);
    const before = flows();
    const udp = before.filter((f) => f.proto === 'udp').length;
    expect(udp).toBeGreaterThan(0);
    // --json: the counts, checked against the table (closed TCP flows may expire meanwhile too)
    const gc = JSON.parse(ok(['--netns', h, 'conntrack', 'gc', '--json']));
    expect(gc.removed).toBeGreaterThanOrEqual(udp);
    expect(gc.removed + gc.remaining).toBe(before.length);
    expect(flows()).toHaveLength(gc.remaining);
    expect(flows().filter((f) => f.proto === 'udp')).toEqual([]);
    ok(['--netns', h, 'conntrack', 'timeouts', 'udp=0', 'udp_replied=0']);
    expect(JSON.parse(ok(['--netns', h, 'conntrack', 'timeouts', '--json']))).toMatchObject({ udp: 30, udp_replied: 120 });
  });

  it('iptables MASQUERADE/DNAT on the same topology: the peers see the same addresses', () => {
    // nat flush and conntrack flush with --json say what they removed: what nat show and conntrack list showed
    const { conntrack: _ct, ...rules } = JSON.parse(ok(['--netns', h, 'nat', 'show', '--json']));
    expect(rules.snat.length + rules.portmaps.length).toBeGreaterThan(0);
    expect(JSON.parse(ok(['--netns', h, 'nat', 'flush', '--json']))).toEqual({ removed: rules });
    const tracked = flows().length;
    expect(tracked).toBeGreaterThan(0);
    expect(JSON.parse(ok(['--netns', h, 'conntrack', 'flush', '--json']))).toEqual({ removed: tracked });
    expect(flows()).toEqual([]);
    expect(JSON.parse(ok(['--netns', h, 'nat', 'show', '--json']))).toMatchObject({ snat: [], portmaps: [], links: [] });
    const ipt = (...a: string[]) => sh('ip', ['netns', 'exec', h, 'iptables', '-t', 'nat', ...a]);
    ipt('-A', 'POSTROUTING', '-s', '172.17.0.0/16', '-o', 'up0', '-j', 'MASQUERADE');
    ipt('-A', 'PREROUTING', '-i', 'up0', '-p', 'tcp', '--dport', '10080', '-j', 'DNAT', '--to-destination', `${C2}:7001`);
    ipt('-A', 'PREROUTING', '-i', 'up0', '-p', 'udp', '--dport', '10053', '-j', 'DNAT', '--to-destination', `${C2}:7001`);
    seen.iptables = exchange();
    const addrs = (r: Record<string, string>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, addrOf(v)]));
    expect(addrs(seen.iptables)).toEqual(addrs(seen.xdpnet));
    const ct = inNs(h, 'conntrack', ['-L']);
    expect(ct.stdout + ct.stderr).toMatch(new RegExp(`src=${C1} dst=${S} .*dport=7000 .*src=${S} dst=${H}`));
    ipt('-F');
    inNs(h, 'conntrack', ['-F']); // nf_conntrack would keep translating its flows
  });

  it('with another XDP program on the uplink, NAT takes its tcx hook and still works', () => {
    ok(['--netns', h, 'attach', 'up0']); // the counter, XDP native
    ok(['--netns', h, 'nat', 'masquerade', 'add', '--src', '172.17.0.0/16', '--out', 'up0']);
    const links = JSON.parse(ok(['--netns', h, 'nat', 'show', '--json'])).links.map((l: { iface: string; hook: string }) => `${l.iface} ${l.hook}`);
    expect(links.sort()).toEqual(['br0 tc', 'up0 tc']);
    expect(addrOf(client(c1, ['tcp-client', S, '7000']))).toBe(H);
    expect(addrOf(client(c1, ['udp-client', S, '7000']))).toBe(H);
    ok(['--netns', h, 'nat', 'flush']);
    ok(['--netns', h, 'detach', 'up0']);
  });

  it('refuses what cannot work, with a hint, and changes nothing', () => {
    const err = (args: string[], msg: string, hint: string) =>
      expect(xdpnet(['--netns', h, ...args]), args.join(' ')).toMatchObject({ code: 1, stderr: expect.stringMatching(new RegExp(`${msg}[^]*hint: .*${hint}`)) });
    err(['nat', 'masquerade', 'add', '--src', '172.17.0.0/16', '--out', 'eth9'], 'interface eth9 not found', 'ip -n');
    err(['nat', 'masquerade', 'add', '--src', '10.200.0.0/16', '--out', 'up0'], 'no interface routes 10\\.200\\.0\\.0/16', '--in IFACE');
    err(['nat', 'masquerade', 'add', '--src', '172.17.0.0/16', '--out', 'br0'], 'is routed through br0 itself', '--in');
    err(['nat', 'masquerade', 'del', '--src', '172.17.0.0/16', '--out', 'up0'], 'no masquerade rule for 172\\.17\\.0\\.0/16 out of up0', 'nat masquerade show');
    ok(['--netns', h, 'nat', 'portmap', 'add', '--proto', 'tcp', '--host-port', '10080', '--to', `${C2}:7001`]);
    err(['nat', 'portmap', 'add', '--proto', 'tcp', '--host-port', '10080', '--to', `${C1}:7001`], 'tcp port 10080 is already mapped to 172\\.17\\.0\\.3:7001', 'nat portmap del --proto tcp --host-port 10080');
    const shown = JSON.parse(ok(['--netns', h, 'nat', 'show', '--json']));
    expect(shown).toMatchObject({ snat: [], portmaps: [expect.objectContaining({ to: `${C2}:7001` })] });
    // --json prints the mapping removed, as nat show listed it
    expect(JSON.parse(ok(['--netns', h, 'nat', 'portmap', 'del', '--proto', 'tcp', '--host-port', '10080', '--json']))).toEqual({ removed: shown.portmaps[0] });
    expect(JSON.parse(ok(['--netns', h, 'nat', 'show', '--json']))).toMatchObject({ snat: [], portmaps: [], links: [] });
  });

  it('--conntrack-max sizes the table; bad values and resizing a table in use are refused and change nothing', () => {
    const show = () => JSON.parse(ok(['--netns', h, 'nat', 'show', '--json']));
    const before = show();
    const masq = ['nat', 'masquerade', 'add', '--src', '172.17.0.0/16', '--out', 'up0'];
    for (const bad of ['0', '1023', '16777217', '1e6', 'lots']) {
      expect(xdpnet(['--netns', h, ...masq, '--conntrack-max', bad])).toMatchObject({
        code: 2, stderr: expect.stringMatching(new RegExp(`--conntrack-max: expected a number of flows from 1024 to 16777216, got '${bad}'[^]*hint: `)),
      });
    }
    expect(show()).toEqual(before);
    // With NAT running, a table of another size is refused; the same size is fine.
    expect(ok(['--netns', h, ...masq])).toMatch(/^conntrack: room for 131072 flows$/m);
    const pm = ['nat', 'portmap', 'add', '--proto', 'tcp', '--host-port', '10080', '--to', `${C2}:7001`];
    expect(xdpnet(['--netns', h, ...pm, '--conntrack-max', '2000'])).toMatchObject({
      code: 1, stderr: expect.stringMatching(/holds up to 131072 flows and cannot be resized while NAT runs \(on (br0, up0|up0, br0)\)[^]*hint: .*nat flush.*--conntrack-max 2000/),
    });
    expect(show().portmaps).toEqual([]);
    ok(['--netns', h, ...pm, '--conntrack-max', '131072']);
    expect(addrOf(client(c1, ['tcp-client', S, '7000']))).toBe(H);
    // With no rule left the table is replaced, and says what it dropped.
    ok(['--netns', h, 'nat', 'flush']);
    expect(ok(['--netns', h, ...masq, '--conntrack-max', '2000'])).toMatch(/^conntrack: room for 2000 flows \(replaced a table for 131072 flows; [1-9]\d* entries dropped\)$/m);
    const ct = show().conntrack;
    expect(ct).toMatchObject({ maxFlows: 2000 });
    expect(ct.maxEntries).toBeGreaterThanOrEqual(4000);
    expect(addrOf(client(c1, ['tcp-client', S, '7000']))).toBe(H); // the programs use the new table
    expect(show().conntrack.entries).toBe(2);
    expect(JSON.parse(ok(['--netns', h, 'stats', '--json'])).conntrack).toMatchObject({ maxFlows: 2000, max: ct.maxEntries });
    ok(['--netns', h, 'nat', 'flush']);
  });

  it('--in-hook xdp: NAT at XDP on the inside interface too, same addresses seen', () => {
    sh('ip', ['-n', h, 'neigh', 'flush', 'dev', 'up0']); // the gateway unresolved: XDP hands the first packets to tc
    // XDP needs complete checksums: the container sends them (a NIC's wire would). And a frame XDP
    // redirects into the veth uplink needs NAPI on its far end (GRO), as README's limits say.
    sh('ip', ['netns', 'exec', c1, 'ethtool', '-K', 'eth0', 'tx', 'off']);
    sh('ip', ['netns', 'exec', o, 'ethtool', '-K', 'eth0', 'gro', 'on']);
    try {
      ok(['--netns', h, 'nat', 'masquerade', 'add', '--src', '172.17.0.0/16', '--out', 'up0', '--in-hook', 'xdp']);
      const links = JSON.parse(ok(['--netns', h, 'nat', 'show', '--json'])).links.map((l: { iface: string; hook: string }) => `${l.iface} ${l.hook}`);
      expect(links.sort()).toEqual(['br0 tc', 'br0 xdp', 'up0 xdp']); // tc beside XDP: it resolves next hops XDP cannot
      expect(addrOf(client(c1, ['tcp-client', S, '7000']))).toBe(H);
      expect(addrOf(client(c1, ['udp-client', S, '7000']))).toBe(H);
      expect(new Set(flows('--src', C1, '--dst', S).map((f) => `${f.proto} ${f.toSrc}`))).toEqual(new Set([`tcp ${H}`, `udp ${H}`]));
    } finally {
      ok(['--netns', h, 'nat', 'flush']);
      ok(['--netns', h, 'conntrack', 'flush']);
      sh('ip', ['netns', 'exec', c1, 'ethtool', '-K', 'eth0', 'tx', 'on']);
      sh('ip', ['netns', 'exec', o, 'ethtool', '-K', 'eth0', 'gro', 'off']);
    }
  });

  it('masquerade follows the uplink\'s address: the daemon re-reads it', async () => {
    ok(['--netns', h, 'nat', 'masquerade', 'add', '--src', '172.17.0.0/16', '--out', 'up0']);
    const readdress = (addr: string) => {
      sh('ip', ['-n', h, 'addr', 'flush', 'dev', 'up0']);
      sh('ip', ['-n', h, 'addr', 'add', `${addr}/24`, 'dev', 'up0']);
      sh('ip', ['-n', h, 'route', 'replace', 'default', 'via', GW]);
    };
    readdress('10.99.0.3');
    try {
      const d = spawn(process.execPath, [CLI, '--netns', h, '--verbose', 'daemon', '--interval', '0.2'], { stdio: ['ignore', 'pipe', 'ignore'] });
      // One whole pass (its line is printed after it), however slowly a loaded machine starts node.
      let out = '';
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`the daemon finished no pass in 30 s: ${out}`)), 30_000);
        d.stdout!.on('data', (b: Buffer) => {
          out += b;
          if (/conntrack: /.test(out)) {
            clearTimeout(t);
            resolve();
          }
        });
      });
      d.kill('SIGTERM');
      await new Promise((r) => d.once('exit', r));
      expect(addrOf(client(c1, ['tcp-client', S, '7000']))).toBe('10.99.0.3'); // no NAT command in between
      expect(JSON.parse(ok(['--netns', h, 'nat', 'masquerade', 'show', '--json']))).toEqual([expect.objectContaining({ to: '10.99.0.3' })]);
    } finally {
      readdress(H);
      ok(['--netns', h, 'nat', 'flush']);
    }
  });
});

// A stock host forwards nothing (ip_forward=0: Debian's default; this machine's namespaces inherit
// the host's 1, the 6.1 VM's do not): the NAT commands turn forwarding on for the two interfaces
// they route between, say so, and the translated traffic flows.
describe('NAT on a namespace that does not forward', () => {
  let h: string;
  let c: string;
  let o: string;
  const fwd = (dev: string) => sh('ip', ['netns', 'exec', h, 'sysctl', '-n', `net.ipv4.conf.${dev}.forwarding`]).trim();
  beforeAll(() => {
    h = netns('nfh');
    c = netns('nfc');
    o = netns('nfo');
    veth(h, 'up0', o, 'eth0', '10.67.0.1/24', '10.67.0.2/24');
    veth(h, 'k1', c, 'eth0', undefined, '10.66.0.2/24');
    sh('ip', ['-n', c, 'route', 'add', 'default', 'via', '10.66.0.1']);
    ok(['--netns', h, 'bridge', 'add', 'br0', '--address', '10.66.0.1/24']);
    ok(['--netns', h, 'attach', 'k1', '--bridge', 'br0']);
    sh('ip', ['netns', 'exec', h, 'sysctl', '-qw', 'net.ipv4.ip_forward=0']); // every interface's forwarding off
  });
  afterAll(() => cleanup());

  it('masquerade add turns forwarding on where it routes, says so, and the container reaches the outside', () => {
    expect(['br0', 'up0'].map(fwd)).toEqual(['0', '0']);
    expect(inNs(c, 'ping', ['-c', '1', '-W', '1', '10.67.0.2']).status).not.toBe(0); // nothing is routed yet
    const out = ok(['--netns', h, 'nat', 'masquerade', 'add', '--src', '10.66.0.0/24', '--out', 'up0']);
    expect(out).toContain('note: set net.ipv4.conf.br0.forwarding=1 (NAT routes through it)\nnote: set net.ipv4.conf.up0.forwarding=1 (NAT routes through it)\n');
    expect(['br0', 'up0'].map(fwd)).toEqual(['1', '1']);
    expect(inNs(c, 'ping', ['-c', '3', '-W', '2', '10.67.0.2']).status).toBe(0);
  });

  it('a rule that finds forwarding on says nothing about it', () => {
    const p = JSON.parse(ok(['--netns', h, 'nat', 'portmap', 'add', '--proto', 'tcp', '--host-port', '8080', '--to', '10.66.0.2:80', '--out', 'up0', '--json']));
    expect(p.notes).toEqual([]);
  });
});
