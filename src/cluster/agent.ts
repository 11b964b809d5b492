// The cluster agent: keeps this host's overlay maps equal to what etcd says
// about one network. It joins with a lease (kept alive), publishes the
// endpoints its maps hold, reads a snapshot, reconciles the maps to it (adds
// missing, removes stale), then follows a watch from the snapshot's revision.
// When etcd is unreachable the maps stay as they are (the datapath keeps
// forwarding) and the agent retries with backoff; it reconciles on return.
// Its live writes take no state lock (a command on the instance may hold it for
// seconds, e.g. a big `fdb load`): it is the only writer of
// the network's VNI remotes, remote FDB entries and ARP answers, and
// `endpoint add|del` write single entries. Hand-typed `vxlan remote` or `fdb
// --remote` on a network's bridge race with it; a full reconcile undoes them.
import type { Etcd3, IKeyValue, Lease, Watcher } from 'etcd3';
import { listArp, setArp, syncArp } from '../dataplane/arp.js';
import { addBridge, listBridges } from '../dataplane/bridge.js';
import { localStaticMacs, setRemoteFdb, syncRemoteFdb } from '../dataplane/fdb.js';
import { withNetns, lockState } from '../dataplane/host.js';
import { addVtep, listVteps, setRemotes, syncPeers } from '../dataplane/vxlan.js';
import { VXLAN } from '../objects/bridge.js';
import { ipv4ToNum, numToIpv4 } from '../objects/codec.js';
import type { InstancePaths } from '../objects/paths.js';
import { bridgeNameOf, keys, prefixLen, type EndpointRecord, type HostRecord, type NetworkConfig } from './network.js';
import { readConfig, readPrefix } from './store.js';

export interface AgentOptions {
  client: Etcd3;
  network: string;
  node: string;
  underlay: string;
  /** The underlay interface (the VTEP's uplink). */
  dev: string;
  ttl: number;
  inst: InstancePaths;
  netns?: string;
  uplinkHook: 'xdp' | 'tc';
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

const VID = 1;

export class Agent {
  private cfg!: NetworkConfig;
  private hosts = new Map<string, HostRecord>();
  private endpoints = new Map<string, EndpointRecord>();
  private stopped = false;
  private wake: () => void = () => {};
  private pending = false;
  /** Endpoints changed since the last write (old and new record), when no host changed: written one by one. */
  private dirty = new Map<string, { old?: EndpointRecord; cur?: EndpointRecord }>();
  /** A host joined, moved or left: the next write is a full reconcile. */
  private full = false;
  /** VTEP addresses decap accepts (as of the last full write). */
  private peers = new Set<string>();
  private capped = false;
  private ids?: { id: number; uplink: number };
  /** Map writes done after etcd changes, for the bench and tests (`--stats-fd`). */
  applied = 0;

  constructor(private o: AgentOptions) {}

  stop(): void {
    this.stopped = true;
    this.wake();
  }

