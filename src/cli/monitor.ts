// monitor [--type drop|trace|all] [--iface I] [--bridge B] [--vni N] [--json] [--pcap FILE]
import { Command, Option } from 'commander';
import { UsageError } from '../errors.js';
import { resolveIface } from '../dataplane/attach.js';
import { listBridges } from '../dataplane/bridge.js';
import { parseVni } from '../dataplane/vxlan.js';
import { MONITOR } from '../objects/monitor.js';
import { PcapngWriter } from '../observe/pcapng.js';
import { formatEvent, startMonitor, type EventKind, type MonitorEvent } from '../observe/monitor.js';
import { integer, positive } from './args.js';
import { context } from './context.js';

interface MonitorOpts {
  type: EventKind;
  iface?: string[];
  bridge?: string;
  vni?: string;
  json?: boolean;
  pcap?: string;
  sample?: string;
  count?: string;
  duration?: string;
}

const toJson = (m: MonitorEvent) => JSON.stringify({ ...m, tsNs: undefined, data: m.data.toString('hex') });

export function monitorCommand(program: Command): void {
  program
    .command('monitor')
    .description('live events from the datapath: drops with their reason, and traces of what it did (forwarded, flooded, encapsulated, decapsulated, translated)')
    .addOption(new Option('--type <type>', 'which events').choices(['drop', 'trace', 'all']).default('all'))
    .option('--iface <name...>', 'only events received on or sent to these interfaces')
    .option('--bridge <name>', "only events on this bridge's ports")
    .option('--vni <n>', 'only events of this VXLAN VNI (encap, decap, and drops of VXLAN frames)')
    .option('--json', 'one JSON object per event and line (data: the first 128 bytes, hex)')
    .option('--pcap <file>', 'also write the frames to FILE (pcapng; each packet commented with event, interface, hook, reason)')
    .option('--sample <n>', 'trace events: the datapath keeps one in N (a power of two, default 1: all)')
    .option('--count <n>', 'stop after N events')
    .option('--duration <secs>', 'stop after SECS seconds')
    .addHelpText('after', `
Events come from a BPF ring buffer (1 MiB per instance) that the datapath fills
only while a monitor runs: without one, each event site costs one load and a
branch. A full buffer loses events, never packets. Frames the kernel refused
after xdpnet redirected them show as drops at hook "kernel" (no bytes captured).

Examples:
  xdpnet monitor                            everything, one line per event
  xdpnet monitor --type drop --json         drops, for scripts
  xdpnet monitor --iface veth1 --count 10   ten events of veth1
  xdpnet monitor --vni 100 --pcap vx.pcapng then: tshark -r vx.pcapng -V
  xdpnet --netns blue monitor --type trace --sample 16`)
    .action(async (o: MonitorOpts, cmd: Command) => {
      const count = o.count === undefined ? Infinity : positive(o.count, '--count');
      const duration = o.duration === undefined ? Infinity : positive(o.duration, '--duration');
      const vni = o.vni === undefined ? undefined : parseVni(o.vni);
      const sample = o.sample === undefined ? 1 : integer(o.sample, '--sample', 1, 1 << 20);
      if (sample & (sample - 1)) throw new UsageError(`--sample must be a power of two, got ${sample}`);
      if (o.sample !== undefined && o.type === 'drop') throw new UsageError('--sample applies to trace events: drops are never sampled');
      const ctx = context(cmd);
      let ifindexes: Set<number> | undefined;
      if (o.iface) ifindexes = new Set(o.iface.map((i) => resolveIface(i, ctx.netns)));
      if (o.bridge) {
        const br = listBridges(ctx.inst).find((b) => b.name === o.bridge);
        if (!br) throw new UsageError(`no bridge ${o.bridge}`, 'list them with `xdpnet bridge show`');
        const ports = br.ports.map((p) => p.ifindex);
        ifindexes = new Set(ifindexes ? ports.filter((p) => ifindexes!.has(p)) : ports);
      }
      const pcap = o.pcap ? new PcapngWriter(o.pcap, MONITOR.capture) : undefined;
      let seen = 0;
      let stop = false;
      const session = startMonitor(ctx.inst, { type: o.type, ifindexes, vni, sample }, (m) => {
        if (stop) return;
        console.log(o.json ? toJson(m) : formatEvent(m));
        pcap?.packet(m.iface, m.tsNs, m.data, m.len,
          `${m.event}${m.reason ? ` reason=${m.reason}` : ''} iface=${m.iface}${m.out ? ` out=${m.out}` : ''} hook=${m.hook}${m.vni !== null ? ` vni=${m.vni}` : ''}`);
        if (++seen >= count) stop = true;
      });
      // on stderr: scripts read events from stdout, and may wait for this line before making traffic
      console.error(`monitoring ${ctx.inst.name}: ${o.type === 'all' ? 'drops and traces' : o.type === 'drop' ? 'drops' : 'traces'}` +
        `${sample > 1 ? ` (1 in ${sample} traces)` : ''}; Ctrl-C to stop`);
      const onSignal = () => (stop = true);
      process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
      const end = Date.now() + duration * 1000;
      try {
        while (!stop && Date.now() < end) {
          session.poll(Math.max(1, Math.min(100, end - Date.now())));
          await new Promise((r) => setImmediate(r)); // let signals in
        }
      } finally {
        session.stop();
        pcap?.close();
      }
    });
}
