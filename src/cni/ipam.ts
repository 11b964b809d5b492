// Delegation to the IPAM plugin the configuration names (host-local from
// Debian's containernetworking-plugins, or any other), found in CNI_PATH, as
// the spec's "delegated plugin" protocol says: same environment, same stdin.
// xdpnet keeps no addresses of its own here; a later `ipam` type can be added
// beside this without touching the callers.
import { spawnSync } from 'node:child_process';
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

/** Runs the IPAM plugin for command; its error object, if it writes one, is passed on as it is. */
export function delegateIpam(command: 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS', conf: NetConf, env: CniEnv, stdin?: object): CniResult | undefined {
  if (conf.cluster) return undefined; // the agent's (cni/cluster.ts): nothing to delegate
  const plugin = findPlugin(conf.ipam.type, env.path);
  const r = spawnSync(plugin, [], {
    input: JSON.stringify(stdin ?? conf.raw),
    encoding: 'utf8',
    env: {
      ...process.env, CNI_COMMAND: command, CNI_CONTAINERID: env.containerId, CNI_NETNS: env.netns, CNI_IFNAME: env.ifname,
      CNI_ARGS: env.args, CNI_PATH: env.path.join(':'),
    },
    timeout: 60_000,
  });
  if (r.status === 0) return r.stdout.trim() ? JSON.parse(r.stdout) as CniResult : undefined;
  let err: { code?: number; msg?: string; details?: string } | undefined;
  try {
    err = JSON.parse(r.stdout);
  } catch { /* not an error object */ }
  if (err?.code && err.msg) throw new CniError(err.code, `IPAM ${conf.ipam.type}: ${err.msg}`, err.details);
  throw new CniError(CODES.IPAM, `IPAM ${conf.ipam.type} ${command} failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`})`,
    (r.stderr || r.stdout).trim() || undefined);
}