  /** Runs until stop(): sessions with etcd, retried with backoff. */
  async run(): Promise<void> {
    let backoff = 200;
    while (!this.stopped) {
      try {
        await this.session();
        backoff = 200;
      } catch (e) {
        if (this.stopped) break;
        this.o.log('etcd session ended, retrying', { error: (e as Error).message, retryInMs: backoff });
        await new Promise<void>((r) => { this.wake = r; setTimeout(r, backoff); });
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }

  private async session(): Promise<void> {
    const { client, network, node } = this.o;
    this.cfg = await readConfig(client, network);
    const k = keys(network);
    // The bridge and VTEP before the lease: making them is synchronous (BPF loads, ip) and took 12 s
    // in an emulated VM, during which no keepalive went out and etcd expired a 10 s lease with the
    // host key on it. A restarted agent finds both and only checks (its keys are renewed just after).
    this.ensureDataplane();
    const lease: Lease = client.lease(this.o.ttl);
    let watcher: Watcher | undefined;
    try {
      // membership first: a restarted agent must renew its keys before the old lease expires (its endpoints follow the snapshot, ~1 s later)
      await lease.grant();
      await lease.put(k.host(node)).value(JSON.stringify({ node, underlay: this.o.underlay, port: this.cfg.port } satisfies HostRecord));
      const snap = await readPrefix(client, k.base);
      await this.publishLocal(lease, snap.kvs); // from the snapshot: a second read of every endpoint cost ~1 s at 50 000
      this.hosts.clear();
      this.endpoints.clear();
      for (const kv of snap.kvs) this.onPut(kv.key.toString(), kv.value.toString(), false);
      this.o.log('joined', { network, node, underlay: this.o.underlay, hosts: this.hosts.size, endpoints: this.endpoints.size, revision: snap.revision });
      this.apply();
      watcher = await client.watch().prefix(k.base).startRevision(String(BigInt(snap.revision) + 1n)).create();
      await new Promise<void>((resolve, reject) => {
        this.wake = resolve;
        lease.on('lost', (e) => reject(new Error(`lease lost: ${e.message}`)));
        watcher!.on('put', (kv) => this.onPut(kv.key.toString(), kv.value.toString(), true));
        watcher!.on('delete', (kv) => this.onDelete(kv.key.toString()));
        watcher!.on('error', (e) => reject(new Error(`watch failed: ${e.message}`)));
        watcher!.on('disconnected', (e) => this.o.log('etcd unreachable, forwarding on the last state', { error: e.message }));
        watcher!.on('connected', () => this.o.log('etcd reachable'));
      });
    } finally {
      await watcher?.cancel().catch(() => {});
      if (this.stopped) await lease.revoke().catch(() => {}); // leaving: others remove us now, not after the TTL
      else lease.release();
    }
  }

  /** The bridge (gateway address and MAC) and the VTEP, if this host has none yet. */
  private ensureDataplane(): void {
    const cfg = this.cfg;
    const name = bridgeNameOf(cfg);
    withNetns(this.o.netns, () => {
      if (listBridges(this.o.inst).some((b) => b.name === name) && listVteps(this.o.inst).some((v) => v.vni === cfg.vni)) return; // no lock needed
      const release = lockState(this.o.inst.name);
      try {
        if (!listBridges(this.o.inst).some((b) => b.name === name)) {
          addBridge(this.o.inst, name, { mac: Buffer.from(cfg.gatewayMac.split(':').map((x) => parseInt(x, 16))), address: `${cfg.gateway}/${prefixLen(cfg)}` });
          this.o.log('bridge created', { bridge: name, gateway: cfg.gateway, mac: cfg.gatewayMac });
        }
        if (!listVteps(this.o.inst).some((v) => v.vni === cfg.vni)) {
          addVtep(this.o.inst, { bridge: name, vni: cfg.vni, local: this.o.underlay, dev: this.o.dev, port: cfg.port, hook: this.o.uplinkHook });
          this.o.log('vtep created', { vni: cfg.vni, local: this.o.underlay, dev: this.o.dev });
        }
      } finally {
        release();
      }
    });
  }

  private bridgeId(): number {
    return listBridges(this.o.inst).find((b) => b.name === bridgeNameOf(this.cfg))!.id;
  }

  /** This host's endpoints as its maps hold them: ARP entries whose MAC has a static entry to a local port. */
  private localEndpoints(): EndpointRecord[] {
    if (!listBridges(this.o.inst).some((b) => b.name === bridgeNameOf(this.cfg))) return []; // first start: nothing local yet
    const id = this.bridgeId();
    const macs = localStaticMacs(this.o.inst, id, VID);
    return listArp(this.o.inst, id).filter((r) => r.vid === VID && macs.has(r.mac) && r.ip !== this.cfg.gateway)
      .map((r) => ({ ip: r.ip, mac: r.mac, node: this.o.node }));
  }

  /** Puts this host's endpoints under the new lease; removes keys of ours the maps no longer hold. */
  private async publishLocal(lease: Lease, snapshot: IKeyValue[]): Promise<void> {
    const k = keys(this.o.network);
    const local = withNetns(this.o.netns, () => this.localEndpoints());
    const have: Record<string, string> = Object.fromEntries(snapshot.filter((kv) => kv.key.toString().startsWith(k.endpoints)).map((kv) => [kv.key.toString(), kv.value.toString()]));
    for (const ep of local) {
      const cur = have[k.endpoint(ep.ip)];
      if (cur && (JSON.parse(cur) as EndpointRecord).node !== this.o.node) {
        this.o.log('address conflict: held by another host, not published', { ip: ep.ip, owner: (JSON.parse(cur) as EndpointRecord).node });
        continue;
      }
      await lease.put(k.endpoint(ep.ip)).value(JSON.stringify(ep));
    }
    for (const [key, v] of Object.entries(have)) {
      const ep = JSON.parse(v) as EndpointRecord;
      if (ep.node === this.o.node && !local.some((l) => l.ip === ep.ip)) {
        await this.o.client.delete().key(key);
        this.o.log('stale endpoint of this host removed from etcd', { ip: ep.ip, mac: ep.mac });
      }
    }
  }

  private onPut(key: string, value: string, live: boolean): void {
    const k = keys(this.o.network);
    if (key.startsWith(k.hosts)) {
      const h = JSON.parse(value) as HostRecord;
      const old = this.hosts.get(h.node);
      this.hosts.set(h.node, h);
      if (!live || old?.underlay === h.underlay) return;
      this.o.log(old ? 'host moved' : 'host joined', { node: h.node, underlay: h.underlay });
      this.full = true;
    } else if (key.startsWith(k.endpoints)) {
      const e = JSON.parse(value) as EndpointRecord;
      const old = this.endpoints.get(e.ip);
      this.endpoints.set(e.ip, e);
      if (!live || (old?.mac === e.mac && old?.node === e.node)) return; // a republish under a new lease: nothing to write
      this.o.log('endpoint added', { ...e });
      this.dirty.set(e.ip, { old: this.dirty.get(e.ip)?.old ?? old, cur: e });
    } else return;
    if (live) this.schedule();
  }

  private onDelete(key: string): void {
    const k = keys(this.o.network);
    if (key.startsWith(k.hosts)) {
      const node = key.slice(k.hosts.length);
      if (!this.hosts.delete(node)) return;
      this.o.log('host left', { node });
      this.full = true;
    } else if (key.startsWith(k.endpoints)) {
      const ip = key.slice(k.endpoints.length);
      const e = this.endpoints.get(ip);
      if (!e) return;
      this.endpoints.delete(ip);
      this.o.log('endpoint removed', { ...e });
      this.dirty.set(ip, { old: this.dirty.get(ip)?.old ?? e, cur: undefined });
    } else return;
    this.schedule();
  }

  /** Coalesces a burst of watch events into one map write. */
  private schedule(): void {
    if (this.pending) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      try {
        if (this.full || !this.ids) this.apply();
        else this.applyEndpoints();
      } catch (e) {
        this.o.log('error: maps not updated, reconciling on the next change', { error: (e as Error).message });
        this.full = true;
      }
    });
  }

