// ADD and DEL on a cluster network (`"ipam": {"type": "xdpnet-cluster",
// "network": NAME}`): the address comes from this host's agent over its local
// socket, which takes it from the host's blocks and publishes the endpoint
// {ip, mac, node} in etcd under its own lease, so every other host programs
// it and it goes when the host goes. The plugin holds no etcd client: the
// agent has one, and the socket reaches it from any network namespace.
// The MAC is chosen here, before the veth exists, because the endpoint record
// carries it.
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { agentSocketPath, type AgentReply, type AgentRequest } from '../cluster/network.js';
import { formatMac, randomMac } from '../dataplane/addr.js';
import { listArp, setArp } from '../dataplane/arp.js';
import { bridgeMac, listBridges } from '../dataplane/bridge.js';
import type { CniEnv, NetConf } from './config.js';
import { hostVethName } from './link.js';
import { addResult, locked, ownInstance, plugIn, prefixOf, unwire, wire } from './plugin.js';
import { CODES, CniError, type CniResult } from './spec.js';
import type { Attachment } from './state.js';

const VID = 1;

const socketOf = (conf: NetConf) => conf.cluster!.socket ?? agentSocketPath(ownInstance().name, conf.cluster!.network);

const agentHint = (conf: NetConf) => `start it on this host: xdpnet agent --network ${conf.cluster!.network} (it serves ${socketOf(conf)})`;

/** STATUS: the agent's socket is there. */
export function agentReachable(conf: NetConf): void {
  if (!existsSync(socketOf(conf))) throw new Error(`no agent of network ${conf.cluster!.network} on this host. ${agentHint(conf)}`);
}

class AgentAway extends Error {}

/** One request, one answer. AgentAway when nothing listens; a CniError when the agent says no. */
function ask(conf: NetConf, req: AgentRequest): Promise<AgentReply & { ok: true }> {
  const path = socketOf(conf);
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let buf = '';
    s.setEncoding('utf8');
    s.setTimeout(30_000, () => s.destroy(new Error('the agent did not answer in 30 s')));
    s.on('connect', () => s.write(`${JSON.stringify(req)}\n`));
    s.on('data', (d) => { buf += d; });
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') reject(new AgentAway(`no agent of network ${conf.cluster!.network} listens on ${path}`));
      else reject(new CniError(CODES.TRY_AGAIN_LATER, `agent of network ${conf.cluster!.network}: ${e.message}`));
    });
    s.on('end', () => {
      let r: AgentReply;
      try {
        r = JSON.parse(buf);
      } catch {
        reject(new CniError(CODES.IPAM, `the agent's answer is not JSON: ${JSON.stringify(buf.slice(0, 200))}`));
        return;
      }
      if (r.ok) resolve(r as AgentReply & { ok: true });
      else reject(new CniError(CODES.IPAM, `agent of network ${conf.cluster!.network}: ${r.error}`, r.hint));
    });
  });
}

export async function cmdAddCluster(conf: NetConf, env: CniEnv): Promise<CniResult> {
  await locked((_inst, store) => {
    if (store.attachment(conf.name, env.containerId, env.ifname)) {
      throw new CniError(CODES.DATAPLANE, `container ${env.containerId} already has ${env.ifname} on network ${conf.name}`, 'DEL it first');
    }
  });
  const mac = formatMac(randomMac());
  let got: { ip: string; prefix: number; gateway: string; bridge: string };
  try {
    got = await ask(conf, { op: 'add', mac }) as typeof got;
  } catch (e) {
    if (e instanceof AgentAway) throw new CniError(CODES.TRY_AGAIN_LATER, e.message, agentHint(conf));
    throw e;
  }
  const c = { ...conf, bridge: got.bridge };
  try {
    return await locked((inst, store) => {
      const id = listBridges(inst).find((b) => b.name === got.bridge)?.id;
      if (id === undefined || !bridgeMac(inst, got.bridge)) throw new CniError(CODES.DATAPLANE, `bridge ${got.bridge} of network ${conf.cluster!.network} is not on this host`, agentHint(conf));
      const a: Attachment = {
        network: conf.name, containerId: env.containerId, ifname: env.ifname, netns: env.netns, bridge: got.bridge,
        hostIface: hostVethName(env.containerId, env.ifname), ifindex: 0, mac, address: `${got.ip}/${got.prefix}`,
        subnet: prefixOf(`${got.ip}/${got.prefix}`), portMappings: [],
      };
      const routes = { routes: [{ dst: '0.0.0.0/0', gw: got.gateway }] };
      let hostMac: string;
      try {
        hostMac = plugIn(inst, c, a).hostMac;
        wire(inst, store, c, a, got.gateway, routes);
        setArp(inst, id, VID, got.ip, mac); // answered here at once; the agent's watch writes the same
      } catch (e) {
        unwire(inst, store, a);
        throw e;
      }
      store.saveAttachment(a);
      return addResult(inst, c, a, got.gateway, routes, hostMac);
    });
  } catch (e) {
    await ask(conf, { op: 'del', ip: got.ip }).catch(() => {}); // nothing half-done: the address goes back
    throw e;
  }
}

/**
 * Removes the container's port, its ARP answer, then its record in etcd. With
 * no agent listening, DEL still succeeds: the agent, when it starts, deletes
 * this node's records that its maps no longer hold. An agent that answers
 * with an error (etcd unreachable) makes DEL fail with "try again later",
 * keeping the attachment so that the retry knows the address.
 */
export async function cmdDelCluster(conf: NetConf, env: CniEnv): Promise<void> {
  const ip = await locked((inst, store) => {
    const a = store.attachment(conf.name, env.containerId, env.ifname);
    if (!a) {
      // no record: remove what the name says (a port of any bridge)
      unwire(inst, store, { network: conf.name, containerId: env.containerId, ifname: env.ifname, netns: env.netns, bridge: '',
        hostIface: hostVethName(env.containerId, env.ifname), ifindex: 0, mac: '', address: '0.0.0.0/32', subnet: '', portMappings: [] });
      return undefined;
    }
    unwire(inst, store, a);
    const addr = a.address.split('/')[0];
    const id = listBridges(inst).find((b) => b.name === a.bridge)?.id;
    if (id !== undefined && listArp(inst, id).some((r) => r.vid === VID && r.ip === addr && r.mac === a.mac)) setArp(inst, id, VID, addr, null);
    return addr;
  });
  if (ip) {
    try {
      await ask(conf, { op: 'del', ip });
    } catch (e) {
      if (!(e instanceof AgentAway)) throw e instanceof CniError && e.code === CODES.IPAM ? new CniError(CODES.TRY_AGAIN_LATER, e.message, e.details) : e;
    }
  }
  await locked((_inst, store) => store.dropAttachment(conf.name, env.containerId, env.ifname));
}
