// What the NAT programs must do with a frame before any table is consulted,
// for the fuzz tier: which frames are malformed (dropped, by this reason, and
// leaving no conntrack entry), which are none of NAT's business (passed
// untouched), and which it may translate. Written from the headers' rules
// (RFC 791, 768, 793, 792), not from bpf/lib/nat.h.

export type NatClass =
  | { cls: 'malformed'; reason: string }
  | { cls: 'skip' } // not untagged IPv4 TCP/UDP/ICMP, or ICMP NAT never translates
  | { cls: 'nat' }; // a flow NAT may translate (or an error about one, or a later fragment)

export function natRef(f: Buffer): NatClass {
  if (f.length < 14) return { cls: 'malformed', reason: 'truncated-ethernet' };
  if (f.readUInt16BE(12) !== 0x0800) return { cls: 'skip' };
  const ip = f.subarray(14);
  if (ip.length < 20) return { cls: 'malformed', reason: 'truncated-ipv4' };
  const hl = (ip[0] & 0x0f) * 4;
  const tot = ip.readUInt16BE(2);
  if (ip[0] >> 4 !== 4 || hl < 20 || tot < hl) return { cls: 'malformed', reason: 'malformed-ipv4' };
  if (tot > ip.length || hl > ip.length) return { cls: 'malformed', reason: 'truncated-ipv4' };
  const proto = ip[9];
  if (![1, 6, 17].includes(proto)) return { cls: 'skip' };
  if (ip.readUInt16BE(6) & 0x1fff) return { cls: 'nat' }; // a later fragment: no ports, decided by the rules
  const room = tot - hl; // L4 bytes the header declares (Ethernet padding is not L4)
  if (proto === 6) return room < 20 ? { cls: 'malformed', reason: 'truncated-tcp' } : { cls: 'nat' };
  if (proto === 17) return room < 8 ? { cls: 'malformed', reason: 'truncated-udp' } : { cls: 'nat' };
  if (room < 8) return { cls: 'malformed', reason: 'truncated-icmp' };
  const type = ip[hl];
  if (type === 0 || type === 8) return { cls: 'nat' };
  if (![3, 11, 12].includes(type)) return { cls: 'skip' };
  // an error: it must quote an IPv4 header and 8 bytes of what followed it
  const q = ip.subarray(hl + 8, tot);
  if (q.length < 20) return { cls: 'malformed', reason: 'truncated-icmp' };
  const qhl = (q[0] & 0x0f) * 4;
  if (q[0] >> 4 !== 4 || qhl < 20) return { cls: 'malformed', reason: 'malformed-icmp-error' };
  if (q.length < qhl + 8) return { cls: 'malformed', reason: 'truncated-icmp' };
  return { cls: 'nat' };
}
