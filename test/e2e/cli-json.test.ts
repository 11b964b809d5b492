// --json on the commands that change the bridge, its FDB and VTEPs: one JSON
// document on stdout saying what was created or removed, in `show --json`'s
// shape, checked against the pinned maps the datapath reads (read here
// directly). No traffic: IPv6 is off, so nothing is learned behind our back;
// a learned entry is written into the map as the datapath would write it.
// (NAT's and conntrack's --json are checked in nat.test.ts, where real flows exist.)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BRIDGE, FdbEntry, FdbKey, Vtep, VXLAN } from '../../src/objects/bridge.js';
import { u32 } from '../../src/objects/codec.js';
import { BpfMap } from '../../src/sys/libbpf.js';
import { mac, macStr } from '../helpers/packet.js';
import { cleanup, cliIn, netns, nsIfindex, sh, veth } from '../helpers/sys.js';

interface FdbRow { mac: string; bridge: string; port: string | null; ifindex: number; vlan: number; type: string; age: number | null; expired: boolean; remote: string | null }

const S1 = '02:00:00:00:01:01';
const S2 = '02:00:00:00:01:02';
const S3 = '02:00:00:00:01:03';
const L1 = '02:00:00:00:02:01'; // learned
const R1 = '02:00:00:00:03:01'; // behind a remote VTEP

