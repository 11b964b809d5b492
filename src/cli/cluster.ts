// Many hosts, one network: `network create|show`, `endpoint add|del`, `agent`.
// etcd holds the network; the agent keeps this host's maps equal to it.
// The etcd client (gRPC) loads only here, on demand: it would slow every other command's start.
import { hostname } from 'node:os';
import { Command, Option } from 'commander';
import { agentSocketPath, bridgeNameOf, checkNetworkName, checkNodeName, keys, makeConfig, type EndpointRecord, type HostRecord } from '../cluster/network.js';
import type { EtcdOptions } from '../cluster/store.js';
import { XdpnetError } from '../errors.js';
import { parseUnicastMac } from '../dataplane/addr.js';
import { listArp, setArp } from '../dataplane/arp.js';
import { listBridges } from '../dataplane/bridge.js';
import { addFdb, delFdb } from '../dataplane/fdb.js';
import { ensureBpffs, withNetns, ipJson, lockState, requirePrivileges } from '../dataplane/host.js';
import { parseUnicastIp } from '../dataplane/inet.js';
import { instancePaths } from '../objects/paths.js';
import { deprecatedAlias, integer } from './args.js';
import { globals } from './context.js';
import { json, table } from './format.js';

const DEFAULT_ETCD = 'http://127.0.0.1:2379';
const store = () => import('../cluster/store.js');

function etcdOptions(cmd: Command): Command {
  return cmd
    .option('--etcd-endpoints <urls>', 'etcd v3 endpoints, comma-separated (env XDPNET_ETCD_ENDPOINTS)', process.env.XDPNET_ETCD_ENDPOINTS ?? DEFAULT_ETCD)
    .option('--etcd-cacert <file>', 'CA certificate (PEM) that signed etcd\'s server certificate: turns on TLS')
    .option('--etcd-cert <file>', 'client certificate (PEM) for etcd\'s client-cert auth')
    .option('--etcd-key <file>', 'the client certificate\'s key (PEM)');
}

interface NodeOpts extends EtcdOptions { network: string; node?: string }
const nodeName = (o: { node?: string }) => checkNodeName(o.node ?? hostname());

/** Root and bpffs, without entering the namespace: etcd sockets stay in ours, dataplane work goes through withNetns. */
function privileged(cmd: Command) {
  const { netns } = globals(cmd);
  requirePrivileges();
  ensureBpffs();
  return { inst: instancePaths(netns), netns };
}

/** The first IPv4 address of the default route's interface (in the namespace), and that interface. */
function defaultUnderlay(): { ip: string; dev: string } {
  const r = ipJson<Array<{ dev?: string }>>(['-4', 'route', 'show', 'default'], []);
  const dev = r[0]?.dev;
  if (!dev) throw new XdpnetError('no default route to take the underlay address from', 'give it: --underlay-ip ADDRESS');
  const ip = ipJson<Array<{ addr_info?: Array<{ family: string; local: string }> }>>(['addr', 'show', 'dev', dev], [])[0]?.addr_info?.find((a) => a.family === 'inet')?.local;
  if (!ip) throw new XdpnetError(`the default route's interface ${dev} has no IPv4 address`, 'give one: --underlay-ip ADDRESS');
  return { ip, dev };
}

function underlayDev(ip: string): string {
  const rows = ipJson<Array<{ ifname: string; addr_info?: Array<{ local: string }> }>>(['addr', 'show'], []);
  const dev = rows.find((r) => r.addr_info?.some((a) => a.local === ip))?.ifname;
  if (!dev) throw new XdpnetError(`no interface has the underlay address ${ip}`, 'give an address of this host: --underlay-ip');
  return dev;
}

