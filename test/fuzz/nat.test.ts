// Fuzzes the NAT programs (XDP and tc) through BPF_PROG_RUN on a host shaped
// like test/bpf/nat.test.ts's: uplink up0 (10.99.0.1, gateway 10.99.0.254),
// containers behind ct0 (172.17.0.0/16, masqueraded), port mappings to C2.
// Frames from either side, well-formed flows (so replies and ICMP errors find
// conntrack entries) and their mutations. Checked for every frame: malformed
// ones (nat-ref.ts) are dropped unchanged and create no conntrack entry,
// others not NAT's are passed unchanged, and whatever leaves changed leaves
// with every checksum that was valid still valid; for every batch: drops
// counted = drop verdicts, by reason as the reference says.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDropsByIface } from '../../src/dataplane/stats.js';
import { enterNetns } from '../../src/dataplane/host.js';
import { ipv4ToNum, u32 } from '../../src/objects/codec.js';
import { CtStats, flowsDeleted, NAT, NatConfig, Portmap, PortmapKey, SNAT_FLAGS, SnatRule, snatKey } from '../../src/objects/nat.js';
import type { BpfMap, BpfObject } from '../../src/sys/libbpf.js';
import { ifNameToIndex } from '../../src/sys/libc.js';
import { builtObject, PinRoot, TC, XDP } from '../helpers/bpf.js';
import { ETH_P, IPPROTO, parse, type Parsed } from '../helpers/packet.js';
import { cleanup, netns, sh } from '../helpers/sys.js';
import { Mismatches, Runner, runBatches, started } from './harness.js';
import { FRAMES, frame, l3, mutate, Rng, runSeed, type Addrs } from './gen.js';
import { natRef } from './nat-ref.js';

const H = '10.99.0.1';
const GW = '10.99.0.254';
const BR = '172.17.0.1';
const C1 = '172.17.0.2';
const C2 = '172.17.0.3';
const MAC = { up0: '02:00:00:00:01:01', gw: '02:00:00:00:01:fe', ct0: '02:00:00:00:02:01', c1: '02:00:00:00:02:02', c2: '02:00:00:00:02:03' };
const SIDES = {
  ct0: { macs: [MAC.ct0, MAC.c1, MAC.c2], ips: ['198.51.100.7', '203.0.113.9', H, BR, '100.64.0.5', C2, '172.17.0.9'], srcs: [C1, C2, C1, C2, '10.1.1.1'] },
  up0: { macs: [MAC.up0, MAC.gw], ips: [H, H, H, C1, '10.99.0.7'], srcs: ['198.51.100.7', '203.0.113.9', '192.0.2.1', H] },
} as const;
const PORTS = [40000, 40001, 80, 53, 10080, 10053, 1024, 65535];

type Hook = 'xdp' | 'tc';
const DROP: Record<Hook, number> = { xdp: XDP.DROP, tc: TC.SHOT };
const ALLOWED: Record<Hook, number[]> = { xdp: [XDP.DROP, XDP.PASS, XDP.REDIRECT], tc: [TC.SHOT, TC.OK, TC.REDIRECT] };
const PASS: Record<Hook, number> = { xdp: XDP.PASS, tc: TC.OK };

/** The checksums of a parsed frame that are valid: header, L4, and the quoted header of an ICMP error. */
function validSums(p: Parsed): Record<string, boolean> {
  const v: Record<string, boolean> = {};
  if (p.ipv4) v.ipv4 = p.ipv4.headerChecksumValid;
  if (p.tcp) v.tcp = p.tcp.checksumValid;
  if (p.udp?.checksumValid !== undefined) v.udp = p.udp.checksumValid;
  if (p.icmp) v.icmp = p.icmp.checksumValid;
  if (p.icmp?.original?.ipv4) v.quoted = p.icmp.original.ipv4.headerChecksumValid;
  return v;
}

