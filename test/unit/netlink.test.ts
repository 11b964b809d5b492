// The netlink codec byte for byte against the kernel's ABI (linux/netlink.h,
// rtnetlink.h, if_link.h, if_addr.h, veth.h): requests as rtnl.ts sends them,
// answers as the kernel writes them, and every malformed length refused.
import { describe, expect, it } from 'vitest';
import { MalformedNetlink, NLM_F, NLMSG, attr, message, nestAttr, parseAttrs, parseMessages, parseStatus, strAttr, u32Attr } from '../../src/sys/netlink.js';
import { addressBody, parseAddress, parseRoute, routeAddBody, routeGetBody, vethBody } from '../../src/sys/rtnl.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
/** A little-endian u16/u32 as hex, to write fixtures that read like the struct. */
const le16 = (n: number) => Buffer.from([n & 0xff, n >> 8]).toString('hex');
const le32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n >>> 0); return b.toString('hex'); };
const nla = (len: number, type: number) => le16(len) + le16(type);

describe('netlink attributes and messages', () => {
  it('pads attributes to 4 bytes and counts the length without the padding', () => {
    expect(u32Attr(4, 1500).toString('hex')).toBe(`${nla(8, 4)}dc050000`);
    expect(strAttr(3, 'eth0').toString('hex')).toBe(`${nla(9, 3)}6574683000` + '000000'); // "eth0\0", 3 bytes of padding
    expect(attr(1, hex('020000000001')).toString('hex')).toBe(`${nla(10, 1)}020000000001` + '0000');
    expect(nestAttr(18, [u32Attr(1, 7)]).toString('hex')).toBe(`${nla(12, 0x8012)}${nla(8, 1)}07000000`);
    expect(() => attr(1, Buffer.alloc(0x10000))).toThrow(/over 65535/);
  });

  it('writes the header: length without padding, type, flags, sequence, port 0', () => {
    const m = message(26, NLM_F.REQUEST | NLM_F.ACK, 7, hex('0102030405'));
    expect(m.toString('hex')).toBe(`${le32(21)}${le16(26)}${le16(5)}${le32(7)}${le32(0)}0102030405000000`);
  });

  it('splits a datagram into its messages, the last one unpadded', () => {
    const a = message(16, NLM_F.MULTI, 3, hex('aabbcc'));
    const b = message(NLMSG.DONE, NLM_F.MULTI, 3, hex('00000000'));
    const ms = parseMessages(Buffer.concat([a, b.subarray(0, 20)]));
    expect(ms.map((m) => [m.type, m.flags, m.seq, m.body.toString('hex')])).toEqual([[16, 2, 3, 'aabbcc'], [3, 2, 3, '00000000']]);
  });

  it('refuses message lengths that do not fit, and stray bytes', () => {
    const m = message(16, 0, 1, hex('00000000'));
    const short = Buffer.from(m);
    short.writeUInt32LE(15, 0);
    expect(() => parseMessages(short)).toThrow(MalformedNetlink);
    const long = Buffer.from(m);
    long.writeUInt32LE(21, 0);
    expect(() => parseMessages(long)).toThrow(/message of length 21 at offset 0 of a 20-byte datagram/);
    expect(() => parseMessages(Buffer.concat([m, hex('0000')]))).toThrow(/2 stray bytes/);
    expect(parseMessages(Buffer.alloc(0))).toEqual([]);
  });

  it('parses attributes: flag bits masked, padding skipped, the last of a repeated type kept', () => {
    const a = parseAttrs(Buffer.concat([strAttr(3, 'lo'), nestAttr(18, [u32Attr(1, 9)]), u32Attr(4, 1), u32Attr(4, 2)]));
    expect([...a.keys()]).toEqual([3, 18, 4]);
    expect(a.get(3)!.toString('hex')).toBe('6c6f00');
    expect(parseAttrs(a.get(18)!).get(1)!.readUInt32LE(0)).toBe(9);
    expect(a.get(4)!.readUInt32LE(0)).toBe(2);
  });

  it('refuses attribute lengths under the header or past the end', () => {
    expect(() => parseAttrs(hex(`${nla(3, 1)}00000000`))).toThrow(/attribute 1 of length 3/);
    expect(() => parseAttrs(hex(`${nla(12, 1)}00000000`))).toThrow(/attribute 1 of length 12 at offset 0 of 8 bytes/);
    expect(() => parseAttrs(hex(`${nla(8, 1)}0000000000`))).toThrow(/1 stray bytes/);
  });
});

