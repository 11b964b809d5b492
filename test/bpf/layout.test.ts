// Every TypeScript codec matches the layout clang gave the C struct (BTF), every
// drop reason the C code can count has a name, and every enum and #define of the
// shared headers (bpf/include) equals its TypeScript mirror. Enums whose values
// only travel in __u8/__u32 fields are absent from BTF, so those, like the
// #defines, are read from the headers the objects are compiled from.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Btf } from '../../src/objects/btf.js';
import type { Codec } from '../../src/objects/codec.js';
import { CacheStats, DROP_MAX, DROP_REASONS, DropKey, IfStats } from '../../src/objects/stats.js';
import { BRIDGE, BRIDGE_CODECS, FDB_FLAGS, FDB_SIZE, PORT_FLAGS, VTEP_FLAGS, VXLAN, VXLAN_CODECS, XDP_NOTES } from '../../src/objects/bridge.js';
import { BenchCount, GEN_HDR_MAX, GEN_SPORT_OFF, GenFrame } from '../../src/objects/bench.js';
import { CT_FLAGS, CT_STATE, DEFAULT_TIMEOUTS, NAT, NAT_CODECS, SNAT_FLAGS, type NatConfigT } from '../../src/objects/nat.js';
import { EVENT_HOOKS, EVENT_TYPES, MON_FLAGS, MONITOR, MONITOR_CODECS } from '../../src/objects/monitor.js';
import { BR_CACHE, NAT_HOT } from '../../src/objects/memory.js';
import { BpfObject } from '../../src/sys/libbpf.js';
import { ROOT } from '../helpers/sys.js';

const CODECS = [IfStats, DropKey, CacheStats, ...BRIDGE_CODECS, ...VXLAN_CODECS, GenFrame, BenchCount, ...NAT_CODECS, ...MONITOR_CODECS] as unknown as Codec<never>[];

const objects = readdirSync(join(ROOT, 'build/bpf')).filter((f) => f.endsWith('.bpf.o'));
function btfOf(file: string): Btf {
  const o = BpfObject.open(join(ROOT, 'build/bpf', file), { pinRoot: '/nonexistent' });
  try {
    return new Btf(o.btf());
  } finally {
    o.close();
  }
}
const btfs = new Map(objects.map((f) => [f, btfOf(f)]));

describe('codec layouts match BTF', () => {
  for (const c of CODECS) {
    it(`struct ${c.name}`, () => {
      let seen = 0;
      for (const [file, btf] of btfs) {
        const s = btf.struct(c.name);
        if (!s) continue;
        seen++;
        expect({ file, size: s.size, members: s.members }).toEqual({ file, size: c.size, members: c.fields });
      }
      expect(seen, `no built object declares struct ${c.name}`).toBeGreaterThan(0);
    });
  }

  it('drop reasons: every C enum value has a name, and no name is stale', () => {
    const values = btfs.get('counter.bpf.o')!.enumValues('xn_drop_reason')!;
    expect(values.get('XN_DROP_MAX')).toBe(DROP_MAX);
    const reasons = [...values].filter(([n]) => n !== 'XN_DROP_MAX').map(([, v]) => v).sort((a, b) => a - b);
    expect(reasons).toEqual(Object.keys(DROP_REASONS).map(Number).sort((a, b) => a - b));
  });
});

