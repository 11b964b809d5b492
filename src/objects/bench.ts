// bpf/bench.bpf.c: packet generator, counting sink, bare redirects (XDP, tc) and XDP_PASS
// programs. Only bench/ loads them; nothing is pinned.
import { BpfObject, type BpfMap, type BpfProgram } from '../sys/libbpf.js';
import { setConsts } from './btf.js';
import { struct, sumPerCpu, u32 } from './codec.js';
import { objectPath } from './paths.js';

export const BENCH = {
  object: 'bench',
  programs: { gen: 'xn_gen', sink: 'xn_sink', redirect: 'xn_redirect', tcRedirect: 'xn_tc_redirect', pass: 'xn_pass' },
  maps: { template: 'xn_gen_tmpl', stats: 'xn_bench_stats' },
} as const;

export type BenchProgram = keyof typeof BENCH.programs;

/** The `const volatile` configuration of bench.bpf.c. */
export interface BenchConsts {
  genIfindex?: number;
  genFlows?: number;
  genVaryMac?: boolean;
  redirectIfindex?: number;
}

const CONST_NAMES: Record<keyof BenchConsts, string> = {
  genIfindex: 'xn_gen_ifindex',
  genFlows: 'xn_gen_flows',
  genVaryMac: 'xn_gen_vary_mac',
  redirectIfindex: 'xn_redirect_ifindex',
};

/** Mirror of bpf/include/bench.h. */
export const GEN_HDR_MAX = 128;
export const GEN_SPORT_OFF = 34;
export const GenFrame = struct('xn_gen_frame', { hdr: { bytes: GEN_HDR_MAX }, hdr_len: 'u32' });
export const BenchCount = struct('xn_bench_count', { packets: 'u64', bytes: 'u64' });

/** One loaded program of the bench object, with the object's maps. */
export class BenchObject {
  private constructor(
    private obj: BpfObject,
    readonly prog: BpfProgram,
  ) {}

  static load(program: BenchProgram, consts: BenchConsts = {}): BenchObject {
    const name = BENCH.programs[program];
    const obj = BpfObject.open(objectPath(BENCH.object), { programs: [name] });
    try {
      const values = Object.entries(consts).map(([k, v]) => [CONST_NAMES[k as keyof BenchConsts], Number(v)]);
      setConsts(obj, Object.fromEntries(values));
      obj.load();
      return new BenchObject(obj, obj.program(name));
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  private map(name: string): BpfMap {
    return this.obj.map(name);
  }

  /** Frames generated (gen) or received (sink) so far, summed over CPUs. */
  count(): { packets: bigint; bytes: bigint } {
    const m = this.map(BENCH.maps.stats);
    if (m.info.valueSize !== BenchCount.size) throw new Error(`${m.name}: value is ${m.info.valueSize} bytes, codec ${BenchCount.size}`);
    const v = m.lookup(u32(0));
    return v ? sumPerCpu(BenchCount, v) : { packets: 0n, bytes: 0n };
  }

  /**
   * Sets the generator's template: the frame's first headerBytes (Ethernet,
   * IPv4 and UDP by default; more for encapsulated frames) are restored into
   * every frame it sends. The payload is sent as given and never restored.
   */
  setTemplate(frame: Buffer, headerBytes = GEN_SPORT_OFF + 8): void {
    const hdrLen = Math.ceil(headerBytes / 8) * 8;
    if (headerBytes < GEN_SPORT_OFF + 2 || hdrLen > GEN_HDR_MAX || hdrLen > frame.length) {
      throw new Error(`generator template: ${headerBytes} header bytes of a ${frame.length}-byte frame (max ${GEN_HDR_MAX})`);
    }
    const hdr = Buffer.alloc(GEN_HDR_MAX);
    frame.copy(hdr, 0, 0, hdrLen);
    this.map(BENCH.maps.template).update(u32(0), GenFrame.encode({ hdr, hdr_len: hdrLen }));
  }

  close(): void {
    this.obj.close();
  }
}

export interface UdpFrameSpec {
  srcMac: string;
  dstMac: string;
  srcIp: string;
  dstIp: string;
  sport: number;
  dport: number;
  /** Whole frame length without FCS (at least 60). */
  size: number;
}

/** Ethernet / IPv4 / UDP frame of the given size, IP checksum set, UDP checksum 0 (none). */
export function udpFrame(f: UdpFrameSpec): Buffer {
  return udpFrameAround(f, Buffer.alloc(Math.max(60, f.size) - 42));
}

/** VXLAN (RFC 7348) header length in front of the inner frame: outer Ethernet, IPv4, UDP, VXLAN. */
export const VXLAN_OUTER = 50;

/**
 * A VXLAN-encapsulated frame: `outer` (its size is ignored) carrying `inner`
 * (a whole Ethernet frame, e.g. udpFrame()) for the VNI, I flag set, outer
 * UDP checksum 0 as RFC 7348 allows over IPv4. The generator restores
 * VXLAN_OUTER + 42 header bytes, i.e. the inner headers too.
 */
export function vxlanFrame(outer: Omit<UdpFrameSpec, 'size'>, vni: number, inner: Buffer): Buffer {
  const vx = Buffer.alloc(8);
  vx.writeUInt32BE(0x08000000, 0);
  vx.writeUInt32BE(((vni & 0xffffff) << 8) >>> 0, 4); // >>> 0: VNIs from 2^23 up would go negative
  return udpFrameAround({ ...outer, size: 0 }, Buffer.concat([vx, inner]));
}

function udpFrameAround(f: UdpFrameSpec, payload: Buffer): Buffer {
  const b = Buffer.alloc(Math.max(60, 42 + payload.length));
  payload.copy(b, 42);
  Buffer.from(f.dstMac.replace(/:/g, ''), 'hex').copy(b, 0);
  Buffer.from(f.srcMac.replace(/:/g, ''), 'hex').copy(b, 6);
  b.writeUInt16BE(0x0800, 12);
  const ip = b.subarray(14, 34);
  ip.writeUInt8(0x45, 0);
  ip.writeUInt16BE(b.length - 14, 2);
  ip.writeUInt8(64, 8); // TTL
  ip.writeUInt8(17, 9); // UDP
  Buffer.from(f.srcIp.split('.').map(Number)).copy(ip, 12);
  Buffer.from(f.dstIp.split('.').map(Number)).copy(ip, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  ip.writeUInt16BE(~sum & 0xffff, 10);
  b.writeUInt16BE(f.sport, 34);
  b.writeUInt16BE(f.dport, 36);
  b.writeUInt16BE(b.length - 34, 38);
  return b;
}
