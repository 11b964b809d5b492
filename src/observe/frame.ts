// One-line summaries of captured frame heads (the monitor's text form):
// Ethernet, 802.1Q, ARP, IPv4 with TCP/UDP/ICMP, and VXLAN with its inner
// frame. A frame cut short says so where it ends.

const mac = (b: Buffer, o: number) => [...b.subarray(o, o + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
const ip = (b: Buffer, o: number) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;

export const VXLAN_PORTS = new Set([4789, 8472]);
const ICMP_TYPES: Record<number, string> = { 0: 'echo-reply', 3: 'unreachable', 8: 'echo-request', 11: 'time-exceeded' };
const TCP_FLAGS = ['FIN', 'SYN', 'RST', 'PSH', 'ACK'];

/** What a frame head says, e.g. `02:..→ff:.. vlan 20 ARP who-has 10.0.0.1`. */
export function describeFrame(b: Buffer, depth = 0): string {
  if (b.length < 14) return `truncated ethernet (${b.length} bytes)`;
  const parts = [`${mac(b, 6)}→${mac(b, 0)}`];
  let o = 12;
  let type = b.readUInt16BE(o);
  while ((type === 0x8100 || type === 0x88a8) && b.length >= o + 6) {
    parts.push(`vlan ${b.readUInt16BE(o + 2) & 0xfff}`);
    o += 4;
    type = b.readUInt16BE(o);
  }
  o += 2;
  if (type === 0x0806) parts.push(arp(b, o));
  else if (type === 0x0800) parts.push(ipv4(b, o, depth));
  else if (type === 0x86dd) parts.push('IPv6');
  else parts.push(`ethertype 0x${type.toString(16).padStart(4, '0')}`);
  return parts.join(' ');
}

function arp(b: Buffer, o: number): string {
  if (b.length < o + 28) return 'ARP truncated';
  const op = b.readUInt16BE(o + 6);
  if (op === 1) return `ARP who-has ${ip(b, o + 24)} tell ${ip(b, o + 14)}`;
  if (op === 2) return `ARP reply ${ip(b, o + 14)} is-at ${mac(b, o + 8)}`;
  return `ARP op ${op}`;
}

function ipv4(b: Buffer, o: number, depth: number): string {
  if (b.length < o + 20) return 'IPv4 truncated';
  const ihl = (b[o] & 15) * 4;
  const proto = b[o + 9];
  const head = `IPv4 ${ip(b, o + 12)}→${ip(b, o + 16)} ttl ${b[o + 8]}`;
  const frag = b.readUInt16BE(o + 6) & 0x1fff;
  if (frag) return `${head} fragment`;
  const l4 = o + ihl;
  if (proto === 1) {
    if (b.length < l4 + 4) return `${head} ICMP truncated`;
    return `${head} ICMP ${ICMP_TYPES[b[l4]] ?? `type ${b[l4]}`}`;
  }
  if (proto === 6) {
    if (b.length < l4 + 14) return `${head} TCP truncated`;
    const flags = TCP_FLAGS.filter((_, i) => b[l4 + 13] & (1 << i)).join(',');
    return `${head} TCP ${b.readUInt16BE(l4)}→${b.readUInt16BE(l4 + 2)} [${flags}]`;
  }
  if (proto === 17) {
    if (b.length < l4 + 8) return `${head} UDP truncated`;
    const dport = b.readUInt16BE(l4 + 2);
    const udp = `${head} UDP ${b.readUInt16BE(l4)}→${dport}`;
    if (VXLAN_PORTS.has(dport) && depth === 0 && b.length >= l4 + 16) {
      return `${udp} VXLAN vni ${b.readUIntBE(l4 + 12, 3)}: ${describeFrame(b.subarray(l4 + 16), 1)}`;
    }
    return udp;
  }
  return `${head} proto ${proto}`;
}

/** The VNI of a captured VXLAN frame (outer headers at its start), if it is one. */
export function frameVni(b: Buffer): number | undefined {
  if (b.length < 14 + 20 + 8 + 8 || b.readUInt16BE(12) !== 0x0800 || b[14 + 9] !== 17) return undefined;
  const l4 = 14 + (b[14] & 15) * 4;
  if (b.length < l4 + 16 || !VXLAN_PORTS.has(b.readUInt16BE(l4 + 2))) return undefined;
  return b.readUIntBE(l4 + 12, 3);
}
