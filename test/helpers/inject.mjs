// Sends raw Ethernet frames out of an interface (run inside its namespace with
// `ip netns exec`): BPF_PROG_TEST_RUN of the bench object's redirect program
// with live frames, so malformed frames need no packet socket or extra tool.
// The receiving end of a veth needs XDP or GRO on for them to arrive.
//   node inject.mjs IFACE HEXFRAME...
import { BenchObject } from '../../dist/src/objects/bench.js';
import { BPF_F_TEST_XDP_LIVE_FRAMES } from '../../dist/src/sys/libbpf.js';
import { ifNameToIndex } from '../../dist/src/sys/libc.js';

const [iface, ...frames] = process.argv.slice(2);
const ifindex = ifNameToIndex(iface);
if (!ifindex) throw new Error(`no interface ${iface}`);
const b = BenchObject.load('redirect', { redirectIfindex: ifindex });
try {
  for (const f of frames) b.prog.testRun({ data: Buffer.from(f, 'hex'), flags: BPF_F_TEST_XDP_LIVE_FRAMES, repeat: 1 });
} finally {
  b.close();
}