describe('the kernel\'s status answers', () => {
  const request = message(24, NLM_F.REQUEST | NLM_F.ACK, 5, hex('0200'.padEnd(24, '0')));
  const error = (errno: number, flags: number, tail: Buffer) => parseMessages(message(NLMSG.ERROR, flags, 5, Buffer.concat([hex(le32(-errno)), tail])))[0];

  it('an ack is errno 0', () => {
    expect(parseStatus(error(0, NLM_F.CAPPED, request.subarray(0, 16)))).toEqual({ errno: 0 });
  });

  it('a capped error with the extended ack\'s message (NETLINK_CAP_ACK + NETLINK_EXT_ACK)', () => {
    const tlvs = Buffer.concat([strAttr(1, 'Invalid prefix for given prefix length'), u32Attr(2, 36)]); // NLMSGERR_ATTR_MSG, _OFFS
    expect(parseStatus(error(22, NLM_F.CAPPED | NLM_F.ACK_TLVS, Buffer.concat([request.subarray(0, 16), tlvs]))))
      .toEqual({ errno: 22, reason: 'Invalid prefix for given prefix length' });
  });

  it('an uncapped error carries the whole request before the attributes', () => {
    const tlvs = strAttr(1, 'Device does not exist');
    expect(parseStatus(error(19, NLM_F.ACK_TLVS, Buffer.concat([request, tlvs])))).toEqual({ errno: 19, reason: 'Device does not exist' });
  });

  it('a dump\'s NLMSG_DONE: its errno and reason right after the errno', () => {
    const done = parseMessages(message(NLMSG.DONE, NLM_F.MULTI | NLM_F.ACK_TLVS, 5, Buffer.concat([hex(le32(-95)), strAttr(1, 'no')])))[0];
    expect(parseStatus(done)).toEqual({ errno: 95, reason: 'no' });
  });

  it('refuses a status too short for what its flags say', () => {
    expect(() => parseStatus({ type: NLMSG.ERROR, flags: 0, seq: 1, pid: 0, body: hex('0000') })).toThrow(/NLMSG_ERROR of 2 bytes/);
    expect(() => parseStatus({ type: NLMSG.ERROR, flags: NLM_F.ACK_TLVS, seq: 1, pid: 0, body: hex('ffffffff') })).toThrow(/lacks the request's header/);
    const past = Buffer.concat([hex(le32(-22)), request.subarray(0, 16)]);
    past.writeUInt32LE(200, 4); // an uncapped request's length running past the answer
    expect(() => parseStatus({ type: NLMSG.ERROR, flags: NLM_F.ACK_TLVS, seq: 1, pid: 0, body: past })).toThrow(/past its 20 bytes/);
  });
});

describe('rtnetlink requests, byte for byte', () => {
  const ifinfomsg = (index: number, flags: number, change: number) => `0000${le16(0)}${le32(index)}${le32(flags)}${le32(change)}`;

  it('a veth pair: the first end up with name, MTU and MAC; the peer in IFLA_LINKINFO/IFLA_INFO_DATA/VETH_INFO_PEER with its netns fd', () => {
    const body = vethBody({ name: 'a', mtu: 1500, mac: '02:00:00:00:00:01', up: true }, { name: 'b', mtu: 1450, netnsFd: 5 });
    const peer = ifinfomsg(0, 0, 0) + `${nla(6, 3)}62000000` + `${nla(8, 4)}${le32(1450)}` + `${nla(8, 28)}${le32(5)}`;
    const data = `${nla(4 + peer.length / 2, 1)}${peer}`;
    const info = `${nla(9, 1)}7665746800000000` + `${nla(4 + data.length / 2, 0x8002)}${data}`;
    expect(body.toString('hex')).toBe(
      ifinfomsg(0, 1, 1) // IFF_UP set and changed
      + `${nla(6, 3)}61000000` // IFLA_IFNAME "a\0"
      + `${nla(8, 4)}${le32(1500)}` // IFLA_MTU
      + `${nla(10, 1)}0200000000010000` // IFLA_ADDRESS
      + `${nla(4 + info.length / 2, 0x8012)}${info}`, // IFLA_LINKINFO (nested)
    );
  });

  it('refuses a MAC that is not one', () => {
    expect(() => vethBody({ name: 'a', mac: '02:00:00:00:00' }, { name: 'b' })).toThrow(/not a MAC address/);
  });

  it('an IPv4 address: ifaddrmsg, IFA_LOCAL and IFA_ADDRESS alike', () => {
    expect(addressBody(3, '10.89.0.5', 24).toString('hex')).toBe(
      `02180000${le32(3)}` + `${nla(8, 2)}0a590005` + `${nla(8, 1)}0a590005`,
    );
    expect(() => addressBody(3, '10.89.0', 24)).toThrow(/not an IPv4 address/);
    expect(() => addressBody(3, '10.89.0.5', 33)).toThrow(/prefix length 33/);
  });

  it('route get: a /32 destination, a /32 source when given, the output interface', () => {
    expect(routeGetBody('10.1.2.3').toString('hex')).toBe(`0220000000000000${le32(0)}` + `${nla(8, 1)}0a010203`);
    expect(routeGetBody('10.1.2.3', { from: '10.0.0.1', oif: 7 }).toString('hex')).toBe(
      `0220200000000000${le32(0)}` + `${nla(8, 1)}0a010203` + `${nla(8, 2)}0a000001` + `${nla(8, 4)}${le32(7)}`,
    );
  });

  it('route add: main table, proto boot, universe scope via a gateway (link scope without), no RTA_DST for /0', () => {
    expect(routeAddBody({ dst: '0.0.0.0', dstLen: 0, gateway: '10.89.0.1', oif: 2 }).toString('hex')).toBe(
      `02000000fe030001${le32(0)}` + `${nla(8, 5)}0a590001` + `${nla(8, 4)}${le32(2)}`,
    );
    expect(routeAddBody({ dst: '10.0.0.0', dstLen: 8, oif: 2 }).toString('hex')).toBe(
      `02080000fe03fd01${le32(0)}` + `${nla(8, 1)}0a000000` + `${nla(8, 4)}${le32(2)}`,
    );
  });
});

describe('rtnetlink answers', () => {
  it('a route: its type, output interface, gateway and preferred source (other attributes skipped)', () => {
    const body = Buffer.concat([
      hex(`0220000000000001${le32(0x200)}`), // AF_INET, /32, table 0, type unicast, RTM_F_CLONED
      u32Attr(15, 254), attr(1, hex('08080808')), u32Attr(4, 2), attr(7, hex('0ad70001')), attr(5, hex('0ad70002')),
      nestAttr(12, [Buffer.alloc(16)]), // RTA_CACHEINFO
    ]);
    expect(parseRoute(body)).toEqual({ type: 'unicast', oif: 2, gateway: '10.215.0.2', prefsrc: '10.215.0.1' });
    const local = Buffer.concat([hex(`0220000000fe0002${le32(0)}`), u32Attr(4, 1)]);
    expect(parseRoute(local)).toEqual({ type: 'local', oif: 1 });
    expect(() => parseRoute(hex('0220'))).toThrow(/RTM_NEWROUTE of 2 bytes/);
    expect(() => parseRoute(Buffer.concat([hex(`0220000000000001${le32(0)}`), attr(5, hex('0a00'))]))).toThrow(/RTA_GATEWAY of 2 bytes/);
  });

  it('an address: the local address, prefix, index, label, and IFA_FLAGS over ifa_flags', () => {
    const body = (flags: number, more: Buffer[]) => Buffer.concat([hex(`0218${flags.toString(16).padStart(2, '0')}00${le32(4)}`), ...more]);
    expect(parseAddress(body(0, [attr(1, hex('0a590001')), attr(2, hex('0a590001')), strAttr(3, 'xn0'), u32Attr(8, 0x80)])))
      .toEqual({ ifindex: 4, address: '10.89.0.1', prefixlen: 24, secondary: false, label: 'xn0' });
    // a point-to-point address: IFA_LOCAL is ours, IFA_ADDRESS the peer's
    expect(parseAddress(body(0, [attr(1, hex('0a000002')), attr(2, hex('0a000001'))]))!.address).toBe('10.0.0.1');
    expect(parseAddress(body(0, [attr(1, hex('0a590002')), u32Attr(8, 0x01)]))!.secondary).toBe(true);
    expect(parseAddress(body(1, [attr(1, hex('0a590002'))]))!.secondary).toBe(true);
    expect(parseAddress(Buffer.concat([hex(`0a400000${le32(4)}`), attr(1, Buffer.alloc(16))]))).toBeUndefined(); // AF_INET6
    expect(() => parseAddress(body(0, [strAttr(3, 'xn0')]))).toThrow(/without an address/);
  });
});
