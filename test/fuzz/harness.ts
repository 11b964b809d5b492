// What every fuzzed program shares: running one frame, and reporting the
// figures (`make fuzz` collects them in bench/results/fuzz.md through the file
// XDPNET_FUZZ_REPORT names).
import { appendFileSync } from 'node:fs';
import { BpfError } from '../../src/errors.js';
import type { BpfProgram, TestRunResult } from '../../src/sys/libbpf.js';

const EINVAL = 22;

export function report(program: string, seed: number, frames: number, mismatches: number, refused = 0): void {
  // refused: frames the kernel's test run will not take (shorter than an Ethernet header, or tc with an
  // IPv4/IPv6 EtherType but less than that header); a NIC never delivers them to tc either
  console.log(`fuzz ${program}: ${frames} frames, ${mismatches} mismatches, ${refused} refused by the kernel (seed ${seed})`);
  const file = process.env.XDPNET_FUZZ_REPORT;
  if (file) appendFileSync(file, `| ${program} | ${frames} | ${mismatches} | ${refused} | ${seed} |\n`);
}

/** Runs prog on frame f as received on ifindex: the result, or undefined if the kernel refuses the frame (EINVAL). */
export function runFrame(prog: BpfProgram, hook: 'xdp' | 'tc', ifindex: number, f: Buffer): TestRunResult | undefined {
  const ctx = Buffer.alloc(hook === 'xdp' ? 24 : 44);
  if (hook === 'xdp') {
    ctx.writeUInt32LE(f.length, 4); // struct xdp_md: data_end
    ctx.writeUInt32LE(ifindex, 12); // ingress_ifindex
  } else {
    ctx.writeUInt32LE(ifindex, 40); // struct __sk_buff: ifindex
  }
  try {
    return prog.testRun({ data: f, ctx });
  } catch (e) {
    if (e instanceof BpfError && e.errno === EINVAL && f.length < 14 + 40) return undefined;
    throw e;
  }
}
