// Prometheus metrics of every instance, read from the datapath's maps at
// scrape time (prom-client collectors): Prometheus naming, base units, what
// varies in labels. Counters mirror the datapath's own (per-CPU, summed), so
// they reset only when the datapath's do (re-attach).
import { readFileSync } from 'node:fs';
import client from 'prom-client';
import { listAttachments, primaryAttachments } from '../dataplane/attach.js';
import { bridgeCounts } from '../dataplane/bridge.js';
import { fdbCounts } from '../dataplane/fdb.js';
import { instanceNetns, withNetns } from '../dataplane/host.js';
import { ctCounters } from '../dataplane/conntrack.js';
import { natLinks } from '../dataplane/nat-links.js';
import { readStats } from '../dataplane/stats.js';
import { listVteps } from '../dataplane/vxlan.js';
import { lostEvents } from '../objects/monitor.js';
import { listInstances, type InstancePaths } from '../objects/paths.js';
import { progRunStats } from '../sys/libbpf.js';

type Labels = Record<string, string>;

/** Counters and gauges whose values come from elsewhere: each scrape sets them whole. */
class Family {
  readonly metric: client.Gauge<string> | client.Counter<string>;
  constructor(reg: client.Registry, kind: 'counter' | 'gauge', name: string, help: string, labels: string[], collect?: () => void) {
    const C = kind === 'counter' ? client.Counter : client.Gauge;
    this.metric = new C({ name, help, labelNames: labels, registers: [reg], collect });
  }
  reset(): void {
    this.metric.reset();
  }
  set(labels: Labels, v: number): void {
    if (this.metric instanceof client.Gauge) this.metric.set(labels, v);
    else if (v > 0) this.metric.inc(labels, v);
    else this.metric.inc(labels, 0);
  }
}

export interface MetricsOptions {
  /** Only this instance (a daemon started with --netns); default: every instance on bpffs. */
  instances?: () => InstancePaths[];
}

