// Where things live: built objects, and each instance's pins on bpffs.
//   <bpffs>/xdpnet/<instance>/maps/<map>        maps shared by the instance's programs
//   <bpffs>/xdpnet/<instance>/links/...         programs on interface hooks (names: dataplane/links.ts)
// An instance is the host ("host") or one named network namespace ("ns-<name>"),
// so state of different namespaces never mixes.
import { fileURLToPath } from 'node:url';
import { existsSync, readdirSync } from 'node:fs';
import { release } from 'node:os';
import { dirname, join } from 'node:path';
import { bpffsRoot } from '../dataplane/host.js';
import { BpfObject, numPossibleCpus } from '../sys/libbpf.js';
import { requireKernelFeatures } from './features.js';

/** The package root: the nearest folder up with a package.json (from dist/ or from source). */
const PKG_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
})();

export function objectPath(name: string): string {
  return join(process.env.XDPNET_BPF_DIR ?? join(PKG_ROOT, 'build/bpf'), `${name}.bpf.o`);
}

/**
 * Opens a built object with only these programs, adopting (or creating) the
 * instance's pinned maps, and loads it; configure runs before the load. The
 * caller closes it (its programs' fds go with it); a failed load closes it.
 */
/**
 * Sizes a map that holds one part per CPU (xn_br_cache, xn_nat_hot: compiled
 * with one part, indexed by CPU * part + slot) for every possible CPU.
 */
export function sizeForCpus(o: BpfObject, map: string): void {
  o.setMaxEntries(map, o.maxEntries(map) * numPossibleCpus());
}

export function loadInInstance(inst: InstancePaths, object: string, programs: string[], configure?: (o: BpfObject) => void): BpfObject {
  requireKernelFeatures(release()); // a clear error naming what is missing, not a verifier log
  const obj = BpfObject.open(objectPath(object), { pinRoot: inst.maps, programs });
  try {
    configure?.(obj);
    return obj.load();
  } catch (e) {
    obj.close();
    throw e;
  }
}

export function instanceName(netns?: string): string {
  return netns ? `ns-${netns}` : 'host';
}

export interface InstancePaths {
  name: string;
  dir: string;
  maps: string;
  links: string;
}

export function instancePaths(netns?: string): InstancePaths {
  return instanceAt(instanceName(netns));
}

function instanceAt(name: string): InstancePaths {
  const dir = join(bpffsRoot(), 'xdpnet', name);
  return { name, dir, maps: join(dir, 'maps'), links: join(dir, 'links') };
}

/** Every instance with state on bpffs (for work across namespaces, like ageing). */
export function listInstances(): InstancePaths[] {
  const top = join(bpffsRoot(), 'xdpnet');
  return existsSync(top) ? readdirSync(top).filter((n) => n === 'host' || n.startsWith('ns-')).sort().map(instanceAt) : [];
}
