// Where things live: built objects, and each instance's pins on bpffs.
//   <bpffs>/xdpnet/<instance>/maps/<map>        maps shared by the instance's programs
//   <bpffs>/xdpnet/<instance>/links/...         programs on interface hooks (names: dataplane/links.ts)
//   <bpffs>/xdpnet/<instance>/progs/<object>-<build>/<program>   programs loaded once per instance (builds.ts)
// An instance is the host ("host") or one named network namespace ("ns-<name>"),
// so state of different namespaces never mixes.
import { fileURLToPath } from 'node:url';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

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

export function objectPath(name: string): string {
  return join(process.env.XDPNET_BPF_DIR ?? join(PKG_ROOT, 'build/bpf'), `${name}.bpf.o`);
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
