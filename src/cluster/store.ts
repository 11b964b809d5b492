// etcd access for one network: the client (TLS from files), the network's
// config, block claims and endpoint addresses by transaction. Only this
// module and agent.ts talk to etcd.
import { readFileSync } from 'node:fs';
import { Etcd3, Range, type IKeyValue, type IOptions } from 'etcd3';
import { UsageError, XdpnetError } from '../errors.js';
import { ipv4ToNum } from '../objects/codec.js';
import { addressesOf, blocksOf, keys, parseConfig, parseNetCidr, type EndpointRecord, type NetworkConfig } from './network.js';

export interface EtcdOptions {
  etcdEndpoints: string;
  etcdCacert?: string;
  etcdCert?: string;
  etcdKey?: string;
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new XdpnetError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

/** An etcd v3 client. https:// endpoints need --etcd-cacert; a client certificate is optional. */
export function connect(o: EtcdOptions): Etcd3 {
  const hosts = o.etcdEndpoints.split(',').map((s) => s.trim()).filter(Boolean);
  if (!hosts.length || hosts.some((h) => !/^https?:\/\/[^/]+$/.test(h))) {
    throw new UsageError(`invalid --etcd-endpoints '${o.etcdEndpoints}': expected URL[,URL] like http://127.0.0.1:2379`);
  }
  if ((o.etcdCert === undefined) !== (o.etcdKey === undefined)) throw new UsageError('--etcd-cert and --etcd-key go together');
  const opts: IOptions = { hosts, dialTimeout: 2000 };
  if (o.etcdCacert) {
    opts.credentials = {
      rootCertificate: readPem(o.etcdCacert, 'CA certificate'),
      ...(o.etcdCert ? { certChain: readPem(o.etcdCert, 'client certificate'), privateKey: readPem(o.etcdKey!, 'client key') } : {}),
    };
  } else if (hosts.some((h) => h.startsWith('https:'))) {
    throw new UsageError('https:// etcd endpoints need --etcd-cacert');
  }
  return new Etcd3(opts);
}

/** Runs fn with a client and closes it; etcd errors become one clear line. */
export async function withEtcd<T>(o: EtcdOptions, fn: (c: Etcd3) => Promise<T>): Promise<T> {
  const c = connect(o);
  try {
    return await fn(c);
  } catch (e) {
    if (e instanceof XdpnetError) throw e;
    throw new XdpnetError(`etcd at ${o.etcdEndpoints}: ${(e as Error).message}`, 'is etcd running and reachable? (--etcd-endpoints)');
  } finally {
    c.close();
  }
}

/**
 * Every key under prefix as of one revision, read in pages: one range reply
 * is capped at 4 MiB by gRPC, which 50 000 endpoints exceed (seen: 5.9 MB).
 */
export async function readPrefix(c: Etcd3, prefix: string, page = 5000): Promise<{ kvs: IKeyValue[]; revision: string }> {
  const end = Range.prefix(prefix).end;
  let start = Buffer.from(prefix);
  let revision: string | undefined;
  const kvs: IKeyValue[] = [];
  for (;;) {
    const q = c.getAll().inRange(new Range(start, end)).limit(page);
    const r = await (revision ? q.revision(revision) : q).exec();
    revision ??= String(r.header.revision);
    kvs.push(...r.kvs);
    if (!r.more || !r.kvs.length) return { kvs, revision };
    start = Buffer.concat([r.kvs[r.kvs.length - 1].key, Buffer.from([0])]);
  }
}

export async function readConfig(c: Etcd3, name: string): Promise<NetworkConfig> {
  return parseConfig(name, await c.get(keys(name).config).string());
}

/** Stores a network's config once: a second create of the same name is refused by the transaction. */
export async function createNetwork(c: Etcd3, cfg: NetworkConfig): Promise<void> {
  const k = keys(cfg.name).config;
  const r = await c.if(k, 'Create', '==', 0).then(c.put(k).value(JSON.stringify(cfg))).commit();
  if (!r.succeeded) throw new XdpnetError(`network ${cfg.name} already exists`, `see it with \`xdpnet network show ${cfg.name}\``);
}

/** Blocks by owner node. */
export async function readBlocks(c: Etcd3, name: string): Promise<Map<string, string>> {
  const all = await c.getAll().prefix(keys(name).blocks).strings();
  return new Map(Object.entries(all).map(([k, v]) => [k.slice(keys(name).blocks.length).replace('-', '/'), (JSON.parse(v) as { node: string }).node]));
}

/**
 * Claims the first free block for node: a transaction that succeeds only if
 * nobody holds the key, so of two hosts claiming one block exactly one wins
 * and the other moves on to the next. Returns the block, or undefined when the
 * network has none left.
 */
export async function claimBlock(c: Etcd3, cfg: NetworkConfig, node: string): Promise<string | undefined> {
  const taken = await readBlocks(c, cfg.name);
  for (const b of blocksOf(cfg)) {
    if (taken.has(b)) continue;
    const k = keys(cfg.name).block(b);
    const r = await c.if(k, 'Create', '==', 0).then(c.put(k).value(JSON.stringify({ node }))).commit();
    if (r.succeeded) return b;
  }
  return undefined;
}

/** The lease of node's membership key: endpoints live and die with their host. */
export async function hostLease(c: Etcd3, cfg: NetworkConfig, node: string): Promise<string> {
  const r = await c.get(keys(cfg.name).host(node)).exec();
  const kv = r.kvs[0];
  if (!kv) throw new XdpnetError(`no agent of node ${node} in network ${cfg.name}`, `start it: xdpnet agent --network ${cfg.name} --node ${node} ...`);
  return String(kv.lease);
}

/** Creates the endpoint's key if its address is free: true if this call took it. */
async function takeAddress(c: Etcd3, cfg: NetworkConfig, ep: EndpointRecord, lease: string): Promise<boolean> {
  const k = keys(cfg.name).endpoint(ep.ip);
  const r = await c.if(k, 'Create', '==', 0).then(c.put(k).value(JSON.stringify(ep)).lease(lease)).commit();
  return r.succeeded;
}

/**
 * Publishes an endpoint of node. With ip, that address (in the cluster CIDR,
 * not taken); without, the first free address of node's blocks, claiming a
 * new block when they are full.
 */
export async function allocateEndpoint(c: Etcd3, cfg: NetworkConfig, node: string, mac: string, ip?: string): Promise<EndpointRecord> {
  const lease = await hostLease(c, cfg, node);
  if (ip !== undefined) {
    const { base, len } = parseNetCidr(cfg.cidr);
    const n = ipv4ToNum(ip);
    if (n < base || n >= base + 2 ** (32 - len) || ip === cfg.gateway) throw new UsageError(`${ip} is not a usable address of ${cfg.cidr} (the gateway is ${cfg.gateway})`);
    if (!(await takeAddress(c, cfg, { ip, mac, node }, lease))) throw new XdpnetError(`${ip} is taken in network ${cfg.name}`, 'leave out --ip to get a free one');
    return { ip, mac, node };
  }
  for (;;) {
    const used = new Set((await readPrefix(c, keys(cfg.name).endpoints)).kvs.map((kv) => kv.key.toString()));
    const mine = [...(await readBlocks(c, cfg.name))].filter(([, n]) => n === node).map(([b]) => b);
    for (const b of mine) {
      for (const a of addressesOf(cfg, b)) {
        if (used.has(keys(cfg.name).endpoint(a))) continue;
        if (await takeAddress(c, cfg, { ip: a, mac, node }, lease)) return { ip: a, mac, node };
      }
    }
    if (!(await claimBlock(c, cfg, node))) throw new XdpnetError(`network ${cfg.name} has no free address block left`, `its CIDR ${cfg.cidr} is used up`);
  }
}

/** Removes node's endpoint at ip; false if the key is not node's. */
export async function releaseEndpoint(c: Etcd3, cfg: NetworkConfig, node: string, ip: string): Promise<boolean> {
  const k = keys(cfg.name).endpoint(ip);
  const v = await c.get(k).string();
  if (v === null || (JSON.parse(v) as EndpointRecord).node !== node) return false;
  await c.delete().key(k);
  return true;
}
