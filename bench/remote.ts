// Cross-host roles for vagrant/bench.sh (through bench/run), on a real NIC in
// the host's namespace: the sink counts what arrives, the generator sends to
// the peer's MAC. Links are not pinned: they go away with the process.
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { BenchObject } from '../src/objects/bench.js';
import { BPF_XDP, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, linkCreate } from '../src/sys/libbpf.js';
import { close as closeFd, ifNameToIndex } from '../src/sys/libc.js';
import { generate } from './gen.js';
import { ip } from './topology.js';

function ifindexOf(iface: string): number {
  const i = ifNameToIndex(iface);
  if (!i) throw new Error(`no interface ${iface}`);
  return i;
}

/** Native XDP, or generic (skb) mode when the driver refuses. Returns the link fd. */
function attach(obj: BenchObject, iface: string): number {
  const ifindex = ifindexOf(iface);
  try {
    return linkCreate(obj.prog.fd, ifindex, BPF_XDP, XDP_FLAGS_DRV_MODE, `${obj.prog.name} to ${iface}`);
  } catch (e) {
    console.error(`native XDP on ${iface} failed (${(e as Error).message}); using generic mode`);
    return linkCreate(obj.prog.fd, ifindex, BPF_XDP, XDP_FLAGS_SKB_MODE, `${obj.prog.name} to ${iface}`);
  }
}

/** Prints delivered Mpps each second; ends `idle` seconds after the traffic stopped, or after `seconds`. */
export async function sinkRole(o: { iface: string; seconds?: number; idle: number }): Promise<void> {
  const sink = BenchObject.load('sink');
  const link = attach(sink, o.iface);
  try {
    console.log(`sink on ${o.iface}: waiting for traffic`);
    const start = process.hrtime.bigint();
    let [last, lastT] = [sink.count().packets, start];
    let total = 0n;
    let [active, silent, waited] = [0, 0, 0]; // seconds with traffic, silent since, silent before
    const rates: number[] = [];
    for (let s = 1; ; s++) {
      await sleep(Math.max(0, Number(start + BigInt(s) * 1_000_000_000n - process.hrtime.bigint()) / 1e6));
      const [now, t] = [sink.count().packets, process.hrtime.bigint()];
      const d = now - last;
      const mpps = Number(d) / (Number(t - lastT) / 1e9) / 1e6;
      [last, lastT] = [now, t];
      // Stray frames (ICMP, IPv6 neighbour discovery) are not the generator's run.
      if (d >= 1000n) {
        total += d;
        active++;
        silent = 0;
        rates.push(mpps);
      } else if (active) silent++;
      else waited++;
      if (active) console.log(`${String(s).padStart(4)} s  ${mpps.toFixed(3)} Mpps delivered`);
      if (o.seconds !== undefined ? s >= o.seconds : active > 0 && silent >= o.idle) break;
      if (!active && waited >= 60) throw new Error(`no traffic on ${o.iface} for 60 s`);
    }
    // The median second: the first and last seconds of the run are partial.
    const median = [...rates].sort((x, y) => x - y)[Math.floor(rates.length / 2)] ?? 0;
    console.log(`sink: ${total} frames in ${active} s with traffic, median ${median.toFixed(3)} Mpps delivered`);
  } finally {
    closeFd(link);
    sink.close();
  }
}

export interface GenRoleOptions {
  iface: string;
  peer: string;
  seconds: number;
  size: number;
  flows: number;
  varyMac: boolean;
}

export async function genRole(o: GenRoleOptions): Promise<void> {
  // Drivers such as virtio_net accept redirected frames (ndo_xdp_xmit) only while
  // an XDP program is attached to the device itself.
  const pass = BenchObject.load('pass');
  let link = -1;
  try {
    try {
      link = attach(pass, o.iface);
    } catch (e) {
      console.error(`warning: could not attach xn_pass to ${o.iface}: ${(e as Error).message}`);
    }
    try {
      execFileSync('ping', ['-c', '1', '-W', '1', '-I', o.iface, o.peer], { stdio: 'ignore' });
    } catch {
      /* the sink drops the ICMP echo, but ARP has resolved the MAC by then */
    }
    const neigh = JSON.parse(ip('-j', 'neigh', 'show', o.peer, 'dev', o.iface)) as Array<{ lladdr?: string }>;
    const dstMac = neigh[0]?.lladdr;
    if (!dstMac) throw new Error(`cannot resolve the MAC of ${o.peer} on ${o.iface}`);
    const srcMac = (JSON.parse(ip('-j', 'link', 'show', 'dev', o.iface)) as Array<{ address: string }>)[0].address;
    const addrs = JSON.parse(ip('-j', '-4', 'addr', 'show', 'dev', o.iface)) as Array<{ addr_info: Array<{ local: string }> }>;
    const srcIp = addrs[0]?.addr_info[0]?.local;
    if (!srcIp) throw new Error(`${o.iface} has no IPv4 address`);
    console.log(`gen: ${o.iface} ${srcMac} → ${o.peer} ${dstMac}, ${o.size}-byte frames, ${o.flows} flow(s), ${o.seconds} s`);
    const r = generate({ ...o, srcMac, dstMac, srcIp, dstIp: o.peer, sport: 1024, dport: 9 });
    console.log(`gen: ${r.packets} frames in ${r.seconds.toFixed(2)} s, ${(r.packets / r.seconds / 1e6).toFixed(3)} Mpps generated`);
  } finally {
    if (link >= 0) closeFd(link);
    pass.close();
  }
}
