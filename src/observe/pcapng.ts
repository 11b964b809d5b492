// A pcapng writer (draft-ietf-opsawg-pcapng): a section header, one interface
// description per interface seen (Ethernet, its name), then one enhanced
// packet block per event with a comment (what happened, the reason). Written
// synchronously so that a monitor stopped by a signal leaves a whole file.
import { closeSync, openSync, writeSync } from 'node:fs';

const pad4 = (n: number) => (4 - (n % 4)) % 4;

function option(code: number, value: Buffer): Buffer {
  const b = Buffer.alloc(4 + value.length + pad4(value.length));
  b.writeUInt16LE(code, 0);
  b.writeUInt16LE(value.length, 2);
  value.copy(b, 4);
  return b;
}
const END = Buffer.alloc(4); // opt_endofopt

function block(type: number, body: Buffer): Buffer {
  const len = 12 + body.length;
  const b = Buffer.alloc(len);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(len, 4);
  body.copy(b, 8);
  b.writeUInt32LE(len, len - 4);
  return b;
}

export class PcapngWriter {
  private fd: number;
  private ifaces = new Map<string, number>();

  constructor(path: string, private snaplen: number) {
    this.fd = openSync(path, 'w');
    const shb = Buffer.alloc(16);
    shb.writeUInt32LE(0x1a2b3c4d, 0); // byte-order magic
    shb.writeUInt16LE(1, 4); // version 1.0
    shb.writeUInt16LE(0, 6);
    shb.writeBigInt64LE(-1n, 8); // section length unknown
    this.write(block(0x0a0d0d0a, Buffer.concat([shb, option(4, Buffer.from('xdpnet monitor')), END])));
  }

  private write(b: Buffer): void {
    writeSync(this.fd, b);
  }

  private iface(name: string): number {
    let id = this.ifaces.get(name);
    if (id !== undefined) return id;
    id = this.ifaces.size;
    const idb = Buffer.alloc(8);
    idb.writeUInt16LE(1, 0); // LINKTYPE_ETHERNET
    idb.writeUInt32LE(this.snaplen, 4);
    this.write(block(1, Buffer.concat([idb, option(2, Buffer.from(name)), option(9, Buffer.from([9])), END]))); // if_name, if_tsresol 10^-9
    this.ifaces.set(name, id);
    return id;
  }

  /** One packet: wall-clock ns, the bytes captured, the frame's whole length, a comment. */
  packet(iface: string, tsNs: bigint, data: Buffer, origLen: number, comment: string): void {
    const id = this.iface(iface);
    const head = Buffer.alloc(20);
    head.writeUInt32LE(id, 0);
    head.writeUInt32LE(Number(tsNs >> 32n), 4);
    head.writeUInt32LE(Number(tsNs & 0xffffffffn), 8);
    head.writeUInt32LE(data.length, 12);
    head.writeUInt32LE(Math.max(origLen, data.length), 16);
    const body = Buffer.concat([head, data, Buffer.alloc(pad4(data.length)), option(1, Buffer.from(comment)), END]);
    this.write(block(6, body));
  }

  close(): void {
    closeSync(this.fd);
  }
}
