// Netlink's wire format and one request/answer exchange on a socket
// (linux/netlink.h), so that the control path asks the kernel itself instead
// of running `ip` (each run a process start: milliseconds where a request
// costs microseconds). Messages are struct nlmsghdr (16 bytes) + body;
// attributes struct nlattr (4 bytes) + payload, each padded to 4 bytes. The
// kernel answers with data messages, then NLMSG_ERROR (0: the ack; else a
// negative errno, with NETLINK_EXT_ACK the kernel's reason as an attribute) or,
// after a dump's NLM_F_MULTI parts, NLMSG_DONE. Everything here but the socket
// is pure, so the codec is unit-tested byte for byte; rtnl.ts builds the link,
// address and route messages on it.
import { constants } from 'node:os';
import { NetlinkError, XdpnetError } from '../errors.js';
import { close, recv, send, setsockopt, setsockoptInt, socket } from './libc.js';

export const NLMSG_HDRLEN = 16;
export const NLA_HDRLEN = 4;
export const NLMSG = { ERROR: 2, DONE: 3 } as const;
export const NLM_F = {
  REQUEST: 0x1, MULTI: 0x2, ACK: 0x4, DUMP: 0x300, EXCL: 0x200, CREATE: 0x400,
  /** In an NLMSG_ERROR: the request's body is left out (NETLINK_CAP_ACK); extended-ack attributes follow. */
  CAPPED: 0x100, ACK_TLVS: 0x200,
} as const;
export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff; // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
const NLMSGERR_ATTR_MSG = 1;

export const align4 = (n: number): number => (n + 3) & ~3;

/** An answer that does not parse: never half-read, never guessed at. */
export class MalformedNetlink extends XdpnetError {
  constructor(what: string) {
    super(`malformed netlink answer: ${what}`);
  }
}

// ---- encoding ---------------------------------------------------------------

/** One attribute: length (header + payload, without padding), type, payload, zeros to 4 bytes. */
export function attr(type: number, payload: Buffer): Buffer {
  const len = NLA_HDRLEN + payload.length;
  if (len > 0xffff) throw new RangeError(`netlink attribute ${type} of ${len} bytes: over 65535`);
  const b = Buffer.alloc(align4(len));
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, NLA_HDRLEN);
  return b;
}

export const u32Attr = (type: number, v: number): Buffer => {
  const p = Buffer.alloc(4);
  p.writeUInt32LE(v >>> 0);
  return attr(type, p);
};

/** A NUL-terminated string, as the kernel's NLA_STRING/NLA_NUL_STRING policies take names. */
export const strAttr = (type: number, s: string): Buffer => attr(type, Buffer.from(`${s}\0`));

export const nestAttr = (type: number, parts: Buffer[]): Buffer => attr(type | NLA_F_NESTED, Buffer.concat(parts));

/** A request: header (length, type, flags, sequence, port 0: the kernel's) then the body, padded to 4 bytes. */
export function message(type: number, flags: number, seq: number, body: Buffer): Buffer {
  const b = Buffer.alloc(align4(NLMSG_HDRLEN + body.length));
  b.writeUInt32LE(NLMSG_HDRLEN + body.length, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags, 6);
  b.writeUInt32LE(seq >>> 0, 8);
  body.copy(b, NLMSG_HDRLEN);
  return b;
}

// ---- decoding ---------------------------------------------------------------

export interface NlMessage { type: number; flags: number; seq: number; pid: number; body: Buffer }

