// What a VTEP's uplink does with a frame (xn_vx_uplink, xn_vx_uplink_tc), for
// the fuzz tier: the outer headers as the kernel would judge them (RFC 791,
// 768) and VXLAN's (RFC 7348), then the inner frame switched into the VNI's
// bridge and VLAN only, to local ports only (split horizon).
import { egressTag, fdbKey, type Outcome, type RefSwitch } from './bridge-ref.js';

export interface RefVtep { vni: number; bridge: number; vid: number; local: string; port: number; learning: boolean; peers: string[] }

const ip4 = (b: Buffer, off: number) => [...b.subarray(off, off + 4)].join('.');
const macAt = (f: Buffer, off: number) => [...f.subarray(off, off + 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');

/** The outcome, the inner frame (for a decapsulated one) and its VTEP; learning applied to sw.fdb. */
export function vxlanRef(sw: RefSwitch, vteps: RefVtep[], uplink: string, f: Buffer, hook: 'xdp' | 'tc'):
  Outcome & { learned?: boolean; inner?: Buffer; vtep?: RefVtep } {
  const drop = (reason: string) => ({ cls: 'drop' as const, reason });
  if (f.length < 14) return drop('truncated-ethernet');
  if (f.readUInt16BE(12) !== 0x0800) return { cls: 'pass' };
  const ip = f.subarray(14);
  if (ip.length < 20) return drop('truncated-ipv4');
  const hl = (ip[0] & 0x0f) * 4;
  const tot = ip.readUInt16BE(2);
  if (ip[0] >> 4 !== 4 || hl < 20 || tot < hl) return drop('malformed-ipv4');
  if (tot > ip.length || hl > ip.length) return drop('truncated-ipv4'); // options too, before the protocol (bpf/lib/ipv4.h, as NAT)
  if (ip[9] !== 17 || ip.readUInt16BE(6) & 0x3fff) return { cls: 'pass' }; // not UDP, or a fragment: the stack's
  const udp = ip.subarray(hl, tot);
  if (udp.length < 8) return drop('truncated-udp');
  const ulen = udp.readUInt16BE(4);
  if (ulen < 8 || ulen > udp.length) return drop('truncated-udp');
  const daddr = ip4(ip, 16);
  const dport = udp.readUInt16BE(2);
  const ours = vteps.some((v) => v.local === daddr && v.port === dport);
  const bad = (reason: string) => (ours ? drop(reason) : { cls: 'pass' as const }); // broken VXLAN to us is dropped, else not ours
  if (ulen < 16) return bad('vxlan-truncated');
  const vx = udp.subarray(8, ulen);
  if (vx.readUInt32BE(0) !== 0x08000000 || vx[7] !== 0) return bad('vxlan-bad-flags'); // I flag only, reserved bits zero, as the kernel wants
  const vni = vx.readUIntBE(4, 3);
  const v = vteps.find((t) => t.vni === vni && t.local === daddr && t.port === dport);
  if (!v) return bad('vxlan-unknown-vni');
  const inner = vx.subarray(8);
  if (inner.length < 14) return drop('vxlan-truncated');
  if (hook === 'tc' && inner.length < 34) return drop('vxlan-truncated'); // tc cannot shrink an skb below an outer IPv4 header
  if (!v.learning && !v.peers.includes(ip4(ip, 12))) return drop('vxlan-unknown-vtep');
  if ([0x8100, 0x88a8].includes(inner.readUInt16BE(12))) return drop('vlan-ingress-denied'); // a VNI carries one VLAN, untagged
  const src = macAt(inner, 6);
  if (inner[6] & 1 || src === '00:00:00:00:00:00') return drop('invalid-source-mac');
  let learned = false;
  if (v.learning && src !== sw.macs.get(v.bridge)) { // never the bridge's own MAC
    const k = fdbKey(v.bridge, v.vid, src);
    const e = sw.fdb.get(k);
    if (!e || (!e.isStatic && (e.port !== uplink || e.remote !== ip4(ip, 12)))) {
      sw.fdb.set(k, { port: uplink, isStatic: false, remote: ip4(ip, 12) });
      learned = true;
    }
  }
  const e = inner[0] & 1 ? undefined : sw.fdb.get(fdbKey(v.bridge, v.vid, macAt(inner, 0)));
  if (e?.remote) return { ...drop('same-port'), learned }; // never back into the overlay
  if (e) {
    const out = sw.ports.get(e.port);
    const tag = out && egressTag(out, v.vid);
    if (tag === undefined) return { ...drop('vlan-egress-denied'), learned };
    return { cls: 'forward', out: e.port, tag, learned, inner, vtep: v };
  }
  const members = [...sw.ports].filter(([, p]) => p.bridge === v.bridge && egressTag(p, v.vid) !== undefined).map(([n]) => n);
  return { cls: 'flood', members, learned, inner, vtep: v };
}
