// The agent's local socket: the CNI plugin asks it for an address of this
// host's blocks and has it publish the endpoint, under the agent's lease (so a
// host's endpoints go when the host goes), and has it release one on DEL.
// One JSON line in, one JSON line out, one request per connection. The socket
// lives in a root-only directory: only root on this host can take addresses.
import { chmodSync, mkdirSync, rmdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { dirname } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { XdpnetError } from '../errors.js';
import { parseUnicastMac } from '../dataplane/addr.js';
import { parseUnicastIp } from '../dataplane/inet.js';
import { bridgeNameOf, prefixLen, type AgentReply, type AgentRequest, type NetworkConfig } from './network.js';
import { allocateEndpoint, readConfig, releaseEndpoint } from './store.js';

export interface SocketOptions {
  path: string;
  client: Etcd3;
  network: string;
  node: string;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

async function answer(o: SocketOptions, req: AgentRequest): Promise<AgentReply> {
  const cfg: NetworkConfig = await readConfig(o.client, o.network);
  if (req?.op === 'add') {
    parseUnicastMac(String(req.mac));
    const ep = await allocateEndpoint(o.client, cfg, o.node, String(req.mac).toLowerCase());
    o.log('address handed out', { ip: ep.ip, mac: ep.mac });
    return { ok: true, ip: ep.ip, prefix: prefixLen(cfg), gateway: cfg.gateway, bridge: bridgeNameOf(cfg) };
  }
  if (req?.op === 'del') {
    parseUnicastIp(String(req.ip), 'ip');
    const released = await releaseEndpoint(o.client, cfg, o.node, req.ip);
    o.log('address released', { ip: req.ip, released });
    return { ok: true, released };
  }
  return { ok: false, error: `unknown request ${JSON.stringify(req)}: expected {"op":"add","mac":...} or {"op":"del","ip":...}` };
}

/** Listens on o.path (replacing a socket file a killed agent left behind). */
export async function serveAgentSocket(o: SocketOptions): Promise<Server> {
  mkdirSync(dirname(o.path), { recursive: true, mode: 0o700 });
  chmodSync(dirname(o.path), 0o700);
  rmSync(o.path, { force: true });
  const server = createServer((conn) => {
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let req: AgentRequest;
      try {
        req = JSON.parse(buf.slice(0, nl));
      } catch {
        conn.end(`${JSON.stringify({ ok: false, error: 'the request is not JSON' })}\n`);
        return;
      }
      answer(o, req).then(
        (r) => conn.end(`${JSON.stringify(r)}\n`),
        (e) => conn.end(`${JSON.stringify({ ok: false, error: (e as Error).message, hint: e instanceof XdpnetError ? e.hint : undefined })}\n`),
      );
    });
    conn.on('error', () => {}); // the plugin went away: nothing to answer
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.path, () => { server.off('error', reject); resolve(); });
  });
  return server;
}

export function closeAgentSocket(server: Server, path: string): void {
  server.close();
  rmSync(path, { force: true });
  try {
    rmdirSync(dirname(path)); // the instance's directory, when no other network's agent uses it
  } catch { /* not empty */ }
}
