// Podman for e2e tests: the demo's fenced podman (src/demo/podman.ts) with the built plugin.
import { PLUGIN } from './cni.js';
import { podman as fenced, type Podman } from '../../src/demo/podman.js';

export { IMAGE, podmanMissing, RUN_FLAGS, type Podman } from '../../src/demo/podman.js';

export const podman = (hostNs: string): Podman => fenced(hostNs, PLUGIN);
