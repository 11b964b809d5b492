// `bridge del` after a `bridge add --address` killed inside its host port's
// addPort (found by make crash's random kills, e2e/crash.test.ts). addPort
// claims the port's counter slot, then writes its port record, then pins its
// link. A kill between those steps leaves a slot without a port record, or a
// port record without a link. Here each such state is made exactly, by
// undoing a finished `bridge add` through the pins, and `bridge del` must free
// the slot and the link, leave the bridge's maps empty, and a new port must
// get the freed slot. A counter-only attachment keeps the instance (and its
// slot map) alive across the del, so a slot left behind stays visible.
import { existsSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BRIDGE, decodeFloodList, FdbEntry, FloodKey, floodList, VlanKey } from '../../src/objects/bridge.js';
import { u32 } from '../../src/objects/codec.js';
import { STATS_MAPS } from '../../src/objects/stats.js';
import { BpfMap } from '../../src/sys/libbpf.js';
import { cleanup, cliIn, netns, nsIfindex, sh, tcFlavour, veth } from '../helpers/sys.js';

describe('bridge del after a bridge add killed inside its host port\'s addPort', () => {
  let ns: string;
  const dir = () => `/sys/fs/bpf/xdpnet/ns-${ns}`;
  const { ok } = cliIn(() => ns);
  const pinned = <T>(name: string, fn: (m: BpfMap) => T): T => BpfMap.usePin(join(dir(), 'maps', name), fn)!;
  const slots = (): Map<number, number> => new Map(pinned(STATS_MAPS.ifSlots, (m) => m.entries().map(([k, v]) => [k.readUInt32LE(0), v.readUInt32LE(0)] as const)));
  const links = (): string[] => (existsSync(join(dir(), 'links')) ? readdirSync(join(dir(), 'links')) : []);
  const linksOf = (ifindex: number) => links().filter((f) => new RegExp(`^(?:nat-)?${ifindex}-`).test(f));
  const keys = (name: string) => pinned(name, (m) => [...m.keys()].map((k) => k.toString('hex')));

  beforeAll(() => {
    ns = netns('brd');
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    veth(ns, 'k1', ns, 'k1x');
    ok('attach', 'k1'); // counters only: keeps the instance, and holds the first slot
  });
  afterAll(() => cleanup());

  /** Takes the host port's link away as a kill before linkOn would have: the pin, and on clsact the filter it names. */
  function unlinkHostPort(peer: number): void {
    for (const f of linksOf(peer)) unlinkSync(join(dir(), 'links', f)); // a tcx link goes with its last pin
    if (tcFlavour() === 'clsact') sh('ip', ['netns', 'exec', ns, 'tc', 'filter', 'del', 'dev', 'xnp1', 'ingress']);
  }
  /** Takes the port record away as a kill before writePort would have (what forgetPort deletes). */
  function unwritePort(peer: number): void {
    pinned(BRIDGE.maps.ports, (m) => m.delete(u32(peer)));
    pinned(BRIDGE.maps.txPorts, (m) => m.delete(u32(peer)));
    pinned(BRIDGE.maps.vlans, (m) => m.delete(VlanKey.encode({ ifindex: peer, vid: 1, pad: 0 })));
    pinned(BRIDGE.maps.flood, (m) => {
      const key = FloodKey.encode({ bridge: 1, vid: 1, pad: 0 });
      const rest = decodeFloodList(m.lookup(key)!).filter((x) => x !== peer);
      if (rest.length) m.update(key, floodList(rest));
      else m.delete(key);
    });
  }

  for (const kill of ['after claiming the slot, before the port record', 'after the port record, before the link'] as const) {
    it(`killed ${kill}: del frees the slot and link, the bridge's maps are empty, a new port gets the slot`, () => {
      ok('bridge', 'add', 'brk', '--address', '10.79.0.1/24');
      const peer = nsIfindex(ns, 'xnp1');
      const slot = slots().get(peer)!;
      expect(slot).toBeGreaterThan(slots().get(nsIfindex(ns, 'k1'))!);
      expect(linksOf(peer)).not.toEqual([]);
      // the local FDB entry is written after addPort returns: a kill inside it leaves none
      pinned(BRIDGE.maps.fdb, (m) => { for (const [k, v] of m.entries()) if (FdbEntry.decode(v).ifindex === peer) m.delete(k); });
      unlinkHostPort(peer);
      if (kill === 'after claiming the slot, before the port record') unwritePort(peer);
      // the state the kill leaves: the slot claimed, no link, the port record or not
      expect(slots().get(peer)).toBe(slot);
      expect(linksOf(peer)).toEqual([]);
      expect(keys(BRIDGE.maps.ports)).toEqual(kill === 'after the port record, before the link' ? [u32(peer).toString('hex')] : []);

      expect(ok('bridge', 'del', 'brk')).toBe('deleted bridge brk\n');
      expect(slots().has(peer), `slot ${slot} of the deleted host port`).toBe(false);
      expect(linksOf(peer)).toEqual([]);
      for (const name of [BRIDGE.maps.ports, BRIDGE.maps.txPorts, BRIDGE.maps.vlans, BRIDGE.maps.flood, BRIDGE.maps.fdb, BRIDGE.maps.bridges]) {
        expect(keys(name), name).toEqual([]);
      }
      expect(sh('ip', ['-n', ns, '-br', 'link', 'show'])).not.toMatch(/brk|xnp1/);

      veth(ns, 'n1', ns, 'n1x');
      ok('attach', 'n1');
      expect(slots().get(nsIfindex(ns, 'n1')), 'the new port\'s slot').toBe(slot);
      ok('detach', 'n1');
      sh('ip', ['-n', ns, 'link', 'del', 'n1']);
      expect([...slots().keys()]).toEqual([nsIfindex(ns, 'k1')]);
    });
  }

  it('then the last detach leaves nothing of the instance (on clsact: no qdisc mark of the deleted host port)', () => {
    ok('detach', 'k1');
    expect(existsSync(dir()) ? readdirSync(join(dir(), 'links')) : []).toEqual([]);
    expect(existsSync(dir())).toBe(false);
  });
});
