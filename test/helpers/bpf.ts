// Loading objects for BPF_PROG_RUN tests: a private pin root on bpffs per
// test file, removed afterwards.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBpffs } from '../../src/dataplane/host.js';
import { BpfObject } from '../../src/sys/libbpf.js';
import { ROOT } from './sys.js';

export const XDP = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;
export const TC = { OK: 0, SHOT: 2, REDIRECT: 7 } as const;

export function builtObject(name: string): string {
  return join(ROOT, 'build/bpf', `${name}.bpf.o`);
}
export function fixtureObject(name: string): string {
  return join(ROOT, 'build/fixtures', `${name}.bpf.o`);
}

export class PinRoot {
  readonly dir: string;
  private objects: BpfObject[] = [];
  constructor(tag: string) {
    this.dir = join(ensureBpffs(), `xdpnet-test-${process.pid}-${tag}`);
    mkdirSync(this.dir, { recursive: true });
  }
  open(path: string, configure?: (o: BpfObject) => void): BpfObject {
    const o = BpfObject.open(path, { pinRoot: this.dir });
    this.objects.push(o);
    configure?.(o);
    return o.load();
  }
  cleanup(): void {
    for (const o of this.objects.splice(0)) o.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
