// The bridge's control plane through the CLI, across processes: what the CLI
// says is checked against the pinned maps the datapath reads (read here
// directly), refused commands change nothing, and nothing stays behind. No
// traffic: IPv6 is off in the namespace, so nothing is learned behind our back.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Bridge, BRIDGE, decodeFloodList, DevmapVal, FDB_FLAGS, FdbEntry, FdbKey, FloodKey, Port, PORT_FLAGS, Vlan, VlanKey,
} from '../../src/objects/bridge.js';
import { cString } from '../../src/objects/codec.js';
import { STATS_MAPS } from '../../src/objects/stats.js';
import { LOCK_DIR, lockFile } from '../../src/dataplane/host.js';
import { BR_CACHE, cachePart } from '../../src/objects/memory.js';
import { BpfMap, numPossibleCpus } from '../../src/sys/libbpf.js';
import { kernelCharge } from '../helpers/bpf.js';
import { macStr, mac } from '../helpers/packet.js';
import { CLI, cleanup, cliIn, netns, nsIfindex, sh, slow, tcFlavour, veth, xdpnet } from '../helpers/sys.js';

interface FdbRow { mac: string; bridge: string; port: string | null; ifindex: number; vlan: number; type: string; age: number | null; expired: boolean; remote: string | null }

const MAC0 = '02:b0:00:00:00:01';
const S1 = '02:00:00:00:01:01';
const S2 = '02:00:00:00:01:02';

/** The FDB cases' bridge ageing, s: short, so an "expired" entry needs little uptime; longer than their CLI runs under emulation. */
const AGEING = slow(20_000) / 1000;

