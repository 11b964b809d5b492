// Delegation to the IPAM plugin the configuration names (host-local from
// Debian's containernetworking-plugins, or any other), found in CNI_PATH, as
// the spec's "delegated plugin" protocol says: same environment, same stdin.
// xdpnet keeps no addresses of its own here; a later `ipam` type can be added
// beside this without touching the callers.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import type { CniEnv, NetConf } from './config.js';
import { CODES, CniError, type CniResult } from './spec.js';

export function findPlugin(type: string, path: string[]): string {
  for (const dir of path) {
    const p = join(dir, type);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch { /* next directory */ }
  }
  throw new CniError(CODES.INVALID_CONFIG, `IPAM plugin ${type} not found in CNI_PATH (${path.join(':') || 'empty'})`,
    'on Debian: apt-get install containernetworking-plugins (installs /usr/lib/cni/host-local)');
}

type IpamCommand = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS';

function ipamRun(command: IpamCommand, conf: NetConf, env: CniEnv, stdin?: object) {
  return {
    plugin: findPlugin(conf.ipam.type, env.path),
    input: JSON.stringify(stdin ?? conf.raw),
    env: {
      ...process.env, CNI_COMMAND: command, CNI_CONTAINERID: env.containerId, CNI_NETNS: env.netns, CNI_IFNAME: env.ifname,
      CNI_ARGS: env.args, CNI_PATH: env.path.join(':'),
    },
  };
}

interface Exit { status: number | null; signal: string | null; stdout: string; stderr: string; error?: Error }

/** The IPAM plugin's answer: its result, or its error object passed on as it is. */
function answer(command: IpamCommand, conf: NetConf, r: Exit): CniResult | undefined {
  if (r.status === 0) return r.stdout.trim() ? JSON.parse(r.stdout) as CniResult : undefined;
  let err: { code?: number; msg?: string; details?: string } | undefined;
  try {
    err = JSON.parse(r.stdout);
  } catch { /* not an error object */ }
  if (err?.code && err.msg) throw new CniError(err.code, `IPAM ${conf.ipam.type}: ${err.msg}`, err.details);
  throw new CniError(CODES.IPAM, `IPAM ${conf.ipam.type} ${command} failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`})`,
    (r.stderr || r.stdout).trim() || undefined);
}

/** Runs the IPAM plugin for command and waits for it. */
export function delegateIpam(command: IpamCommand, conf: NetConf, env: CniEnv, stdin?: object): CniResult | undefined {
  if (conf.cluster) return undefined; // the agent's (cni/cluster.ts): nothing to delegate
  const run = ipamRun(command, conf, env, stdin);
  const r = spawnSync(run.plugin, [], { input: run.input, encoding: 'utf8', env: run.env, timeout: 60_000 });
  return answer(command, conf, r);
}

/**
 * Starts the IPAM plugin and returns its answer to come: ADD runs it while it
 * makes what needs no address (the veth, the port), as it costs a process
 * start of its own. A rejection no one awaits yet is not "unhandled": the
 * caller awaits it on every path, also when what it did meanwhile failed.
 */
export function startIpam(command: IpamCommand, conf: NetConf, env: CniEnv): Promise<CniResult | undefined> {
  const run = ipamRun(command, conf, env);
  const exit = new Promise<Exit>((resolve) => {
    const child = spawn(run.plugin, [], { env: run.env, stdio: ['pipe', 'pipe', 'pipe'], timeout: 60_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.stdin.on('error', () => { /* it exited without reading: its exit says why */ });
    child.stdin.end(run.input);
    child.on('error', (error) => resolve({ status: null, signal: null, stdout, stderr, error }));
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
  });
  const result = exit.then((r) => answer(command, conf, r));
  result.catch(() => undefined);
  return result;
}