describe('--json on state-changing commands: bridge, fdb, vxlan, detach', () => {
  let ns: string;
  let tmp: string;
  const { run, ok, okJson } = cliIn(() => ns);
  const pin = (map: string) => `/sys/fs/bpf/xdpnet/ns-${ns}/maps/${map}`;
  /** The FDB as the kernel holds it: "mac/vlan -> ifindex". */
  const fdbInMap = () => (BpfMap.usePin(pin(BRIDGE.maps.fdb), (m) => m.entries().map(([k, v]) => {
    const key = FdbKey.decode(k);
    return `${macStr(key.mac)}/${key.vid} -> ${FdbEntry.decode(v).ifindex}`;
  })) ?? []).sort();
  const rowsInMap = (rows: FdbRow[]) => rows.map((r) => `${r.mac}/${r.vlan} -> ${r.ifindex}`).sort();
  const fdbShow = () => okJson<FdbRow[]>('fdb', 'show', '--all');
  /** What the datapath writes when it learns (flags 0), `age` seconds ago. */
  function learn(m: string, port: string, age: number): void {
    BpfMap.usePin(pin(BRIDGE.maps.fdb), (x) => x.update(FdbKey.encode({ bridge: 1, vid: 1, mac: mac(m) }),
      FdbEntry.encode({ ifindex: nsIfindex(ns, port), remote: 0, updated_ns: process.hrtime.bigint() - BigInt(age) * 1_000_000_000n, flags: 0, ageing_sec: 1 })));
  }
  /** ok() with --json (or -j): exactly one JSON document on stdout, nothing else. */
  const doc = <T>(...args: string[]): T => {
    const out = ok(...args);
    expect(out.trimEnd().split('\n')[0]).toMatch(/^[{[]/);
    return JSON.parse(out) as T;
  };

  beforeAll(() => {
    ns = netns('clij');
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    for (const p of ['p1', 'p2']) veth(ns, p, ns, `${p}x`);
    veth(ns, 'u0', ns, 'u0x', '198.51.100.1/24', '198.51.100.2/24');
    tmp = mkdtempSync(join(tmpdir(), 'xdpnet-clij-'));
    ok('bridge', 'add', 'br0', '--ageing', '1');
    ok('attach', 'p1', '--bridge', 'br0');
    ok('attach', 'p2', '--bridge', 'br0');
  });
  afterAll(() => {
    cleanup();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('fdb add --json prints the entry as fdb show lists it; the map holds it', () => {
    const r = doc<FdbRow & { notes: string[] }>('fdb', 'add', S1, '--bridge', 'br0', '--port', 'p1', '--json');
    expect(r).toEqual({ mac: S1, bridge: 'br0', port: 'p1', ifindex: nsIfindex(ns, 'p1'), vlan: 1, type: 'static', age: null, expired: false, remote: null, notes: [] });
    const { notes: _n, ...row } = r;
    expect(fdbShow()).toContainEqual(row);
    expect(fdbInMap()).toContain(`${S1}/1 -> ${nsIfindex(ns, 'p1')}`);
  });

  it('fdb load --json prints the entries loaded (local rows skipped) exactly as the map now holds them', () => {
    const file = join(tmp, 'load.json');
    const local = fdbShow().find((e) => e.type === 'local');
    writeFileSync(file, JSON.stringify([{ mac: S2, bridge: 'br0', port: 'p2' }, { mac: S3, bridge: 'br0', port: 'p1', vlan: 1 },
      ...(local ? [local] : [])]));
    const r = doc<{ loaded: FdbRow[]; skipped: number }>('fdb', 'load', file, '-j');
    expect(r.skipped).toBe(local ? 1 : 0);
    expect(r.loaded.map((e) => `${e.mac} ${e.port} ${e.type}`).sort()).toEqual([`${S2} p2 static`, `${S3} p1 static`]);
    expect(fdbInMap()).toEqual(expect.arrayContaining(rowsInMap(r.loaded)));
    expect(fdbShow()).toEqual(expect.arrayContaining(r.loaded));
  });

  it('fdb del --json prints the entries removed; the map no longer has them', () => {
    const before = fdbShow();
    const r = doc<{ removed: FdbRow[] }>('fdb', 'del', S3, '--bridge', 'br0', '--json');
    expect(r).toEqual({ removed: before.filter((e) => e.mac === S3) });
    expect(r.removed).toHaveLength(1);
    expect(fdbInMap()).toEqual(rowsInMap(before.filter((e) => e.mac !== S3)));
  });

  it('fdb age --json prints the learned entries it aged out and what is left', async () => {
    learn(L1, 'p2', 5); // older than the bridge's ageing (1 s)
    const before = fdbShow();
    expect(before.find((e) => e.mac === L1)).toMatchObject({ type: 'learned', expired: true, port: 'p2' });
    const r = doc<{ removed: FdbRow[]; remaining: number }>('fdb', 'age', '--json');
    expect(r.removed.map((e) => ({ ...e, age: 0 }))).toEqual([{ ...before.find((e) => e.mac === L1)!, age: 0 }]);
    expect(r.remaining).toBe(before.length - 1);
    expect(fdbInMap()).toHaveLength(r.remaining);
    expect(fdbInMap().some((e) => e.startsWith(L1))).toBe(false);
  });

  it('fdb flush --json prints every entry removed; only the bridge\'s local ones stay in the map', () => {
    learn(L1, 'p1', 0);
    const before = fdbShow();
    const r = doc<{ removed: FdbRow[] }>('fdb', 'flush', '--bridge', 'br0', '--json');
    // a learned entry's age (and, with 1 s ageing, its expiry) moves between the two commands
    const still = (e: FdbRow) => (e.type === 'learned' ? { ...e, age: 0, expired: false } : e);
    const byMac = (a: FdbRow, b: FdbRow) => a.mac.localeCompare(b.mac);
    expect(r.removed.map(still).sort(byMac)).toEqual(before.filter((e) => e.type !== 'local').map(still).sort(byMac));
    expect(r.removed.map((e) => e.mac)).toEqual(expect.arrayContaining([S1, S2, L1]));
    expect(fdbInMap()).toEqual(rowsInMap(before.filter((e) => e.type === 'local')));
  });

  it('vxlan remote del and vxlan del --json print the VTEP as vxlan show lists it; the VTEP map follows', () => {
    ok('vxlan', 'add', '--bridge', 'br0', '--vni', '100', '--local', '198.51.100.1', '--dev', 'u0', '--hook', 'tc');
    ok('vxlan', 'remote', 'add', '--vni', '100', '198.51.100.2');
    ok('vxlan', 'remote', 'add', '--vni', '100', '198.51.100.3');
    ok('fdb', 'add', R1, '--bridge', 'br0', '--remote', '198.51.100.2');
    const [shown] = okJson<Array<{ vni: number; remotes: string[] }>>('vxlan', 'show');
    const after = doc<{ vni: number; remotes: string[] }>('vxlan', 'remote', 'del', '--vni', '100', '198.51.100.3', '--json');
    expect(after).toEqual({ ...shown, remotes: ['198.51.100.2'] });
    expect(okJson('vxlan', 'show')).toEqual([after]);
    expect(BpfMap.usePin(pin(VXLAN.maps.vteps), (m) => m.lookup(u32(100)) && Vtep.decode(m.lookup(u32(100))!).bridge)).toBe(1);
    expect(doc('vxlan', 'del', '--vni', '100', '--json')).toEqual({ removed: after });
    expect(okJson('vxlan', 'show')).toEqual([]);
    expect(BpfMap.usePin(pin(VXLAN.maps.vteps), (m) => m.entries().length)).toBe(0);
    expect(fdbInMap().some((e) => e.startsWith(R1))).toBe(false); // its remote MACs went with it
  });

  it('detach IFACE --json names what was detached and from which bridge; bridge del --json prints the bridge removed', () => {
    expect(doc('detach', 'p2', '--json')).toEqual({ detached: ['p2'], bridge: 'br0' });
    const [br] = okJson<Array<{ name: string; ports: Array<{ iface: string }> }>>('bridge', 'show');
    expect(br.ports.map((p) => p.iface)).toEqual(['p1']);
    expect(run('bridge', 'del', 'br0', '--json')).toMatchObject({ code: 1, stdout: '' }); // has a port: refused, nothing printed on stdout
    expect(doc('bridge', 'del', 'br0', '--force', '--json')).toEqual({ removed: br, detached: ['p1'] });
    expect(okJson('bridge', 'show')).toEqual([]);
    expect(okJson('status')).toEqual([]);
  });
});