/** `enum NAME { A = 1, ... }` and `#define XN_X 123` of C source (the shared headers' style: explicit values). */
function cDefinitions(files: string[]): { enums: Map<string, Map<string, number>>; defines: Map<string, number> } {
  const enums = new Map<string, Map<string, number>>();
  const defines = new Map<string, number>();
  for (const f of files) {
    const text = readFileSync(join(ROOT, f), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
    for (const [, name, body] of text.matchAll(/enum\s+(\w+)\s*\{([^}]*)\}/g)) {
      enums.set(name, new Map([...body.matchAll(/(\w+)\s*=\s*(0x[0-9a-fA-F]+|\d+)/g)].map(([, k, v]) => [k, Number(v)])));
    }
    for (const [, name, v] of text.matchAll(/^#define\s+(XN_\w+)\s+(0x[0-9a-fA-F]+|\d+)U?L*\s*$/gm)) defines.set(name, Number(v));
  }
  return { enums, defines };
}
const INCLUDE = readdirSync(join(ROOT, 'bpf/include')).filter((f) => f.endsWith('.h')).map((f) => `bpf/include/${f}`);
const prefixed = (prefix: string, o: Record<string, number>) => new Map(Object.entries(o).map(([k, v]) => [prefix + k, v]));
const named = (prefix: string, o: Record<number, string>) => new Map(Object.entries(o).map(([v, k]) => [prefix + k.toUpperCase(), Number(v)]));
const timeout = (k: keyof NatConfigT) => DEFAULT_TIMEOUTS[k];

/** Every enum of bpf/include and its TypeScript mirror (xn_drop_reason: checked against BTF above). */
const ENUM_MIRRORS: Record<string, Map<string, number> | 'btf'> = {
  xn_drop_reason: 'btf',
  xn_port_flags: prefixed('XN_PORT_', PORT_FLAGS),
  xn_fdb_flags: prefixed('XN_FDB_', FDB_FLAGS),
  xn_vtep_flags: prefixed('XN_VTEP_', VTEP_FLAGS),
  xn_ct_state: prefixed('XN_CT_', CT_STATE),
  xn_ct_flags: prefixed('XN_CT_', CT_FLAGS),
  xn_snat_flags: prefixed('XN_SNAT_', SNAT_FLAGS),
  xn_ev_type: named('XN_EV_', EVENT_TYPES),
  xn_ev_hook: named('XN_EV_HOOK_', EVENT_HOOKS),
};

/** Every #define of bpf/include and its TypeScript mirror; a string says why user space needs none. */
const DEFINE_MIRRORS: Record<string, number | string> = {
  XN_MAX_IFACES: 'user space reads xn_if_stats\' max_entries',
  XN_GEN_SPORT_OFF: GEN_SPORT_OFF,
  XN_GEN_HDR_MAX: GEN_HDR_MAX,
  XN_MAX_BRIDGES: BRIDGE.limits.bridges,
  XN_MAX_PORTS: BRIDGE.limits.ports,
  XN_MAX_VLAN_MEMBERS: 'user space reads xn_vlans\' max_entries',
  XN_FDB_MAX: FDB_SIZE.default,
  XN_FLOOD_MAX: BRIDGE.limits.floodMax,
  XN_PORT_LOCK_IPS: BRIDGE.limits.lockIps,
  XN_META_LOCAL: XDP_NOTES.LOCAL,
  XN_META_PUNT: XDP_NOTES.PUNT,
  XN_ARP_MAX: 'user space reads xn_arp\' max_entries',
  XN_EV_CAP: MONITOR.capture,
  XN_MON_DROPS: MON_FLAGS.DROPS,
  XN_MON_TRACE: MON_FLAGS.TRACE,
  XN_CT_MAX: 'the loader sizes xn_ct from --conntrack-max (ctEntriesFor)',
  XN_SNAT_RULES_MAX: NAT.limits.snatRules,
  XN_PORTMAPS_MAX: NAT.limits.portmaps,
  XN_NAT_ADDRS_MAX: NAT.limits.addrs,
  XN_NAT_PORT_MIN: NAT.hairpinPorts[0],
  XN_NAT_PORT_MAX: NAT.hairpinPorts[1],
  XN_CT_DEF_TCP_SYN_SENT: timeout('tcp_syn_sent'),
  XN_CT_DEF_TCP_SYN_RECV: timeout('tcp_syn_recv'),
  XN_CT_DEF_TCP_ESTABLISHED: timeout('tcp_established'),
  XN_CT_DEF_TCP_FIN_WAIT: timeout('tcp_fin_wait'),
  XN_CT_DEF_TCP_TIME_WAIT: timeout('tcp_time_wait'),
  XN_CT_DEF_TCP_CLOSE: timeout('tcp_close'),
  XN_CT_DEF_UDP: timeout('udp'),
  XN_CT_DEF_UDP_REPLIED: timeout('udp_replied'),
  XN_CT_DEF_ICMP: timeout('icmp'),
  XN_MAX_VTEPS: VXLAN.limits.vteps,
  XN_VX_REMOTES_MAX: VXLAN.limits.remotesMax,
  XN_VX_PEERS_MAX: VXLAN.limits.peers,
  XN_VX_HLEN: VXLAN.headerLen,
  XN_VX_SPORT_MIN: VXLAN.sourcePorts.min,
  XN_VX_SPORT_RANGE: VXLAN.sourcePorts.max - VXLAN.sourcePorts.min + 1,
};

describe('constants shared by C and TypeScript', () => {
  const { enums, defines } = cDefinitions(INCLUDE);

  it('every enum of bpf/include has a mirror, and no mirror is stale', () => {
    expect([...enums.keys()].sort()).toEqual(Object.keys(ENUM_MIRRORS).sort());
  });
  for (const [name, mirror] of Object.entries(ENUM_MIRRORS)) {
    if (mirror === 'btf') continue;
    it(`enum ${name}`, () => expect(Object.fromEntries(mirror)).toEqual(Object.fromEntries(enums.get(name) ?? [])));
  }

  it('every #define of bpf/include has a mirror, and no mirror is stale', () => {
    expect([...defines.keys()].sort()).toEqual(Object.keys(DEFINE_MIRRORS).sort());
  });
  it('each #define equals its mirror', () => {
    const c = Object.fromEntries([...defines].filter(([k]) => typeof DEFINE_MIRRORS[k] === 'number'));
    const ts = Object.fromEntries(Object.entries(DEFINE_MIRRORS).filter(([, v]) => typeof v === 'number'));
    expect(ts).toEqual(c);
  });

  it('the per-CPU caches\' bounds and entry sizes (bpf/lib) match src/objects/memory.ts', () => {
    const lib = cDefinitions(['bpf/lib/bridge.h', 'bpf/lib/nat_hot.h']).defines;
    expect({ br: BR_CACHE.maxPart, nat: NAT_HOT.maxPart, natWays: NAT_HOT.ways })
      .toEqual({ br: lib.get('XN_BR_CACHE_SIZE'), nat: lib.get('XN_NAT_HOT_SIZE'), natWays: lib.get('XN_NAT_HOT_WAYS') });
    const bridge = btfs.get('bridge.bpf.o')!;
    const nat = btfs.get('nat.bpf.o')!;
    expect({ br: bridge.struct('br_cached')?.size, nat: nat.struct('nat_hot')?.size }).toEqual({ br: BR_CACHE.entryBytes, nat: NAT_HOT.entryBytes });
  });
});