/** The messages of one datagram; a length that does not fit the datagram is an error, not the end. */
export function parseMessages(buf: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  let off = 0;
  while (off < buf.length) {
    if (buf.length - off < NLMSG_HDRLEN) throw new MalformedNetlink(`${buf.length - off} stray bytes after the last message`);
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || len > buf.length - off) throw new MalformedNetlink(`message of length ${len} at offset ${off} of a ${buf.length}-byte datagram`);
    out.push({
      type: buf.readUInt16LE(off + 4), flags: buf.readUInt16LE(off + 6), seq: buf.readUInt32LE(off + 8), pid: buf.readUInt32LE(off + 12),
      body: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Attributes by type (flag bits masked off); a repeated type keeps its last value, as the kernel's nla_parse does. */
export function parseAttrs(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = 0;
  while (off < buf.length) {
    if (buf.length - off < NLA_HDRLEN) throw new MalformedNetlink(`${buf.length - off} stray bytes after the last attribute`);
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK;
    if (len < NLA_HDRLEN || len > buf.length - off) throw new MalformedNetlink(`attribute ${type} of length ${len} at offset ${off} of ${buf.length} bytes`);
    out.set(type, buf.subarray(off + NLA_HDRLEN, off + len));
    off += align4(len);
  }
  return out;
}

/** A string attribute's text, up to its NUL. */
export const attrString = (b: Buffer): string => b.toString('utf8', 0, b.indexOf(0) < 0 ? b.length : b.indexOf(0));

export function attrU32(b: Buffer | undefined, what: string): number | undefined {
  if (b === undefined) return undefined;
  if (b.length < 4) throw new MalformedNetlink(`${what}: ${b.length} bytes where a u32 was expected`);
  return b.readUInt32LE(0);
}

/**
 * What an NLMSG_ERROR or NLMSG_DONE says: the errno (0: success) and the
 * kernel's reason (extended ack), if any. An error carries the request's
 * header (and its body unless NLM_F_CAPPED) before the reason's attributes.
 */
export function parseStatus(m: NlMessage): { errno: number; reason?: string } {
  if (m.body.length < 4) throw new MalformedNetlink(`${m.type === NLMSG.ERROR ? 'NLMSG_ERROR' : 'NLMSG_DONE'} of ${m.body.length} bytes`);
  const errno = -m.body.readInt32LE(0) || 0; // not -0
  if (!(m.flags & NLM_F.ACK_TLVS)) return { errno };
  let off = 4;
  if (m.type === NLMSG.ERROR) {
    if (m.body.length < 4 + NLMSG_HDRLEN) throw new MalformedNetlink(`NLMSG_ERROR of ${m.body.length} bytes lacks the request's header`);
    off += m.flags & NLM_F.CAPPED ? NLMSG_HDRLEN : align4(m.body.readUInt32LE(4));
  }
  if (off > m.body.length) throw new MalformedNetlink(`NLMSG_ERROR's attributes start at ${off}, past its ${m.body.length} bytes`);
  const msg = parseAttrs(m.body.subarray(off)).get(NLMSGERR_ATTR_MSG);
  return { errno, reason: msg && attrString(msg) };
}

// ---- the exchange -----------------------------------------------------------

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const MSG_TRUNC = 0x20;
/** A dump's datagrams are at most 32 KiB (the kernel's cap on max_recvmsg_len); anything larger is refused, not cut. */
const RECV_BYTES = 64 << 10;
const ANSWER_TIMEOUT_S = 5;

/** What a request is, for its error: "create veth", "xnc0/eth0". */
export interface What { op: string; target: string }

/**
 * One netlink socket of the calling thread's network namespace (a socket
 * stays in the namespace it was made in, whatever setns happens later).
 */
export class NetlinkSocket {
  private seq = 0;
  private readonly buf = Buffer.allocUnsafe(RECV_BYTES);

  private constructor(private fd: number) {}

  static open(protocol: number): NetlinkSocket {
    const fd = socket(AF_NETLINK, SOCK_RAW, protocol);
    if (fd < 0) throw new NetlinkError('open netlink socket', `protocol ${protocol}`, -fd);
    const tv = Buffer.alloc(16); // struct timeval: never wait forever for an answer
    tv.writeBigInt64LE(BigInt(ANSWER_TIMEOUT_S), 0);
    for (const [level, opt, set] of [
      [SOL_NETLINK, NETLINK_EXT_ACK, () => setsockoptInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1)],
      [SOL_NETLINK, NETLINK_CAP_ACK, () => setsockoptInt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1)],
      [SOL_SOCKET, SO_RCVTIMEO, () => setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv)],
    ] as const) {
      const r = set();
      if (r < 0) {
        close(fd);
        throw new NetlinkError('set netlink socket option', `${level}/${opt}`, -r);
      }
    }
    return new NetlinkSocket(fd);
  }

  close(): void {
    if (this.fd >= 0) close(this.fd);
    this.fd = -1;
  }

  /**
   * Sends one request and returns the data messages of its answer. A dump
   * (NLM_F_DUMP in flags) is read up to NLMSG_DONE; any other request asks
   * for an ack (NLM_F_ACK) and is read up to it. A refusal throws a
   * NetlinkError naming `what`, the errno and the kernel's reason.
   */
  request(what: What, type: number, flags: number, body: Buffer): NlMessage[] {
    const dump = (flags & NLM_F.DUMP) === NLM_F.DUMP;
    const seq = ++this.seq;
    const req = message(type, flags | NLM_F.REQUEST | (dump ? 0 : NLM_F.ACK), seq, body);
    const sent = send(this.fd, req);
    if (sent < 0) throw new NetlinkError(what.op, what.target, -sent);
    const out: NlMessage[] = [];
    for (;;) {
      const n = recv(this.fd, this.buf, MSG_TRUNC);
      if (n < 0) {
        const e = -n;
        throw e === constants.errno.EAGAIN ? new NetlinkError(what.op, what.target, e, `no answer from the kernel in ${ANSWER_TIMEOUT_S} s`) : new NetlinkError(what.op, what.target, e);
      }
      if (n > this.buf.length) throw new MalformedNetlink(`a ${n}-byte datagram, more than the ${this.buf.length} bytes read`);
      for (const m of parseMessages(this.buf.subarray(0, n))) {
        if (m.seq !== seq) continue; // an answer to an earlier request (none is left unread, but never mix them)
        if (m.type === NLMSG.ERROR || m.type === NLMSG.DONE) {
          const s = parseStatus(m);
          if (s.errno) throw new NetlinkError(what.op, what.target, s.errno, s.reason);
          return out;
        }
        out.push({ ...m, body: Buffer.from(m.body) }); // the receive buffer is reused
      }
    }
  }
}

/** Runs fn with a netlink socket of the calling thread's namespace, closed after. */
export function withNetlink<T>(protocol: number, fn: (s: NetlinkSocket) => T): T {
  const s = NetlinkSocket.open(protocol);
  try {
    return fn(s);
  } finally {
    s.close();
  }
}
