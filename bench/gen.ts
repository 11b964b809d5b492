// The packet generator: xn_gen sent through BPF_PROG_TEST_RUN with live frames.
// Each test run blocks this thread, so bench/main.ts runs it as a child process
// (`node dist/bench/gen.js '<GenOptions JSON>'`, prints a GenResult JSON line);
// the remote gen role calls generate() in-process.
import { pathToFileURL } from 'node:url';
import { enterNetns } from '../src/dataplane/host.js';
import { BenchObject, VXLAN_OUTER, udpFrame, vxlanFrame, type UdpFrameSpec } from '../src/objects/bench.js';
import { BPF_F_TEST_XDP_LIVE_FRAMES } from '../src/sys/libbpf.js';
import { ifNameToIndex } from '../src/sys/libc.js';

export interface GenOptions extends UdpFrameSpec {
  /** Egress interface; frames leave it as if transmitted. */
  iface: string;
  /** Network namespace (ip netns name) to generate from; the current one when omitted. */
  netns?: string;
  flows: number;
  varyMac: boolean;
  seconds: number;
  /**
   * Send VXLAN instead: the UDP frame described above (size included) becomes
   * the inner frame, wrapped in these outer headers (decap rows). The
   * generator's flows then vary the outer UDP source port.
   */
  vxlan?: VxlanOuter;
}

export interface VxlanOuter {
  vni: number;
  srcMac: string;
  dstMac: string;
  srcIp: string;
  dstIp: string;
  /** UDP destination port; 4789 when omitted. */
  port?: number;
}

/** The frame the generator sends for o, and how many of its bytes it restores per frame. */
export function genFrame(o: GenOptions): { frame: Buffer; headerBytes: number } {
  const inner = udpFrame(o);
  if (!o.vxlan) return { frame: inner, headerBytes: 42 };
  const v = o.vxlan;
  const frame = vxlanFrame({ srcMac: v.srcMac, dstMac: v.dstMac, srcIp: v.srcIp, dstIp: v.dstIp, sport: 49152, dport: v.port ?? 4789 }, v.vni, inner);
  return { frame, headerBytes: VXLAN_OUTER + 42 };
}

export interface GenResult {
  packets: number;
  seconds: number;
}

export function generate(o: GenOptions): GenResult {
  if (o.netns) enterNetns(o.netns); // bpf_redirect's ifindex resolves in the caller's netns
  const ifindex = ifNameToIndex(o.iface);
  if (!ifindex) throw new Error(`no interface ${o.iface}${o.netns ? ` in ${o.netns}` : ''}`);
  const gen = BenchObject.load('gen', { genIfindex: ifindex, genFlows: o.flows, genVaryMac: o.varyMac });
  try {
    const { frame, headerBytes } = genFrame(o);
    gen.setTemplate(frame, headerBytes);
    const start = process.hrtime.bigint();
    const end = start + BigInt(Math.round(o.seconds * 1e9));
    let repeat = 1 << 14;
    let now = start;
    while (now < end) {
      const t0 = now;
      gen.prog.testRun({ data: frame, repeat, flags: BPF_F_TEST_XDP_LIVE_FRAMES });
      now = process.hrtime.bigint();
      // Size the next call to ~0.5 s (and no further than the end), so the run
      // stops close to the requested duration at any packet rate. Not shorter:
      // each call ends in an RCU grace period (tens of ms here, measured) in
      // which nothing is sent.
      const nsPerFrame = Math.max(1, Number(now - t0) / repeat);
      repeat = Math.max(64, Math.min(Math.round(5e8 / nsPerFrame), Math.round(Number(end - now) / nsPerFrame)));
    }
    return { packets: Number(gen.count().packets), seconds: Number(now - start) / 1e9 };
  } finally {
    gen.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  try {
    process.stdout.write(`${JSON.stringify(generate(JSON.parse(process.argv[2] ?? '') as GenOptions))}\n`);
  } catch (e) {
    console.error(`gen: ${(e as Error).message}`);
    process.exit(1);
  }
}