export function createRegistry(o: MetricsOptions = {}): client.Registry {
  const reg = new client.Registry();
  client.collectDefaultMetrics({ register: reg }); // process_* and nodejs_*: the daemon's own
  // gauges named like counters (promtool refuses them): their _total-less twins stay
  for (const n of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) reg.removeSingleMetric(n);
  const I = ['netns', 'interface', 'hook'];
  const f = {
    // registered first, so its collect (which fills every family) runs before any family is read
    rxPackets: new Family(reg, 'counter', 'xdpnet_interface_rx_packets_total', 'Frames received by xdpnet on the interface.', I, () => collectAll()),
    rxBytes: new Family(reg, 'counter', 'xdpnet_interface_rx_bytes_total', 'Bytes received by xdpnet on the interface.', I),
    txPackets: new Family(reg, 'counter', 'xdpnet_interface_tx_packets_total', 'Frames xdpnet sent out of the interface.', I),
    txBytes: new Family(reg, 'counter', 'xdpnet_interface_tx_bytes_total', 'Bytes xdpnet sent out of the interface.', I),
    flooded: new Family(reg, 'counter', 'xdpnet_interface_flooded_packets_total', 'Frames received on the interface and flooded.', I),
    learned: new Family(reg, 'counter', 'xdpnet_interface_learned_macs_total', 'MACs learned (new or moved) on the port.', I),
    learnRefused: new Family(reg, 'counter', 'xdpnet_interface_learn_refused_total', 'Source MACs not learned on the port: the bridge at its max-learned, or the FDB full.', I),
    dropped: new Family(reg, 'counter', 'xdpnet_interface_dropped_packets_total', 'Frames received on the interface and dropped (any reason).', I),
    drops: new Family(reg, 'counter', 'xdpnet_drops_total', 'Frames dropped, by receiving interface and reason.', ['netns', 'interface', 'reason']),
    fdb: new Family(reg, 'gauge', 'xdpnet_fdb_entries', 'FDB entries by bridge and type (static, learned, local).', ['netns', 'bridge', 'type']),
    brLearned: new Family(reg, 'gauge', 'xdpnet_bridge_learned_macs', "MACs the bridge has learned (its max-learned budget's use).", ['netns', 'bridge']),
    brLearnedMax: new Family(reg, 'gauge', 'xdpnet_bridge_learned_macs_limit', 'The most MACs the bridge learns (0: no limit).', ['netns', 'bridge']),
    ports: new Family(reg, 'gauge', 'xdpnet_bridge_ports', 'Ports of the bridge.', ['netns', 'bridge']),
    vteps: new Family(reg, 'gauge', 'xdpnet_vxlan_vteps', 'VTEPs (one per VNI).', ['netns']),
    remotes: new Family(reg, 'gauge', 'xdpnet_vxlan_remotes', 'Remote VTEPs of the VNI (head-end replication list).', ['netns', 'vni', 'bridge']),
    ctEntries: new Family(reg, 'gauge', 'xdpnet_conntrack_entries', 'Conntrack entries (two per flow).', ['netns']),
    ctCapacity: new Family(reg, 'gauge', 'xdpnet_conntrack_capacity_entries', 'Conntrack entries the table holds before the LRU evicts.', ['netns']),
    ct: new Family(reg, 'counter', 'xdpnet_conntrack_events_total', 'Conntrack events (xn_ct_stats): created, insert_failed, port_exhausted, port_retries, expired, restored.', ['netns', 'event']),
    cache: new Family(reg, 'counter', 'xdpnet_cache_lookups_total', "Lookups of the datapath's caches (bridge decisions, vxlan-nexthop, nat hot copy) by result: hit (the cached answer was used) or miss (the slow path ran).", ['netns', 'cache', 'result']),
    lost: new Family(reg, 'counter', 'xdpnet_monitor_lost_events_total', 'Monitor events lost to a full ring buffer.', ['netns']),
    progRun: new Family(reg, 'counter', 'xdpnet_program_run_seconds_total', 'Time the kernel spent in the program (kernel.bpf_stats_enabled=1 only).', ['netns', 'program', 'interface', 'hook']),
    progRuns: new Family(reg, 'counter', 'xdpnet_program_runs_total', 'Runs of the program (kernel.bpf_stats_enabled=1 only).', ['netns', 'program', 'interface', 'hook']),
    bpfStats: new Family(reg, 'gauge', 'xdpnet_bpf_stats_enabled', 'Whether the kernel counts program run time (sysctl kernel.bpf_stats_enabled).', []),
    scrapeErrors: new Family(reg, 'gauge', 'xdpnet_scrape_errors', 'Instances whose maps could not be read in this scrape.', []),
  };
  const all = Object.values(f);

  // One collector fills every family: each instance is read once per scrape, in its own namespace.
  function collectAll(): void {
    for (const x of all) x.reset();
    const statsOn = readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim() === '1';
    f.bpfStats.set({}, statsOn ? 1 : 0);
    let errors = 0;
    for (const inst of (o.instances ?? listInstances)()) {
      try {
        withNetns(instanceNetns(inst.name), () => collectInstance(inst, statsOn));
      } catch {
        errors++; // a namespace deleted under us, an instance half removed: the rest still report
      }
    }
    f.scrapeErrors.set({}, errors);
  }

  function collectInstance(inst: InstancePaths, statsOn: boolean): void {
    const netns = inst.name; // not `instance`: Prometheus gives that label to the scrape target
    const hooks = primaryAttachments(inst);
    const s = readStats(inst, hooks);
    for (const i of s.interfaces) {
      const l = { netns, interface: i.iface ?? `if${i.ifindex}`, hook: i.natOnly ?? hooks.get(i.ifindex)?.hook ?? '' };
      f.dropped.set(l, i.dropped);
      for (const [reason, n] of Object.entries(i.drops)) f.drops.set({ netns, interface: l.interface, reason }, n);
      if (i.natOnly) continue; // NAT alone counts drops there: no series claims it saw 0 packets
      f.rxPackets.set(l, i.rxPackets);
      f.rxBytes.set(l, i.rxBytes);
      f.txPackets.set(l, i.txPackets);
      f.txBytes.set(l, i.txBytes);
      f.flooded.set(l, i.flooded);
      f.learned.set(l, i.learned);
      f.learnRefused.set(l, i.learnRefused);
    }
    for (const [cache, n] of Object.entries(s.caches)) {
      f.cache.set({ netns, cache, result: 'hit' }, n.hits);
      f.cache.set({ netns, cache, result: 'miss' }, n.misses);
    }
    const bridges = bridgeCounts(inst);
    if (bridges.length) {
      const fdb = fdbCounts(inst);
      for (const b of bridges) {
        for (const [type, n] of Object.entries(fdb.get(b.name) ?? { static: 0, learned: 0, local: 0 })) f.fdb.set({ netns, bridge: b.name, type }, n);
        f.brLearned.set({ netns, bridge: b.name }, b.learned);
        f.brLearnedMax.set({ netns, bridge: b.name }, b.maxLearned);
        f.ports.set({ netns, bridge: b.name }, b.ports);
      }
      const vteps = listVteps(inst);
      f.vteps.set({ netns }, vteps.length);
      for (const v of vteps) f.remotes.set({ netns, vni: String(v.vni), bridge: v.bridge }, v.remotes.length);
    }
    const ct = ctCounters(inst);
    if (ct) {
      f.ctEntries.set({ netns }, ct.entries);
      f.ctCapacity.set({ netns }, ct.max);
      const ev: Record<string, number> = {
        created: ct.created, insert_failed: ct.insertFailed, port_exhausted: ct.portExhausted,
        port_retries: ct.portRetries, expired: ct.expired, restored: ct.restored,
      };
      for (const [event, n] of Object.entries(ev)) f.ct.set({ netns, event }, n);
    }
    f.lost.set({ netns }, lostEvents(inst));
    if (statsOn) {
      const links = [...listAttachments(inst), ...natLinks(inst)];
      for (const a of links) {
        const r = progRunStats(a.progId);
        if (!r) continue;
        const l = { netns, program: r.name, interface: a.iface ?? `if${a.ifindex}`, hook: a.hook };
        f.progRun.set(l, Number(r.runTimeNs) / 1e9);
        f.progRuns.set(l, Number(r.runCnt));
      }
    }
  }
  return reg;
}