  /** Writes the endpoints that changed, one entry each: a change costs the same with 50 or 50000 endpoints. */
  private applyEndpoints(): void {
    const changes = [...this.dirty.values()];
    this.dirty.clear();
    const me = this.o.node;
    withNetns(this.o.netns, () => {
      {
        // as of the last full write: listing bridges and VTEPs asks `ip` for addresses and MTUs (slow)
        const { id, uplink } = this.ids!;
        let newPeer = false;
        for (const { old, cur } of changes) {
          if (old && old.node !== me && old.mac !== cur?.mac && ![...this.endpoints.values()].some((e) => e.mac === old.mac)) {
            setRemoteFdb(this.o.inst, id, VID, uplink, old.mac, null);
          }
          if (old && !cur && old.node !== me) setArp(this.o.inst, id, VID, old.ip, null); // ours stay: the maps are their truth
          if (!cur) continue;
          const h = this.hosts.get(cur.node);
          if (cur.node !== me && !h) continue;
          if (cur.node !== me) {
            setRemoteFdb(this.o.inst, id, VID, uplink, cur.mac, ipv4ToNum(h!.underlay));
            if (!this.peers.has(h!.underlay)) newPeer = true;
          }
          setArp(this.o.inst, id, VID, cur.ip, cur.mac);
        }
        if (newPeer) this.full = true; // decap must accept the new VTEP: the full write syncs the peers
      }
    });
    this.applied++;
    if (this.full) this.apply();
    else this.o.log('maps updated', { endpoints: changes.length });
  }

  /** Makes the maps equal to the state: remote VTEPs, remote MACs, ARP answers (ours, others', the gateway's). */
  private apply(): void {
    this.full = false;
    this.dirty.clear();
    const cfg = this.cfg;
    const r = withNetns(this.o.netns, () => {
      {
        const id = this.bridgeId();
        const vtep = listVteps(this.o.inst).find((v) => v.vni === cfg.vni)!;
        this.ids = { id, uplink: vtep.ifindex };
        let remotes = [...this.hosts.values()].filter((h) => h.node !== this.o.node).map((h) => h.underlay).sort();
        if (remotes.length > VXLAN.limits.remotesMax) {
          // Floods reach only these hosts; known endpoints need none (static FDB, ARP answered here).
          if (!this.capped) this.o.log('warning: more hosts than a VNI replicates floods to', { hosts: remotes.length + 1, replicatedTo: VXLAN.limits.remotesMax });
          this.capped = true;
          remotes = remotes.slice(0, VXLAN.limits.remotesMax);
        }
        const rem = setRemotes(this.o.inst, cfg.vni, remotes);
        const fdb = new Map<string, number>();
        const arp = new Map<string, string>([[cfg.gateway, cfg.gatewayMac]]);
        for (const e of this.endpoints.values()) {
          const h = this.hosts.get(e.node);
          if (e.node !== this.o.node && !h) continue; // its host is gone: so are its endpoints, soon, in etcd
          if (e.node !== this.o.node) fdb.set(e.mac, ipv4ToNum(h!.underlay));
          arp.set(e.ip, e.mac);
        }
        for (const l of this.localEndpoints()) arp.set(l.ip, l.mac); // ours stay answered even before etcd has them
        const f = syncRemoteFdb(this.o.inst, id, VID, vtep.ifindex, fdb);
        if (f.added || f.removed) syncPeers(this.o.inst);
        this.peers = new Set([...remotes, ...[...fdb.values()].map(numToIpv4)]);
        const a = syncArp(this.o.inst, id, VID, arp);
        return { rem, f, a };
      }
    });
    this.applied++;
    const changed = r.rem.added.length + r.rem.removed.length + r.f.added + r.f.removed + r.a.added + r.a.removed;
    if (changed) {
      this.o.log('maps updated', {
        vtepsAdded: r.rem.added, vtepsRemoved: r.rem.removed, fdbAdded: r.f.added, fdbRemoved: r.f.removed, arpAdded: r.a.added, arpRemoved: r.a.removed,
      });
    }
    for (const n of r.rem.notes) this.o.log('warning', { note: n });
  }
}
