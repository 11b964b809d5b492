// The daemon's /metrics endpoint (Prometheus text format).
import { createServer, type Server } from 'node:http';
import type client from 'prom-client';
import { UsageError, XdpnetError } from '../errors.js';

/** HOST:PORT, as --metrics-addr takes it (IPv4 or [IPv6]). */
export function parseListenAddr(s: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) throw new UsageError(`--metrics-addr must be HOST:PORT, got ${s}`, 'e.g. --metrics-addr 127.0.0.1:9432');
  return { host: m[1] ?? m[2], port };
}

export function serveMetrics(reg: client.Registry, addr: { host: string; port: number }): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('xdpnet serves /metrics only\n');
      return;
    }
    reg.metrics().then(
      (body) => res.writeHead(200, { 'content-type': reg.contentType }).end(body),
      (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`collecting metrics failed: ${e.message}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new XdpnetError(`cannot listen on ${addr.host}:${addr.port}: ${e.code ?? e.message}`, e.code === 'EADDRINUSE' ? 'another process has that port: pick another' : undefined)));
    server.listen(addr.port, addr.host, () => resolve(server));
  });
}
