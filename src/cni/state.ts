// What an ADD made, kept so DEL, CHECK and GC undo or verify exactly that
// (never what a later configuration says). One small JSON file per attachment
// under /run (gone at reboot, as are the interfaces it names), one per bridge
// the plugin created (so it removes only bridges it made).
import { mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PortMapping } from './config.js';

export interface Attachment {
  network: string;
  containerId: string;
  ifname: string;
  netns: string;
  bridge: string;
  hostIface: string;
  ifindex: number;
  mac: string;
  /** "10.89.0.2/24" */
  address: string;
  subnet: string;
  portMappings: PortMapping[];
}

/** A bridge the plugin created, and the masquerade rule it added for it. */
export interface OwnedBridge { bridge: string; masquerade?: { src: string; out: string } }

const ROOT = () => process.env.XDPNET_CNI_STATE ?? '/run/xdpnet/cni';

/** Removes a file and the directories it leaves empty, up to the state root. */
function drop(file: string): void {
  rmSync(file, { force: true });
  for (let d = join(file, '..'); d.startsWith(ROOT()) && d !== ROOT(); d = join(d, '..')) {
    try {
      rmdirSync(d); // only when empty
    } catch {
      return;
    }
  }
}

function writeAtomic(file: string, v: object): void {
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(`${file}.tmp`, JSON.stringify(v, null, 2));
  renameSync(`${file}.tmp`, file);
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

export class StateStore {
  constructor(private readonly instance: string) {}

  private attachmentFile(network: string, containerId: string, ifname: string): string {
    return join(ROOT(), this.instance, 'networks', network, `${containerId}-${ifname}.json`);
  }

  private bridgeFile(bridge: string): string {
    return join(ROOT(), this.instance, 'bridges', `${bridge}.json`);
  }

  saveAttachment(a: Attachment): void { writeAtomic(this.attachmentFile(a.network, a.containerId, a.ifname), a); }
  attachment(network: string, containerId: string, ifname: string): Attachment | undefined {
    return readJson(this.attachmentFile(network, containerId, ifname));
  }
  dropAttachment(network: string, containerId: string, ifname: string): void { drop(this.attachmentFile(network, containerId, ifname)); }

  attachments(network: string): Attachment[] {
    const dir = join(ROOT(), this.instance, 'networks', network);
    let names: string[] = [];
    try {
      names = readdirSync(dir).filter((f) => f.endsWith('.json'));
    } catch { /* none yet */ }
    return names.flatMap((f) => readJson<Attachment>(join(dir, f)) ?? []);
  }

  saveBridge(b: OwnedBridge): void { writeAtomic(this.bridgeFile(b.bridge), b); }
  ownedBridge(bridge: string): OwnedBridge | undefined { return readJson(this.bridgeFile(bridge)); }
  dropBridge(bridge: string): void { drop(this.bridgeFile(bridge)); }
}
