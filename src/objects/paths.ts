// Where things live: built objects, and each instance's pins on bpffs.
//   <bpffs>/xdpnet/<instance>/maps/<map>        maps shared by the instance's programs
//   <bpffs>/xdpnet/<instance>/links/...         programs on interface hooks (names: dataplane/links.ts)
//   <bpffs>/xdpnet/<instance>/progs/<object>-<build>/<program>   programs loaded once per instance (builds.ts)
// An instance is the host ("host") or one named network namespace ("ns-<name>"),
// so state of different namespaces never mixes.
import { fileURLToPath } from 'node:url';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BpfError, UsageError } from '../errors.js';
import { BpfObject } from '../sys/libbpf.js';
import { missingNormalOnly, type ObjectSet, type Probes } from './features.js';

/** The package root: the nearest folder up with a package.json (from dist/ or from source). */
const PKG_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
})();

/** Where bpffs is mounted (XDPNET_BPFFS lets tests use another mount). */
export function bpffsRoot(): string {
  return process.env.XDPNET_BPFFS ?? '/sys/fs/bpf';
}

/** Which object set this process loads, and why. */
export interface ObjectChoice { set: ObjectSet; why: string }

let choice: ObjectChoice | undefined;

/**
 * The one place that decides between the normal objects (build/bpf) and the
 * compat ones (build/bpf-compat: no bpf_loop, no bpf_xdp_load_bytes or
 * bpf_xdp_get_buff_len): the normal set where the kernel has all three
 * and its verifier counts a call chain's stack in 16-byte steps (6.8+: the
 * normal NAT programs need it), else compat; probed, not guessed from the
 * version. XDPNET_BPF_COMPAT=1 forces compat, =0 the normal set. Decided once
 * per process.
 */
export function objectSet(probes?: Probes, stack16?: () => boolean): ObjectChoice {
  if (choice && !probes) return choice;
  const env = process.env.XDPNET_BPF_COMPAT;
  let c: ObjectChoice;
  if (env === '1') c = { set: 'compat', why: 'XDPNET_BPF_COMPAT=1' };
  else if (env === '0') c = { set: 'normal', why: 'XDPNET_BPF_COMPAT=0' };
  else if (env !== undefined && env !== '') throw new UsageError(`XDPNET_BPF_COMPAT must be 1 (compat objects) or 0 (normal objects), not "${env}"`);
  else {
    const lacks = missingNormalOnly(probes);
    if (lacks.length) c = { set: 'compat', why: `no ${lacks.map((h) => h.name).join(', ')}: kernel before ${lacks.map((h) => h.since).sort()[0]}` };
    else if (!(stack16 ?? stackIn16ByteSteps)()) c = { set: 'compat', why: 'the verifier counts stack in 32-byte steps: kernel before 6.8' };
    else c = { set: 'normal', why: "the kernel has bpf_loop, the 5.18 XDP helpers and 6.8's stack accounting" };
  }
  if (!probes) choice = c;
  return c;
}

/** Loads build/bpf/stackprobe.bpf.o (bpf/stackprobe.bpf.c says what it tells): false when the verifier refuses it. */
function stackIn16ByteSteps(): boolean {
  const o = BpfObject.open(join(PKG_ROOT, 'build/bpf/stackprobe.bpf.o'));
  try {
    o.load();
    return true;
  } catch (e) {
    if (e instanceof BpfError) return false;
    throw e;
  } finally {
    o.close();
  }
}

export function objectPath(name: string): string {
  const dir = objectSet().set === 'compat' ? 'build/bpf-compat' : 'build/bpf';
  return join(process.env.XDPNET_BPF_DIR ?? join(PKG_ROOT, dir), `${name}.bpf.o`);
}

export function instanceName(netns?: string): string {
  return netns ? `ns-${netns}` : 'host';
}

export interface InstancePaths {
  name: string;
  dir: string;
  maps: string;
  links: string;
  progs: string;
}

export function instancePaths(netns?: string): InstancePaths {
  return instanceAt(instanceName(netns));
}

function instanceAt(name: string): InstancePaths {
  const dir = join(bpffsRoot(), 'xdpnet', name);
  return { name, dir, maps: join(dir, 'maps'), links: join(dir, 'links'), progs: join(dir, 'progs') };
}

/** Every instance with state on bpffs (for work across namespaces, like ageing). */
export function listInstances(): InstancePaths[] {
  const top = join(bpffsRoot(), 'xdpnet');
  return existsSync(top) ? readdirSync(top).filter((n) => n === 'host' || n.startsWith('ns-')).sort().map(instanceAt) : [];
}
