// Sending a frame through an XDP program for real, for the bpf tier's
// captures: a live-frame BPF_PROG_RUN where the kernel builds those frames
// right, a frame on the wire where it does not.
import { release } from 'node:os';
import { u32 } from '../../src/objects/codec.js';
import { BPF_F_TEST_XDP_LIVE_FRAMES, BPF_XDP, BpfObject, BpfProgram, linkCreate, XDP_FLAGS_DRV_MODE } from '../../src/sys/libbpf.js';
import { close, ifNameToIndex } from '../../src/sys/libc.js';
import { fixtureObject, type PinRoot, xdpMd } from './bpf.js';

/**
 * Before Linux 6.3 a live-frame test run keeps its xdp_frame in front of the
 * frame's headroom instead of at its start (fixed by 294635a8165a, "bpf,
 * test_run: fix &xdp_frame misplacement for LIVE_FRAMES"; not in 6.1's stable
 * series). xdpf_clone(), which copies a broadcast redirect's frame for every
 * destination but the last, copies from the xdp_frame, so each copy starts
 * sizeof(struct xdp_frame) bytes early and its metadata is whatever lay there:
 * the devmap egress program rightly drops it. Frames a driver builds (veth
 * here) are laid out right, so on such kernels the frame goes on the wire.
 * XDPNET_TEST_XDP=wire|live chooses.
 */
export function xdpSendMode(): 'wire' | 'live' {
  const forced = process.env.XDPNET_TEST_XDP;
  if (forced === 'wire' || forced === 'live') return forced;
  if (forced) throw new Error(`XDPNET_TEST_XDP=${forced}: wire or live`);
  const [major, minor] = release().split('.').map((n) => parseInt(n, 10));
  return major < 6 || (major === 6 && minor < 3) ? 'wire' : 'live';
}

/**
 * Runs frames through XDP programs of veth ends. Live mode: BPF_PROG_RUN with
 * live frames and ingress_ifindex set to dev. Wire mode: the program is
 * attached to dev (driver mode, until close) and the frame is sent out of its
 * peer `${dev}x` in this namespace, which hands it to XDP. A device without
 * such a peer is sent live in either mode: keep its floods to one
 * destination there (the last destination gets the frame itself, no copy).
 */
export class XdpSender {
  private wire?: BpfObject;
  private readonly links = new Map<string, { fd: number; prog: number }>();

  constructor(private readonly pins: PinRoot, readonly mode = xdpSendMode()) {}

  send(prog: BpfProgram, dev: string, f: Buffer): void {
    const ifindex = ifNameToIndex(dev);
    const peer = this.mode === 'wire' ? ifNameToIndex(`${dev}x`) : 0; // 0: no such device here
    if (!peer) {
      prog.testRun({ data: f, ctx: xdpMd(ifindex, f.length), flags: BPF_F_TEST_XDP_LIVE_FRAMES, repeat: 1 });
      return;
    }
    const had = this.links.get(dev);
    if (had?.prog !== prog.fd) {
      if (had) close(had.fd);
      this.links.set(dev, { fd: linkCreate(prog.fd, ifindex, BPF_XDP, XDP_FLAGS_DRV_MODE, `XDP on ${dev}`), prog: prog.fd });
    }
    this.wire ??= this.pins.open(fixtureObject('wire'));
    this.wire.map('xn_wire_to').update(u32(0), u32(peer));
    const r = this.wire.program('xn_wire').testRun({ data: f });
    if (r.retval !== 0) throw new Error(`sending a frame out of ${dev}x: bpf_clone_redirect returned ${r.retval}`);
  }

  /** Detaches what wire mode attached (the pin root removes the fixture). */
  close(): void {
    for (const l of this.links.values()) close(l.fd);
    this.links.clear();
  }
}
