// Reading a bridge's maps in the reference's terms, and comparing them, for
// the bridge and VXLAN fuzz tests.
import { BRIDGE, FDB_FLAGS, FdbEntry, FdbKey } from '../../src/objects/bridge.js';
import { numToIpv4 } from '../../src/objects/codec.js';
import type { BpfObject } from '../../src/sys/libbpf.js';
import { macStr, parse } from '../helpers/packet.js';
import { fdbKey, type FdbEntry as RefEntry } from './bridge-ref.js';

/** The FDB as the reference keeps it: interfaces by name. */
export function fdbNow(o: BpfObject, ifx: Record<string, number>): Map<string, RefEntry> {
  const byIfx = new Map(Object.entries(ifx).map(([n, i]) => [i, n]));
  const out = new Map<string, RefEntry>();
  for (const [k, v] of o.map(BRIDGE.maps.fdb).entries()) {
    const key = FdbKey.decode(k);
    const e = FdbEntry.decode(v);
    const entry: RefEntry = { port: byIfx.get(e.ifindex) ?? `ifindex ${e.ifindex}`, isStatic: !!(e.flags & FDB_FLAGS.STATIC) };
    if (e.remote) entry.remote = numToIpv4(e.remote);
    out.set(fdbKey(key.bridge, key.vid, macStr(key.mac)), entry);
  }
  return out;
}

/**
 * The bytes tc leaves of a forwarded frame: its tags live in skb metadata.
 * A test run hands tc the 802.1Q tag in the bytes (the stack would have moved
 * it into the skb already); popping it moves the next tag, if any, into the
 * skb too, and pushing one back puts that one back in the bytes. So: a tagged
 * frame loses its tag from the bytes, and the next one too if it leaves
 * untagged. Whether it leaves tagged is bridge.test.ts's to check, on a wire.
 */
export function tcBytes(f: Buffer, tag: boolean): Buffer {
  if (f.readUInt16BE(12) !== 0x8100) return f;
  const next = f.length >= 22 && [0x8100, 0x88a8].includes(f.readUInt16BE(16));
  return Buffer.concat([f.subarray(0, 12), f.subarray(!tag && next ? 20 : 16)]);
}

/** Where two nested records of numbers differ: "tx.p2 9 (expected 10)". */
export function diff(got: object, want: object, at = ''): string {
  const keys = new Set([...Object.keys(got), ...Object.keys(want)]);
  return [...keys].sort().map((k) => {
    const g = (got as Record<string, unknown>)[k];
    const w = (want as Record<string, unknown>)[k];
    if (typeof g === 'object' || typeof w === 'object') return diff((g ?? {}) as object, (w ?? {}) as object, `${at}${k}.`);
    return g === w ? '' : `${at}${k} ${g ?? 0} (expected ${w ?? 0})`;
  }).filter(Boolean).join(', ');
}

/** JSON with keys sorted at every level: counters compare whatever order they were met in. */
export function canon(v: unknown): string {
  return JSON.stringify(v, (_, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort()) : x));
}

/**
 * What is wrong with an encapsulated frame, or '': outer Ethernet to the next
 * hop, IPv4 from our VTEP to the remote (valid header checksum, DF, lengths
 * that add up), UDP to 4789 from the ephemeral range (checksum 0 or valid),
 * VXLAN with only the I flag and the VLAN's VNI, then the inner frame as given.
 */
export function checkEncap(out: Buffer, inner: Buffer, o: { src: string; dst: string; saddr: string; daddr: string; vni: number }): string {
  const p = parse(out);
  const want = {
    eth: `${o.dst} ${o.src} 2048`, ip: `${o.saddr} ${o.daddr} 17 ${inner.length + 36} true 2 0`,
    udp: `4789 ${inner.length + 16} ${p.udp?.checksum === 0 || p.udp?.checksumValid === true}`, vxlan: `8 ${o.vni}`,
  };
  const got = {
    eth: `${p.eth?.dst} ${p.eth?.src} ${p.eth?.type}`,
    ip: p.ipv4 && `${p.ipv4.src} ${p.ipv4.dst} ${p.ipv4.proto} ${p.ipv4.len} ${p.ipv4.headerChecksumValid} ${p.ipv4.flags} ${p.ipv4.fragOffset}`,
    udp: p.udp && `${p.udp.dport} ${p.udp.len} true`, vxlan: p.vxlan && `${p.vxlan.flags} ${p.vxlan.vni}`,
  };
  const wrong = Object.keys(want).filter((k) => (want as Record<string, string>)[k] !== (got as Record<string, string | undefined>)[k])
    .map((k) => `${k} ${(got as Record<string, string | undefined>)[k]} (expected ${(want as Record<string, string>)[k]})`);
  if (p.udp && (p.udp.sport < 49152)) wrong.push(`source port ${p.udp.sport} below 49152`);
  if (out.length !== inner.length + 50 || !out.subarray(50).equals(inner)) wrong.push('inner frame differs');
  if (out.readUInt32BE(42) !== 0x08000000) wrong.push(`VXLAN flags word ${out.readUInt32BE(42).toString(16)}`);
  return wrong.join(', ');
}