function logger(format: 'text' | 'json') {
  return (msg: string, fields: Record<string, unknown> = {}) => {
    const ts = new Date().toISOString();
    if (format === 'json') console.log(JSON.stringify({ ts, msg, ...fields }));
    else console.log(`${ts} ${msg}${Object.entries(fields).map(([k, v]) => ` ${k}=${Array.isArray(v) ? v.join(',') || '-' : String(v)}`).join('')}`);
  };
}

export function clusterCommands(program: Command): void {
  const network = program.command('network').description('overlay networks stored in etcd: one VNI and one flat address range across hosts');

  deprecatedAlias(etcdOptions(network.command('create <name>')), '--port <n>', '--udp-port')
    .description('store a network once in etcd: its VNI, cluster CIDR and block size (hosts claim blocks of it)')
    .requiredOption('--vni <n>', 'VXLAN network identifier, 1 to 16777215')
    .requiredOption('--cidr <cidr>', 'cluster CIDR: one flat subnet for every container on every host, e.g. 10.90.0.0/16')
    .option('--block <len>', 'prefix length of the address blocks hosts claim (/26: 64 addresses)', '/26')
    .option('--udp-port <n>', 'VXLAN UDP port', '4789')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
The gateway is the CIDR's first address, with a MAC derived from the VNI: every host serves both
(a distributed gateway), so containers keep their gateway wherever they run.

Example:
  xdpnet network create prod --vni 100 --cidr 10.90.0.0/16 --block /26
  then on each host:  xdpnet agent --network prod`)
    .action(async (name: string, o: EtcdOptions & { vni: string; cidr: string; block: string; udpPort: string; json?: boolean }) => {
      const cfg = makeConfig(checkNetworkName(name), integer(o.vni, '--vni', 1, 0xffffff), o.cidr,
        integer(o.block.replace(/^\//, ''), '--block', 8, 30), integer(o.udpPort, '--udp-port', 1, 65535));
      const { withEtcd, createNetwork } = await store();
      await withEtcd(o, (c) => createNetwork(c, cfg));
      console.log(o.json ? json(cfg) : `network ${cfg.name}: VNI ${cfg.vni}, ${cfg.cidr} in /${cfg.block} blocks, gateway ${cfg.gateway} (${cfg.gatewayMac})`);
    });

  etcdOptions(network.command('show <name>'))
    .description('a network as etcd holds it: config, hosts (live leases), blocks, endpoints')
    .option('--json', 'machine-readable output')
    .action(async (name: string, o: EtcdOptions & { json?: boolean }) => {
      const { withEtcd, readConfig, readBlocks } = await store();
      const out = await withEtcd(o, async (c) => {
        const cfg = await readConfig(c, checkNetworkName(name));
        const k = keys(name);
        const hosts = Object.values(await c.getAll().prefix(k.hosts).strings()).map((v) => JSON.parse(v) as HostRecord);
        const endpoints = Object.values(await c.getAll().prefix(k.endpoints).strings()).map((v) => JSON.parse(v) as EndpointRecord);
        const blocks = Object.fromEntries(await readBlocks(c, name));
        return { config: cfg, hosts, blocks, endpoints };
      });
      if (o.json) return console.log(json(out));
      const c = out.config;
      console.log(`network ${c.name}: VNI ${c.vni}, ${c.cidr} in /${c.block} blocks, gateway ${c.gateway} (${c.gatewayMac}), port ${c.port}`);
      console.log(table(['NODE', 'UNDERLAY', 'BLOCKS', 'ENDPOINTS'], out.hosts.map((h) => [h.node, h.underlay,
        Object.entries(out.blocks).filter(([, n]) => n === h.node).map(([b]) => b).join(',') || '-', out.endpoints.filter((e) => e.node === h.node).length])));
    });

  const endpoint = program.command('endpoint').description('endpoints (container ports) of a network on this host, published in etcd');

  etcdOptions(endpoint.command('add <port>'))
    .description('make a bridge port an endpoint of the network: an address (from this host\'s blocks, or --ip), a static FDB entry, an ARP answer, and its record in etcd for every other host')
    .requiredOption('--network <name>', 'the network (see `xdpnet network create`)')
    .requiredOption('--mac <mac>', 'the MAC address of the container\'s interface behind the port')
    .option('--ip <address>', 'this address instead of the next free one of the host\'s blocks')
    .option('--node <name>', 'this host\'s node name, as its agent uses it (default: the hostname)')
    .option('--json', 'machine-readable output (address, prefix, gateway: what the container needs)')
    .addHelpText('after', `
The port must already be a port of the network's bridge (xnb<VNI>, which the agent creates):
  xdpnet attach veth1 --bridge xnb100
  xdpnet endpoint add veth1 --network prod --mac 02:00:0a:5a:00:02 --json
The agent of this node must be running (endpoints share its lease: they go when the host goes).
Why a command and not discovery of static FDB entries: an FDB entry knows a MAC, not the
container's address; the address must come from the network's blocks anyway (or be checked
against them), and the CNI plugin needs exactly this call.`)
    .action(async (port: string, o: NodeOpts & { mac: string; ip?: string; json?: boolean }, cmd: Command) => {
      const mac = parseUnicastMac(o.mac);
      const macStr = o.mac.toLowerCase();
      if (o.ip !== undefined) parseUnicastIp(o.ip, '--ip');
      const node = nodeName(o);
      const { inst, netns } = privileged(cmd);
      const { withEtcd, readConfig, allocateEndpoint, releaseEndpoint } = await store();
      const r = await withEtcd(o, async (c) => {
        const cfg = await readConfig(c, checkNetworkName(o.network));
        const bridge = bridgeNameOf(cfg);
        withNetns(netns, () => {
          if (!listBridges(inst).some((b) => b.name === bridge)) throw new XdpnetError(`bridge ${bridge} of network ${cfg.name} is not on this host`, `start the agent first: xdpnet agent --network ${cfg.name}`);
        });
        const ep = await allocateEndpoint(c, cfg, node, macStr, o.ip);
        try {
          withNetns(netns, () => {
            const release = lockState(inst.name);
            try {
              addFdb(inst, { mac, bridge, port }, netns);
              const id = listBridges(inst).find((b) => b.name === bridge)!.id;
              setArp(inst, id, 1, ep.ip, ep.mac); // one entry: the agent writes the others concurrently
            } finally {
              release();
            }
          });
        } catch (e) {
          await releaseEndpoint(c, cfg, node, ep.ip); // nothing half-done
          throw e;
        }
        return { ...ep, prefix: Number(cfg.cidr.split('/')[1]), gateway: cfg.gateway, port, network: cfg.name };
      });
      console.log(o.json ? json(r) : `${port}: ${r.ip}/${r.prefix} ${r.mac}, gateway ${r.gateway} (network ${r.network})`);
    });

  etcdOptions(endpoint.command('del <ip>'))
    .description('remove an endpoint of this host: its etcd record, FDB entry and ARP answer')
    .requiredOption('--network <name>', 'the network')
    .option('--node <name>', 'this host\'s node name (default: the hostname)')
    .option('--json', 'print the endpoint removed as JSON: {"removed": {"ip", "mac", "port", "network", "node"}}')
    .action(async (ip: string, o: NodeOpts & { json?: boolean }, cmd: Command) => {
      parseUnicastIp(ip, 'address');
      const node = nodeName(o);
      const { inst, netns } = privileged(cmd);
      const { withEtcd, readConfig, releaseEndpoint } = await store();
      const removed = await withEtcd(o, async (c) => {
        const cfg = await readConfig(c, checkNetworkName(o.network));
        const bridge = bridgeNameOf(cfg);
        const gone = withNetns(netns, () => {
          const release = lockState(inst.name);
          try {
            const id = listBridges(inst).find((b) => b.name === bridge)?.id;
            const row = id === undefined ? undefined : listArp(inst, id).find((a) => a.ip === ip && a.vid === 1);
            if (!row) throw new XdpnetError(`${ip} is not an endpoint on this host`, `see \`xdpnet network show ${cfg.name}\``);
            const fdb = delFdb(inst, Buffer.from(row.mac.split(':').map((x) => parseInt(x, 16))), bridge, 1);
            setArp(inst, id!, 1, ip, null);
            return { ip, mac: row.mac, port: fdb[0]?.port ?? null, network: cfg.name, node };
          } finally {
            release();
          }
        });
        await releaseEndpoint(c, cfg, node, ip);
        return gone;
      });
      console.log(o.json ? json({ removed }) : `endpoint ${ip} removed`);
    });

  etcdOptions(program.command('agent'))
    .description('keep this host in a network: join with a lease, publish its endpoints, and program every other host\'s VTEP, MACs and ARP answers from etcd, live')
    .requiredOption('--network <name>', 'the network (created once with `xdpnet network create`)')
    .option('--node <name>', 'this host\'s name in the network (default: the hostname)')
    .option('--underlay-ip <address>', 'this host\'s VTEP address (default: the address of the default route\'s interface)')
    .option('--ttl <secs>', 'lease TTL: a host whose agent stops is removed everywhere within about this long', '10')
    .addOption(new Option('--uplink-hook <hook>', 'decap on the underlay interface: xdp (NIC) or tc (a veth underlay keeps GSO)').choices(['xdp', 'tc']).default('xdp'))
    .addOption(new Option('--log-format <format>', 'one line per change: text or json').choices(['text', 'json']).default('text'))
    .addHelpText('after', `
On first start it creates the network's bridge xnb<VNI> (gateway address and MAC) and its VTEP on
the underlay interface. It serves the CNI plugin (a network config with "cluster":{"network":NAME})
on /run/xdpnet/agent/<instance>/<network>.sock: addresses from this host's blocks, endpoints
published under its lease. Stopping it (SIGTERM) revokes its lease: the others remove this host at
once; killed, after the TTL. The datapath keeps forwarding either way (pinned maps).
Unit file: contrib/xdpnet-agent.service (reads /etc/default/xdpnet-agent).

Example:
  xdpnet agent --network prod --etcd-endpoints https://10.0.0.5:2379 --etcd-cacert ca.pem \\
    --etcd-cert host.pem --etcd-key host-key.pem --log-format json`)
    .action(async (o: NodeOpts & { underlayIp?: string; ttl: string; uplinkHook: 'xdp' | 'tc'; logFormat: 'text' | 'json' }, cmd: Command) => {
      const node = nodeName(o);
      checkNetworkName(o.network);
      const ttl = integer(o.ttl, '--ttl', 2, 3600);
      if (o.underlayIp !== undefined) parseUnicastIp(o.underlayIp, '--underlay-ip');
      const { inst, netns } = privileged(cmd);
      const { ip, dev } = withNetns(netns, () => (o.underlayIp ? { ip: o.underlayIp, dev: underlayDev(o.underlayIp) } : defaultUnderlay()));
      const { connect } = await store();
      const { Agent } = await import('../cluster/agent.js');
      const client = connect(o);
      const log = logger(o.logFormat);
      const agent = new Agent({ client, network: o.network, node, underlay: ip, dev, ttl, inst, netns, uplinkHook: o.uplinkHook, log });
      const { serveAgentSocket, closeAgentSocket } = await import('../cluster/socket.js');
      const socket = agentSocketPath(inst.name, o.network);
      const server = await serveAgentSocket({ path: socket, client, network: o.network, node, log });
      log('serving the CNI plugin', { socket });
      const stop = () => agent.stop();
      process.once('SIGINT', stop).once('SIGTERM', stop);
      try {
        await agent.run();
      } finally {
        closeAgentSocket(server, socket);
        client.close();
      }
    });
}