describe('bridge control plane', () => {
  let ns: string;
  let tmp: string;
  const dir = () => `/sys/fs/bpf/xdpnet/ns-${ns}`;
  const ifx: Record<string, number> = {};

  const { run, ok, okJson } = cliIn(() => ns);
  const fdb = (...args: string[]) => okJson<FdbRow[]>('fdb', 'show', ...args);

  /** The map as the kernel holds it, decoded. */
  function entries<K, V>(name: string, key: { decode(b: Buffer): K }, value: { decode(b: Buffer): V }): Array<[K, V]> {
    return BpfMap.usePin(join(dir(), 'maps', name), (m) => m.entries().map(([k, v]) => [key.decode(k), value.decode(v)] as [K, V])) ?? [];
  }
  const fdbInMap = () => entries(BRIDGE.maps.fdb, FdbKey, FdbEntry)
    .map(([k, e]) => ({ mac: macStr(k.mac), vlan: k.vid, bridge: k.bridge, ifindex: e.ifindex, flags: e.flags }))
    .sort((a, b) => a.vlan - b.vlan || a.mac.localeCompare(b.mac));
  /** Every bridge map and the link pins, byte for byte. */
  const state = () => ({
    maps: Object.values(BRIDGE.maps).map((n) =>
      BpfMap.usePin(join(dir(), 'maps', n), (m) => m.entries().map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).sort())),
    links: existsSync(join(dir(), 'links')) ? readdirSync(join(dir(), 'links')) : [],
  });
  /** What the datapath would write when it learns (flags 0), `age` seconds ago. */
  function learn(m: string, port: string, age: number, bridge = 1, vid = 1): void {
    BpfMap.usePin(join(dir(), 'maps', BRIDGE.maps.fdb), (x) => x.update(FdbKey.encode({ bridge, vid, mac: mac(m) }),
      FdbEntry.encode({ ifindex: ifx[port], remote: 0, updated_ns: process.hrtime.bigint() - BigInt(age) * 1_000_000_000n, flags: 0, ageing_sec: 300 })));
  }

  beforeAll(() => {
    ns = netns('brc');
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    for (const p of ['p1', 'p2', 'p3', 'p4']) veth(ns, p, ns, `${p}x`);
    for (const l of JSON.parse(sh('ip', ['-n', ns, '-j', 'link', 'show'])) as Array<{ ifname: string; ifindex: number }>) ifx[l.ifname] = l.ifindex;
    tmp = mkdtempSync(join(tmpdir(), 'xdpnet-fdb-'));
  });
  afterAll(() => {
    cleanup();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('adds, shows and deletes a bridge; the map holds what show says; nothing stays pinned', () => {
    expect(ok('bridge', 'add', 'br0', '--mac', MAC0, '--ageing', '120', '--max-learned', '10')).toBe(`added bridge br0 (id 1, mac ${MAC0})\n`);
    expect(okJson('bridge', 'show')).toEqual([{
      name: 'br0', id: 1, mac: MAC0, hostIface: null, addresses: [], ageing: 120, maxLearned: 10, learned: 0, ports: [],
    }]);
    expect(entries(BRIDGE.maps.bridges, { decode: (k) => k.readUInt32LE(0) }, Bridge).map(([id, b]) => ({ ...b, id, name: cString(b.name) })))
      .toEqual([{ id: 1, name: 'br0', mac: mac(MAC0), flags: 0, ageing_sec: 120, max_learned: 10, learned: 0 }]);
    expect(ok('bridge', 'show')).toBe(`br0: id 1, mac ${MAC0}, address -, ageing 120s, learned 0/10\n  no ports\n`);

    const before = state();
    expect(run('bridge', 'add', 'br0')).toMatchObject({ code: 1, stderr: 'xdpnet: error: bridge br0 already exists\nhint: see `xdpnet bridge show`\n' });
    expect(state()).toEqual(before);

    expect(ok('bridge', 'add', 'br1')).toMatch(/^added bridge br1 \(id 2, mac ([0-9a-f]{2}:){5}[0-9a-f]{2}\)\n$/);
    expect(ok('bridge', 'del', 'br1')).toBe('deleted bridge br1\n');
    expect(ok('bridge', 'del', 'br0')).toBe('deleted bridge br0\n');
    expect(run('bridge', 'del', 'br0')).toMatchObject({ code: 1, stderr: expect.stringMatching(/^xdpnet: error: bridge br0 not found\n/) });
    expect(existsSync(dir())).toBe(false);
    expect(ok('bridge', 'show')).toBe('no bridges\n');
  });

  it('sizes the decision cache from --flows, shows each map\'s kernel memory, and resizes it only while nothing is attached', () => {
    const cpus = numPossibleCpus();
    const cache = () => okJson<Array<{ map: string; type: string; maxEntries: number; bytes: number }>>('status', '--memory')
      .find((m) => m.map === BR_CACHE.map)!;
    expect(run('bridge', 'add', 'br0', '--flows', '0')).toMatchObject({ code: 2, stderr: expect.stringContaining('--flows must be a whole number from 1 to') });
    expect(existsSync(dir())).toBe(false);

    ok('bridge', 'add', 'br0', '--flows', '1');
    const part = cachePart(BR_CACHE, 1, cpus);
    expect(cache()).toEqual({ map: BR_CACHE.map, type: 'array', keySize: 4, valueSize: 64, maxEntries: part * cpus,
      bytes: kernelCharge({ kind: 'array', keySize: 4, valueSize: 64, maxEntries: part * cpus, mmapable: true }, cpus) });
    const all = okJson<Array<{ map: string; bytes: number }>>('status', '--memory');
    expect(all.map((m) => m.map).sort()).toEqual(readdirSync(join(dir(), 'maps')).sort());
    expect(all.every((m) => m.bytes > 0)).toBe(true);
    const total = all.reduce((a, m) => a + m.bytes, 0);
    expect(ok('status', '--memory')).toMatch(new RegExp(`^xn_br_cache\\s+array\\s+${part * cpus}\\s+4\\s+64\\s+\\d+\\.\\d KiB$[^]*^total\\s+${(total / 2 ** 20).toFixed(1)} MiB\\n$`, 'm'));

    ok('attach', 'p1', '--bridge', 'br0');
    const before = state();
    const big = cachePart(BR_CACHE, 100_000, cpus);
    expect(run('bridge', 'add', 'br1', '--flows', '100000')).toMatchObject({ code: 1,
      stderr: `xdpnet: error: the bridges' decision cache holds ${part} entries (${part / 16} KiB) a CPU and cannot become ${big} entries (${big / 16} KiB) a CPU while ports use it (p1)\nhint: omit --flows to keep its size, or detach every port and uplink of this instance first\n` });
    expect(state()).toEqual(before);
    expect(cache().maxEntries).toBe(part * cpus);
    ok('bridge', 'add', 'br1'); // without --flows: the cache keeps its size
    expect(cache().maxEntries).toBe(part * cpus);
    ok('bridge', 'del', 'br1');

    ok('detach', 'p1');
    ok('bridge', 'add', 'br1', '--flows', '100000');
    expect(cache().maxEntries).toBe(big * cpus);
    ok('bridge', 'del', 'br1');
    ok('bridge', 'del', 'br0');
    expect(existsSync(dir())).toBe(false);
  });

  it('--address gives the host an interface with the address and the bridge MAC, a host port and a local FDB entry', () => {
    ok('bridge', 'add', 'brh', '--address', '10.123.0.1/24', '--mac', MAC0);
    const [link] = JSON.parse(sh('ip', ['-n', ns, '-j', 'addr', 'show', 'dev', 'brh']));
    expect(link).toMatchObject({ address: MAC0, operstate: 'UP', addr_info: [expect.objectContaining({ local: '10.123.0.1', prefixlen: 24 })] });
    const peer = JSON.parse(sh('ip', ['-n', ns, '-j', 'link', 'show', 'dev', 'xnp1']))[0];
    const [b] = okJson<Array<Record<string, unknown>>>('bridge', 'show');
    expect(b).toMatchObject({ name: 'brh', hostIface: 'brh', addresses: ['10.123.0.1/24'],
      ports: [{ iface: 'xnp1', ifindex: peer.ifindex, bridge: 'brh', pvid: 1, vlans: [{ vid: 1, tagged: false }], host: true, hook: 'tc', mode: null }] });
    expect(fdb()).toEqual([{ mac: MAC0, bridge: 'brh', port: 'xnp1', ifindex: peer.ifindex, vlan: 1, type: 'local', age: null, expired: false, remote: null }]);
    expect(fdbInMap()).toEqual([{ mac: MAC0, vlan: 1, bridge: 1, ifindex: peer.ifindex, flags: FDB_FLAGS.STATIC | FDB_FLAGS.LOCAL }]);
    expect(run('detach', 'xnp1')).toMatchObject({ code: 1, stderr: 'xdpnet: error: xnp1 is the host port of bridge brh\nhint: it goes with the bridge: xdpnet bridge del brh\n' });
    expect(run('fdb', 'del', MAC0, '--bridge', 'brh').stderr).toContain("is the bridge's own (local)");
    expect(run('bridge', 'add', 'brx', '--address', '10.124.0.1/24').stderr).toBe(''); // a second one: xnp2
    ok('bridge', 'del', 'brx');

    ok('detach', '--all'); // leaves the host port: it belongs to the bridge
    expect(okJson<unknown[]>('status').length).toBe(1);
    expect(ok('bridge', 'del', 'brh')).toBe('deleted bridge brh\n');
    expect(sh('ip', ['-n', ns, 'link', 'show'])).not.toMatch(/brh|xnp/);
    expect(existsSync(dir())).toBe(false);
  });

  it('serializes concurrent commands: eight ports attached at once all end up in the flood list', async () => {
    // A CNI runtime adds containers in parallel; each attach reads and rewrites the flood list.
    const ports = Array.from({ length: 8 }, (_, i) => `c${i}`);
    for (const p of ports) veth(ns, p, ns, `${p}x`);
    ok('bridge', 'add', 'brc');
    const all = ports.map((p) => new Promise<number>((resolve) => {
      const c = spawn(process.execPath, [CLI, '--netns', ns, 'attach', p, '--bridge', 'brc'], { stdio: 'ignore' });
      c.on('exit', (code) => resolve(code ?? -1));
    }));
    expect(await Promise.all(all)).toEqual(ports.map(() => 0));
    const want = ports.map((p) => nsIfindex(ns, p)).sort((a, b) => a - b);
    const id = okJson<Array<{ name: string; id: number }>>('bridge', 'show').find((b) => b.name === 'brc')!.id;
    const flood = entries(BRIDGE.maps.flood, FloodKey, { decode: decodeFloodList }).find(([k]) => k.bridge === id)?.[1] ?? [];
    expect([...flood].sort((a, b) => a - b)).toEqual(want);
    const slots = entries(STATS_MAPS.ifSlots, { decode: (k) => k.readUInt32LE(0) }, { decode: (v) => v.readUInt32LE(0) });
    expect(new Set(slots.filter(([i]) => want.includes(i)).map(([, s]) => s)).size).toBe(8);
    ok('bridge', 'del', 'brc', '--force');
    for (const p of ports) sh('ip', ['-n', ns, 'link', 'del', p]);
  });

  it('marks a veth whose peer is in another namespace (a container\'s), so tc delivers into the peer', () => {
    const other = netns('brcpeer');
    veth(ns, 'cp0', other, 'eth0');
    ok('bridge', 'add', 'brp');
    ok('attach', 'cp0', '--bridge', 'brp');
    ok('attach', 'p4', '--bridge', 'brp'); // its peer p4x is in this namespace
    const flags = new Map(entries(BRIDGE.maps.ports, { decode: (k) => k.readUInt32LE(0) }, Port).map(([k, v]) => [k, v.flags]));
    expect(flags.get(nsIfindex(ns, 'cp0'))! & PORT_FLAGS.PEER).toBe(PORT_FLAGS.PEER);
    expect(flags.get(ifx.p4)! & PORT_FLAGS.PEER).toBe(0);
    ok('bridge', 'del', 'brp', '--force');
    sh('ip', ['-n', ns, 'link', 'del', 'cp0']);
  });

  it('waits while another command holds the state lock, and says so; reading commands do not wait', async () => {
    mkdirSync(LOCK_DIR, { recursive: true });
    // The lock is held for 3 s, or longer where one CLI run takes long (emulated VMs: several
    // seconds), so that it is still held when the second command starts.
    let t0 = Date.now();
    expect(run('bridge', 'show')).toMatchObject({ code: 0, stderr: '' });
    const hold = Math.max(3, Math.ceil((3 * (Date.now() - t0)) / 1000));
    const holder = spawn('flock', [lockFile(`ns-${ns}`), 'sleep', String(hold)], { stdio: 'ignore' });
    const released = new Promise((resolve) => holder.on('exit', resolve));
    await new Promise((r) => setTimeout(r, 200));
    t0 = Date.now();
    expect(run('bridge', 'show')).toMatchObject({ code: 0, stderr: '' }); // no "waiting": it did not wait (no wall-clock check: the CPU is shared)
    expect(run('bridge', 'add', 'brw')).toMatchObject({ code: 0, stderr: 'xdpnet: waiting for another xdpnet command to finish\n' });
    expect(Date.now() - t0).toBeGreaterThan(1000);
    expect(xdpnet(['--netns', `${ns}-other`, 'bridge', 'del', 'nope'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^xdpnet: error: /) }); // another instance's lock: no wait
    expect(existsSync(lockFile(`ns-${ns}-other`))).toBe(false); // no namespace, no state: its lock file goes with the command
    await released;
    ok('bridge', 'del', 'brw');
  });

  describe('ports and the FDB', () => {
    beforeAll(() => {
      ok('bridge', 'add', 'br0', '--mac', MAC0, '--ageing', String(AGEING)); // short: "expired" entries need only 2 × that of uptime
    });
    afterAll(() => {
      run('bridge', 'del', 'br0', '--force');
    });

    it('writes each port into xn_ports, xn_vlans, xn_flood and xn_tx_ports', () => {
      expect(ok('attach', 'p1', '--bridge', 'br0')).toMatch(new RegExp(`^attached p1 to bridge br0 \\(tc \\(${tcFlavour()}\\), program \\d+; VLAN 1 untagged\\)\n$`));
      ok('attach', 'p2', '--bridge', 'br0', '--pvid', '10');
      expect(ok('attach', 'p3', '--bridge', 'br0', '--hook', 'xdp', '--trunk', '10,20-21', '--pvid', '1'))
        // XDP redirects into p3x need GRO there (turned on, said so); p3x's partial checksums are warned of
        .toMatch(/^attached p3 to bridge br0 \(xdp native, program \d+; VLAN 1 untagged; 10,20-21 tagged\)\nnote: turned GRO on at p3x: .*\nwarning: p3x sends partial checksums.*: ethtool -K p3x tx off\n$/);

      // Each port has its own counters slot (none is 0), and its port record carries it.
      const u32dec = { decode: (b: Buffer) => b.readUInt32LE(0) };
      const slot = new Map(entries(STATS_MAPS.ifSlots, u32dec, u32dec));
      expect(new Set([ifx.p1, ifx.p2, ifx.p3, 0].map((i) => slot.get(i) ?? 0)).size).toBe(4);
      expect(entries(BRIDGE.maps.ports, u32dec, Port).sort((a, b) => a[0] - b[0])).toEqual([
        [ifx.p1, { bridge: 1, pvid: 1, flags: PORT_FLAGS.LEARNING | PORT_FLAGS.ACCESS, slot: slot.get(ifx.p1) }],
        [ifx.p2, { bridge: 1, pvid: 10, flags: PORT_FLAGS.LEARNING | PORT_FLAGS.ACCESS, slot: slot.get(ifx.p2) }],
        [ifx.p3, { bridge: 1, pvid: 1, flags: PORT_FLAGS.LEARNING, slot: slot.get(ifx.p3) }], // a trunk: VLAN lookups stay
      ]);
      expect(entries(BRIDGE.maps.vlans, VlanKey, Vlan).map(([k, v]) => `${k.ifindex}:${k.vid}:${v.untagged}`).sort()).toEqual([
        `${ifx.p1}:1:1`, `${ifx.p2}:10:1`, `${ifx.p3}:1:1`, `${ifx.p3}:10:0`, `${ifx.p3}:20:0`, `${ifx.p3}:21:0`,
      ].sort());
      expect(Object.fromEntries(entries(BRIDGE.maps.flood, FloodKey, { decode: decodeFloodList }).map(([k, v]) => [`${k.bridge}/${k.vid}`, v]))).toEqual({
        '1/1': [ifx.p1, ifx.p3], '1/10': [ifx.p2, ifx.p3], '1/20': [ifx.p3], '1/21': [ifx.p3],
      });
      // The devmap reports the egress program by id: the same program for every port of one attach.
      const tx = entries(BRIDGE.maps.txPorts, { decode: (k) => k.readUInt32LE(0) }, DevmapVal);
      expect(tx.map(([k, v]) => [k, v.ifindex]).sort((a, b) => a[0] - b[0])).toEqual([[ifx.p1, ifx.p1], [ifx.p2, ifx.p2], [ifx.p3, ifx.p3]]);
      expect(tx.every(([, v]) => v.prog_fd > 0)).toBe(true);

      const status = okJson<Array<{ iface: string; bridge: string | null; hook: string; pvid: number | null; vlans: unknown }>>('status');
      expect(status.map((s) => [s.iface, s.bridge, s.hook, s.pvid])).toEqual([['p1', 'br0', 'tc', 1], ['p2', 'br0', 'tc', 10], ['p3', 'br0', 'xdp', 1]]);
      expect(ok('status')).toMatch(/^p3\s+xdp\s+native\s+\d+\s+bridge br0\s+1 untagged; 10,20-21 tagged\s+\d{4}/m);
    });

    it('refuses bad attaches and changes nothing', () => {
      const before = state();
      const cases: Array<[string[], number, string]> = [
        [['attach', 'p4', '--bridge', 'nope'], 1, 'xdpnet: error: bridge nope not found\n'],
        [['attach', 'p4', '--bridge', 'br0', '--pvid', '4095'], 2, 'xdpnet: error: invalid VLAN 4095: expected a VLAN id from 1 to 4094\n'],
        [['attach', 'p4', '--bridge', 'br0', '--trunk', '10,a'], 2, "xdpnet: error: invalid VLAN list '10,a': 'a' is not a VLAN id or range like 30-40\n"],
        [['attach', 'p1', '--bridge', 'br0'], 1, 'xdpnet: error: p1 is already attached to bridge br0\nhint: detach it first: xdpnet detach p1\n'],
        [['attach', 'nope0', '--bridge', 'br0'], 1, `xdpnet: error: interface nope0 not found in network namespace ${ns}\n`],
        [['attach', 'p4', '--bridge', 'br0', '--hook', 'tc', '--mode', 'generic'], 2, 'xdpnet: error: --mode applies to --hook xdp only\n'],
      ];
      for (const [args, code, err] of cases) {
        const r = run(...args);
        expect({ args, code: r.code, stderr: r.stderr.slice(0, err.length) }).toEqual({ args, code, stderr: err });
        expect(state()).toEqual(before);
      }
      ok('attach', 'p4'); // attached without a bridge (the counter): a bridge attach is refused as for any attached interface
      const r = run('attach', 'p4', '--bridge', 'br0');
      expect(r.stderr).toMatch(/^xdpnet: error: p4 is already attached \(xdp native/);
      ok('detach', 'p4');
      expect(state()).toEqual(before);
    });

    it('fdb add/show/del: the CLI and the kernel map agree', () => {
      expect(ok('fdb', 'add', S1, '--bridge', 'br0', '--port', 'p1')).toBe(`added ${S1} on bridge br0 VLAN 1 -> p1 (static)\n`);
      ok('fdb', 'add', S2, '--bridge', 'br0', '--port', 'p2'); // the port's PVID: 10
      ok('fdb', 'add', S2, '--bridge', 'br0', '--port', 'p3', '--vlan', '20');
      const rows = fdb('--bridge', 'br0');
      expect(rows).toEqual([
        { mac: S1, bridge: 'br0', port: 'p1', ifindex: ifx.p1, vlan: 1, type: 'static', age: null, expired: false, remote: null },
        { mac: S2, bridge: 'br0', port: 'p2', ifindex: ifx.p2, vlan: 10, type: 'static', age: null, expired: false, remote: null },
        { mac: S2, bridge: 'br0', port: 'p3', ifindex: ifx.p3, vlan: 20, type: 'static', age: null, expired: false, remote: null },
      ]);
      expect(fdbInMap()).toEqual(rows.map((r) => ({ mac: r.mac, vlan: r.vlan, bridge: 1, ifindex: r.ifindex, flags: FDB_FLAGS.STATIC })));
      expect(ok('fdb', 'show')).toMatch(new RegExp(`^MAC\\s+VLAN\\s+BRIDGE\\s+PORT\\s+TYPE\\s+AGE\\n${S1}\\s+1\\s+br0\\s+p1\\s+static\\s+-\\n`));

      const before = state();
      for (const [args, err] of [
        [['fdb', 'add', S1, '--bridge', 'br0', '--port', 'p2', '--vlan', '20'], 'xdpnet: error: p2 is not in VLAN 20\nhint: its VLANs: 10; name one with --vlan\n'],
        [['fdb', 'add', S1, '--bridge', 'br0', '--port', 'p4'], 'xdpnet: error: p4 is not a port of bridge br0\nhint: make it one: xdpnet attach p4 --bridge br0\n'],
        [['fdb', 'add', MAC0, '--bridge', 'br0', '--port', 'p1'], `xdpnet: error: ${MAC0} is bridge br0's own MAC address\nhint: its local entry goes with the bridge\n`],
        [['fdb', 'add', S1, '--bridge', 'nope', '--port', 'p1'], 'xdpnet: error: bridge nope not found\n'],
        [['fdb', 'del', '02:00:00:00:09:09', '--bridge', 'br0'], 'xdpnet: error: no FDB entry for 02:00:00:00:09:09 on bridge br0\nhint: see `xdpnet fdb show --bridge br0`\n'],
      ] as Array<[string[], string]>) {
        const r = run(...args);
        expect({ args, code: r.code, stderr: r.stderr.slice(0, err.length) }).toEqual({ args, code: 1, stderr: err });
        expect(state()).toEqual(before);
      }

      // A VLAN-scoped delete removes that VLAN's entry and no other: the MAC stays behind p2 in VLAN 10.
      expect(ok('fdb', 'del', S2, '--bridge', 'br0', '--vlan', '20')).toBe('deleted 1 entry\n');
      expect(fdbInMap()).toEqual([
        { mac: S1, vlan: 1, bridge: 1, ifindex: ifx.p1, flags: FDB_FLAGS.STATIC },
        { mac: S2, vlan: 10, bridge: 1, ifindex: ifx.p2, flags: FDB_FLAGS.STATIC },
      ]);
      expect(run('fdb', 'del', S2, '--bridge', 'br0', '--vlan', '20')).toMatchObject({ code: 1, stderr: expect.stringMatching(`^xdpnet: error: no FDB entry for ${S2} on bridge br0 VLAN 20\n`) });
      expect(ok('fdb', 'del', S2, '--bridge', 'br0')).toBe('deleted 1 entry\n');
      expect(fdbInMap().map((e) => e.mac)).toEqual([S1]);
    });

    it('learned entries: age shown, expired ones hidden unless --all, `fdb age` removes them and recounts', () => {
      learn('02:00:00:00:02:01', 'p1', 5);
      learn('02:00:00:00:02:02', 'p3', 2 * AGEING); // older than the bridge's ageing
      learn('02:00:00:00:02:03', 'p3', 3, 1, 20);
      const learned = (...a: string[]) => fdb(...a).filter((r) => r.type === 'learned');
      expect(learned().map((r) => [r.mac, r.port, r.vlan])).toEqual([['02:00:00:00:02:01', 'p1', 1], ['02:00:00:00:02:03', 'p3', 20]]);
      expect(learned()[0].age).toBeGreaterThanOrEqual(5);
      expect(learned('--all')).toContainEqual(expect.objectContaining({ mac: '02:00:00:00:02:02', expired: true, age: expect.any(Number) }));
      const expired = /02:00:00:00:02:02\s+1\s+br0\s+p3\s+learned \(expired\)\s+(\d+)s/.exec(ok('fdb', 'show', '--all'));
      expect(Number(expired?.[1])).toBeGreaterThanOrEqual(2 * AGEING);
      expect(Number(expired?.[1])).toBeLessThan(3 * AGEING); // learned 2 × ageing ago, not some other clock

      expect(ok('fdb', 'age')).toBe('aged out 1 learned entry, 3 left\n');
      expect(fdbInMap().map((e) => e.mac).sort()).toEqual([S1, '02:00:00:00:02:01', '02:00:00:00:02:03'].sort());
      expect(okJson<Array<{ learned: number }>>('bridge', 'show')[0].learned).toBe(2); // recounted from the FDB

      // A static entry replaces a learned one; flush --learned keeps static entries.
      ok('fdb', 'add', '02:00:00:00:02:01', '--bridge', 'br0', '--port', 'p3');
      expect(okJson<Array<{ learned: number }>>('bridge', 'show')[0].learned).toBe(1);
      expect(ok('fdb', 'flush', '--learned')).toBe('flushed 1 entry\n');
      expect(fdb().map((r) => [r.mac, r.type])).toEqual([[S1, 'static'], ['02:00:00:00:02:01', 'static']]);
      expect(ok('fdb', 'flush', '--bridge', 'br0', '--port', 'p3')).toBe('flushed 1 entry\n');
      expect(fdb().map((r) => r.mac)).toEqual([S1]);
    });

    it('fdb load: many rows in one batch; a bad row is named by index and nothing is written', () => {
      const rows = Array.from({ length: 2000 }, (_, i) => ({
        mac: `02:10:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`,
        bridge: 'br0', port: i % 2 ? 'p1' : 'p3', ...(i % 3 === 0 ? { vlan: i % 2 ? 1 : 21 } : {}),
      }));
      const file = join(tmp, 'fdb.json');
      const before = state();
      for (const [bad, err] of [
        [{ ...rows[2], mac: 'zz:00:00:00:00:01' }, "fdb.json[2].mac: invalid MAC address 'zz:00:00:00:00:01'"],
        [{ ...rows[2], mac: '01:00:5e:00:00:01' }, 'fdb.json[2].mac: MAC address 01:00:5e:00:00:01 is multicast or broadcast'],
        [{ ...rows[2], mac: MAC0.toUpperCase() }, `fdb.json[2].mac: ${MAC0} is bridge br0's own MAC address`],
        [{ ...rows[2], mac: 2 }, "fdb.json[2].mac: 'mac' must be a string"],
        [{ ...rows[2], vid: 10 }, "fdb.json[2].vid: unknown field 'vid' (fields: mac, bridge, port, vlan, ifindex, type, age, expired, remote)"],
        [{ ...rows[2], port: 'p4' }, 'fdb.json[2].port: p4 is not a port of bridge br0'],
        [{ ...rows[2], port: 'nope0' }, 'fdb.json[2].port: '],
        [{ ...rows[2], bridge: 'br9' }, 'fdb.json[2].bridge: bridge br9 not found'],
        [{ ...rows[2], vlan: 4095 }, 'fdb.json[2].vlan: invalid VLAN 4095'],
        [{ ...rows[2], vlan: 30 }, 'fdb.json[2].vlan: p3 is not in VLAN 30'],
        [{ ...rows[2], type: 'dynamic' }, "fdb.json[2].type: 'type' must be 'static', 'learned' or 'local'"],
        [{ ...rows[2], ifindex: -1 }, "fdb.json[2].ifindex: 'ifindex' must be a positive integer"],
        [{ ...rows[2], remote: '10.9.9.9' }, 'fdb.json[2].remote: bridge br0 VLAN 1 has no VTEP'],
        ['02:00:00:00:00:01', 'fdb.json[2]: expected an object like'],
      ] as Array<[unknown, string]>) {
        writeFileSync(file, JSON.stringify([rows[0], rows[1], bad, rows[3]], null, 1));
        const r = run('fdb', 'load', file);
        expect(r.code).toBeGreaterThan(0);
        expect(r.stderr).toContain(`xdpnet: error: ${join(tmp, err)}`);
        expect(state()).toEqual(before);
      }
      writeFileSync(file, '{"mac": ');
      expect(run('fdb', 'load', file).stderr).toMatch(/^xdpnet: error: cannot read .*fdb\.json: .*JSON/);

      writeFileSync(file, JSON.stringify(rows));
      expect(ok('fdb', 'load', file)).toMatch(/^loaded 2000 entries in \d+ ms\n$/);
      const shown = fdb('--bridge', 'br0');
      expect(shown.length).toBe(2001); // and S1
      expect(shown).toContainEqual({ mac: '02:10:00:00:00:03', bridge: 'br0', port: 'p1', ifindex: ifx.p1, vlan: 1, type: 'static', age: null, expired: false, remote: null });
      expect(shown).toContainEqual(expect.objectContaining({ mac: '02:10:00:00:00:00', port: 'p3', vlan: 21 }));
      expect(shown).toContainEqual(expect.objectContaining({ mac: '02:10:00:00:00:02', port: 'p3', vlan: 1 })); // p3's PVID
      expect(fdbInMap().map((e) => `${e.mac}@${e.vlan}>${e.ifindex}`).sort()).toEqual(shown.map((r) => `${r.mac}@${r.vlan}>${r.ifindex}`).sort());

      // What `fdb show --json` prints loads back as is (learned rows as static, local rows skipped).
      learn('02:00:00:00:02:77', 'p1', 1);
      const dump = fdb('--bridge', 'br0');
      writeFileSync(file, JSON.stringify([...dump, { mac: MAC0, bridge: 'br0', port: 'p1', ifindex: ifx.p1, vlan: 1, type: 'local', age: null, expired: false, remote: null }]));
      expect(ok('fdb', 'flush', '--bridge', 'br0')).toBe('flushed 2002 entries\n');
      expect(ok('fdb', 'load', file)).toMatch(/^loaded 2002 entries in \d+ ms \(skipped 1 local entry: they come with their bridge\)\n$/);
      expect(fdb('--bridge', 'br0')).toEqual(dump.map((r) => ({ ...r, type: 'static', age: null })));
      expect(ok('fdb', 'flush', '--bridge', 'br0')).toBe('flushed 2002 entries\n');
    });

    it('fdb load checks the room first: a load that does not fit writes nothing and says how much room there is; a full FDB lists', () => {
      const size = 131_072; // the default
      const macOf = (i: number) => `02:20:${[16, 8, 0].map((s) => ((i >> s) & 0xff).toString(16).padStart(2, '0')).join(':')}:01`;
      const rows = (n: number, from = 0) => Array.from({ length: n }, (_, i) => ({ mac: macOf(from + i), bridge: 'br0', port: 'p1' }));
      const file = join(tmp, 'big.json');
      const used = fdbInMap().length;
      writeFileSync(file, JSON.stringify(rows(200_000)));
      const before = state();
      const r = run('fdb', 'load', file);
      expect(r).toMatchObject({ code: 1, stderr: `xdpnet: error: ${file}: 200000 new entries do not fit: the FDB holds ${size}, ${used} are in use, room for ${size - used}; nothing was written\n`
        + 'hint: load fewer, flush entries (xdpnet fdb flush), or give the instance a larger FDB: xdpnet bridge add NAME --fdb-size N (when its first bridge is created)\n' });
      expect(state()).toEqual(before);

      writeFileSync(file, JSON.stringify(rows(size - used)));
      expect(ok('fdb', 'load', file)).toMatch(new RegExp(`^loaded ${size - used} entries in \\d+ ms\n$`));
      expect(fdbInMap().length).toBe(size);
      const listing = ok('fdb', 'show').split('\n');
      expect(listing.length).toBe(size + 2); // header, rows, the final newline
      expect(listing[1]).toMatch(/^\S+\s+\d+\s+br0\s+p\d\s+static\s+-$/);
      expect(fdb().length).toBe(size);
      // Replacing entries takes no room; one more does not fit.
      writeFileSync(file, JSON.stringify([...rows(10), ...rows(1, size)]));
      expect(run('fdb', 'load', file).stderr).toMatch(/: 1 new entries do not fit: the FDB holds 131072, 131072 are in use, room for 0; nothing was written\n/);
      writeFileSync(file, JSON.stringify(rows(10)));
      expect(ok('fdb', 'load', file)).toMatch(/^loaded 10 entries/);
      expect(ok('fdb', 'flush', '--bridge', 'br0', '--port', 'p1')).toBe(`flushed ${size - used} entries\n`);
      expect(fdbInMap().length).toBe(used);
    });

    it('detach takes a port out of its bridge: config and its FDB entries go, others stay', () => {
      ok('fdb', 'add', S1, '--bridge', 'br0', '--port', 'p2');
      ok('fdb', 'add', S2, '--bridge', 'br0', '--port', 'p1');
      learn('02:00:00:00:02:09', 'p2', 1, 1, 10);
      expect(ok('detach', 'p2')).toMatch(new RegExp(`^detached p2 \\(tc \\(${tcFlavour()}\\), program \\d+\\) from bridge br0\n$`));
      expect(entries(BRIDGE.maps.ports, { decode: (k) => k.readUInt32LE(0) }, Port).map(([k]) => k).sort()).toEqual([ifx.p1, ifx.p3]);
      expect(entries(BRIDGE.maps.vlans, VlanKey, Vlan).some(([k]) => k.ifindex === ifx.p2)).toBe(false);
      expect(Object.fromEntries(entries(BRIDGE.maps.flood, FloodKey, { decode: decodeFloodList }).map(([k, v]) => [k.vid, v]))[10]).toEqual([ifx.p3]);
      expect(entries(BRIDGE.maps.txPorts, { decode: (k) => k.readUInt32LE(0) }, DevmapVal).map(([k]) => k).sort()).toEqual([ifx.p1, ifx.p3]);
      expect(fdbInMap().map((e) => e.mac)).toEqual([S2]);
      expect(okJson<Array<{ learned: number }>>('bridge', 'show')[0].learned).toBe(0);
      expect(entries(STATS_MAPS.ifSlots, { decode: (k) => k.readUInt32LE(0) }, { decode: (v) => v.readUInt32LE(0) }).map(([k]) => k).sort())
        .toEqual([ifx.p1, ifx.p3]); // its counters slot is free again
    });

    it('the daemon ages every instance until SIGTERM', async () => {
      learn('02:00:00:00:03:01', 'p1', 2 * AGEING);
      const d = spawn(process.execPath, [CLI, '--verbose', 'daemon', '--interval', '0.2'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      d.stdout.on('data', (b) => (out += b));
      await new Promise<void>((resolve) => d.stdout.on('data', () => out.includes(`ns-${ns} fdb: 1 aged out`) && resolve()));
      const code = new Promise((resolve) => d.on('exit', resolve));
      d.kill('SIGTERM');
      expect(await code).toBe(0);
      expect(out).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\S+ .*ns-${ns} fdb: 1 aged out`, 'm'));
      expect(fdbInMap().map((e) => e.mac)).toEqual([S2]);
    });

    it('bridge del refuses while ports remain; --force detaches them and leaves nothing', () => {
      const r = run('bridge', 'del', 'br0');
      expect(r).toMatchObject({ code: 1, stderr: 'xdpnet: error: bridge br0 still has ports: p1, p3\nhint: detach them first (xdpnet detach IFACE), or use --force\n' });
      expect(ok('bridge', 'del', 'br0', '--force')).toBe('deleted bridge br0 (detached p1, p3)\n');
      expect(existsSync(dir())).toBe(false);
      expect(sh('ip', ['-n', ns, 'link', 'show', 'p3'])).not.toMatch(/ xdp/);
    });
  });
});