describe('fuzz: NAT programs', () => {
  let pins: PinRoot;
  let nat: BpfObject;
  const ifx: Record<string, number> = {};
  const maps = new Map<string, BpfMap>(); // opened once: nat.map() asks the kernel for the map's info every time
  const map = (name: string): BpfMap => maps.get(name) ?? maps.set(name, nat.map(name)).get(name)!;

  beforeAll(() => {
    const ns = netns('fznat');
    const ip = (...args: string[]) => sh('ip', ['-n', ns, ...args]);
    ip('link', 'add', 'up0', 'address', MAC.up0, 'mtu', '1400', 'type', 'veth', 'peer', 'name', 'up0x');
    ip('link', 'add', 'ct0', 'address', MAC.ct0, 'type', 'veth', 'peer', 'name', 'ct0x');
    for (const d of ['up0', 'up0x', 'ct0', 'ct0x']) ip('link', 'set', d, 'up');
    ip('addr', 'add', `${H}/24`, 'dev', 'up0');
    ip('addr', 'add', `${BR}/16`, 'dev', 'ct0');
    ip('route', 'add', 'default', 'via', GW);
    ip('route', 'add', '100.64.0.0/16', 'via', '10.99.0.253'); // a next hop without a neighbour
    ip('neigh', 'add', GW, 'lladdr', MAC.gw, 'dev', 'up0', 'nud', 'permanent');
    ip('neigh', 'add', C1, 'lladdr', MAC.c1, 'dev', 'ct0', 'nud', 'permanent');
    ip('neigh', 'add', C2, 'lladdr', MAC.c2, 'dev', 'ct0', 'nud', 'permanent');
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    pins = new PinRoot('fznat');
    enterNetns(ns);
    for (const d of ['up0', 'ct0']) ifx[d] = ifNameToIndex(d);
    nat = pins.open(builtObject(NAT.object));
  });
  afterAll(() => {
    pins?.cleanup();
    cleanup();
  });

  function configure(): void {
    for (const name of [NAT.maps.ct, NAT.maps.snat, NAT.maps.portmap, NAT.maps.addrs]) {
      const m = map(name);
      for (const k of [...m.keys()]) m.delete(k);
    }
    flowsDeleted(map(NAT.maps.gen));
    for (const m of [map(NAT.maps.ctStats), map('xn_drops'), map('xn_if_stats')]) for (const k of [...m.keys()]) m.update(k, Buffer.alloc(m.valueBufSize));
    map(NAT.maps.config).update(u32(0), NatConfig.encode({ tcp_syn_sent: 0, tcp_syn_recv: 0, tcp_established: 0, tcp_fin_wait: 0, tcp_time_wait: 0, tcp_close: 0, udp: 0, udp_replied: 0, icmp: 0 }));
    map(NAT.maps.snat).update(snatKey(ifx.up0, '172.17.0.0/16'), SnatRule.encode({
      addr_min: ipv4ToNum(H), addr_max: ipv4ToNum(H), port_min: 1024, port_max: 65535, flags: SNAT_FLAGS.MASQUERADE,
    }));
    for (const [proto, port, toPort] of [[IPPROTO.TCP, 10080, 80], [IPPROTO.UDP, 10053, 53]]) {
      map(NAT.maps.portmap).update(PortmapKey.encode({ ifindex: 0, port, proto, pad: 0 }), Portmap.encode({ to_addr: ipv4ToNum(C2), to_port: toPort, pad: 0 }));
    }
    map(NAT.maps.addrs).update(u32(ipv4ToNum(H)).reverse(), u32(ifx.up0));
    map(NAT.maps.addrs).update(u32(ipv4ToNum(BR)).reverse(), u32(ifx.ct0));
  }
  const createdAt = CtStats.fields.find((f) => f.name === 'created')!.offset;
  const created = () => { // conntrack's created count: that one field of the per-CPU stats, summed
    const v = map(NAT.maps.ctStats).lookup(u32(0))!;
    let n = 0n;
    for (let off = 0; off < v.length; off += Math.ceil(CtStats.size / 8) * 8) n += v.readBigUInt64LE(off + createdAt);
    return n;
  };

  function fuzz(hook: Hook): void {
    const seed = runSeed();
    const since = started();
    const r = new Rng(seed);
    configure();
    const runner = new Runner(nat.program(NAT.programs[hook]), hook);
    const mismatches = new Mismatches(seed);
    const fail = mismatches.fail.bind(mismatches);
    let translated = 0; // frames that left changed: the checksum check had something to check
    let dropVerdicts: Record<string, number> = {};
    let malformedDrops: Record<string, Record<string, number>> = {};
    let createdBefore: bigint | undefined; // conntrack's created count now, if known
    const reset = () => {
      configure();
      createdBefore = undefined;
      dropVerdicts = {};
      malformedDrops = {};
    };

    /** Frame i: drawn, run, checked against the reference; its drops accounted. */
    const step = (i: number) => {
      const side = r.pick(['ct0', 'up0'] as const);
      const a: Addrs = { ...SIDES[side], ports: PORTS };
      const { frame: f, how } = mutate(r, frame(r, a, [1], r.chance(0.95) ? l3(r, a) : r.bytes(r.int(40)), r.chance(0.95) ? ETH_P.IPV4 : ETH_P.ARP, 0.05));
      const ref = natRef(f);
      // conntrack's created count around every frame that must create nothing; one read serves a run of them
      const noEntry = ref.cls === 'malformed' || ref.cls === 'skip';
      if (noEntry) createdBefore ??= created();
      const res = runner.run(ifx[side], f);
      if (!res) return { frame: f, how, ran: false };
      if (!noEntry) createdBefore = undefined; // it may create one
      const where = () => `${hook} on ${side}: verdict ${res.retval}, reference ${JSON.stringify(ref)}`;
      if (!ALLOWED[hook].includes(res.retval)) fail(i, f, how, where());
      if (res.retval === DROP[hook]) dropVerdicts[side] = (dropVerdicts[side] ?? 0) + 1;
      if (ref.cls === 'malformed' || ref.cls === 'skip') {
        const verdict = ref.cls === 'malformed' ? DROP[hook] : PASS[hook];
        if (res.retval !== verdict || !res.data.equals(f)) fail(i, f, how, `${where()}, out ${res.data.toString('hex')}`);
        const after = created();
        if (after !== createdBefore) fail(i, f, how, `${where()}: created a conntrack entry`);
        createdBefore = after;
        if (ref.cls === 'malformed') {
          const m = (malformedDrops[side] ??= {});
          m[ref.reason] = (m[ref.reason] ?? 0) + 1;
        }
      } else if (res.retval !== DROP[hook] && !res.data.equals(f)) {
        translated++;
        // changed on its way out: every checksum valid before is valid after
        const was = validSums(parse(f));
        const now = validSums(parse(res.data));
        const broken = Object.keys(was).filter((k) => was[k] && now[k] === false);
        if (broken.length) fail(i, f, how, `${where()}: ${broken.join(', ')} checksum broken, out ${res.data.toString('hex')}`);
      }
      return { frame: f, how, ran: true };
    };

    /** Counters add up: a drop verdict is one drop counted, under a reason; a malformed frame's under its own. '' or what is wrong. */
    const checkDrops = (): string => {
      const bad: string[] = [];
      const drops = readDropsByIface(map('xn_drops'));
      for (const side of ['ct0', 'up0']) {
        const got = drops.get(ifx[side]) ?? {};
        const total = Object.values(got).reduce((x, y) => x + y, 0);
        if (total !== (dropVerdicts[side] ?? 0)) bad.push(`${side}: ${total} drops counted, ${dropVerdicts[side] ?? 0} drop verdicts`);
        for (const [reason, n] of Object.entries(malformedDrops[side] ?? {})) {
          if ((got[reason] ?? 0) < n) bad.push(`${side}: ${got[reason] ?? 0} ${reason} drops counted, ${n} such frames`);
        }
      }
      return bad.join('; ');
    };

    const { run } = runBatches({ program: `nat ${hook}`, rng: r, frames: FRAMES, since, mismatches, step, checkMaps: checkDrops, reset, needsReset: () => map(NAT.maps.ct).count() > 20_000 });
    runner.close();
    console.log(`  ${translated} left translated`);
    expect(translated).toBeGreaterThan(run / 20); // the generator must keep reaching translation
    expect(mismatches.list.filter(Boolean), `seed ${seed}: ${mismatches.list.length} mismatches`).toEqual([]);
  }

  it('XDP (xn_nat_xdp): malformed frames dropped by reason, no entry; checksums kept', () => fuzz('xdp'), 600_000);
  it('tc (xn_nat_tc): malformed frames dropped by reason, no entry; checksums kept', () => fuzz('tc'), 600_000);
});
