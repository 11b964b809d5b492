#!/usr/bin/env node
// xdpnet-cni: the CNI plugin executable (installed as /opt/cni/bin/xdpnet by
// `make install-cni`). A runtime runs it once per operation: the command and
// the container in CNI_* variables, the network configuration on stdin, the
// result or an error object on stdout, exit 0 or 1.
import { readFileSync } from 'node:fs';
import { parseEnv, parseNetConf, type NetConf } from './config.js';
import { agentReachable, cmdAddCluster, cmdDelCluster } from './cluster.js';
import { cmdAdd, cmdCheck, cmdDel, cmdGc, cmdStatus } from './plugin.js';
import { CODES, CniError, OWN_VERSION, SUPPORTED_VERSIONS, checkVersion } from './spec.js';

const HELP = `xdpnet-cni: the xdpnet CNI plugin (CNI ${SUPPORTED_VERSIONS.join(', ')})

Container runtimes run it; it is not a command for people. Install it with
\`make install-cni\` (/opt/cni/bin/xdpnet) and name it in a network conflist:

  {"cniVersion":"1.0.0","name":"xnet","plugins":[{"type":"xdpnet","bridge":"xn0",
   "isGateway":true,"ipMasq":true,"mtu":1500,"hook":"tc",
   "ipam":{"type":"host-local","ranges":[[{"subnet":"10.89.0.0/24"}]],"routes":[{"dst":"0.0.0.0/0"}]},
   "capabilities":{"portMappings":true}}]}

To run it by hand: CNI_COMMAND=ADD|DEL|CHECK|VERSION|STATUS|GC CNI_CONTAINERID=ID
CNI_NETNS=/run/netns/NAME CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni xdpnet-cni < network.json

On a network spanning hosts (docs/cluster.md), leave out "bridge" and let this
host's agent hand out addresses: "ipam":{"type":"xdpnet-cluster","network":"prod"}
See docs/cni.md.
`;

function stdinText(): string {
  try {
    return readFileSync(0, 'utf8');
  } catch {
    return '';
  }
}

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(HELP);
    return;
  }
  let version: string = OWN_VERSION;
  try {
    const env = parseEnv(process.env);
    const text = stdinText();
    if (env.command === 'VERSION') {
      // the caller's version, if it sent one, shapes nothing but must be one we speak
      const asked = text.trim() ? (JSON.parse(text) as { cniVersion?: string }).cniVersion : undefined;
      if (asked !== undefined) version = checkVersion(asked);
      out({ cniVersion: version, supportedVersions: SUPPORTED_VERSIONS });
      return;
    }
    version = answerVersion(text);
    const conf: NetConf = parseNetConf(text);
    version = conf.cniVersion;
    switch (env.command) {
      case 'ADD': out(conf.cluster ? await cmdAddCluster(conf, env) : await cmdAdd(conf, env)); break;
      case 'DEL': if (conf.cluster) await cmdDelCluster(conf, env); else await cmdDel(conf, env); break;
      case 'CHECK': await cmdCheck(conf, env); break;
      case 'STATUS':
        if (conf.cluster) {
          try { agentReachable(conf); } catch (e) { throw new CniError(CODES.NOT_AVAILABLE, (e as Error).message); }
        }
        cmdStatus(conf, env);
        break;
      case 'GC': await cmdGc(conf, env); break;
    }
  } catch (e) {
    const err = e instanceof CniError ? e
      : e instanceof SyntaxError ? new CniError(CODES.DECODING_FAILURE, `cannot decode stdin: ${e.message}`)
        : new CniError(CODES.DATAPLANE, `internal error: ${(e as Error)?.message ?? e}`, (e as Error)?.stack);
    out(err.toJSON(version));
    process.exitCode = 1;
  }
}

/** Errors are answered in the configuration's version when it names one we speak, even if the rest is wrong. */
function answerVersion(text: string): string {
  try {
    const v = (JSON.parse(text) as { cniVersion?: unknown }).cniVersion;
    return (SUPPORTED_VERSIONS as readonly unknown[]).includes(v) ? v as string : OWN_VERSION;
  } catch {
    return OWN_VERSION;
  }
}

function out(v: object): void {
  process.stdout.write(`${JSON.stringify(v)}\n`);
}

void main();
