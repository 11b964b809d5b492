// What every privileged command does first, in an order that gives the most
// useful error: privileges, then the namespace, then bpffs.
import type { Command } from 'commander';
import { ensureBpffs, enterNetns, lockState, requirePrivileges } from '../dataplane/host.js';
import { claimInstance, refuseSymlinks, staleReason, tightenModes } from '../dataplane/hygiene.js';
import { instanceName, instancePaths, type InstancePaths } from '../objects/paths.js';

export interface GlobalOptions {
  netns?: string;
  verbose?: boolean;
}

export interface Context {
  inst: InstancePaths;
  netns?: string;
}

export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
}

/** Commands that only read (by path), and the daemon, which locks per pass: every other command takes the state lock. */
const UNLOCKED = new Set(['status', 'stats', 'daemon', 'bridge show', 'fdb show', 'vxlan show', 'nat show',
  'nat masquerade show', 'nat snat show', 'nat portmap show', 'conntrack list', 'monitor']);

function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

export function context(cmd: Command): Context {
  const { netns } = globals(cmd);
  requirePrivileges();
  const changes = !UNLOCKED.has(commandPath(cmd));
  if (changes) lockState(instanceName(netns)); // held until the process exits
  if (netns) enterNetns(netns);
  ensureBpffs();
  let inst = instancePaths(netns);
  refuseSymlinks(inst);
  if (!changes && staleReason(inst)) {
    // An earlier namespace's state under this name: not this one's. Readers write nothing, so they look past it.
    process.stderr.write(`note: ignoring stale state ${inst.dir}: ${staleReason(inst)}\n`);
    inst = { ...inst, dir: `${inst.dir}.none`, maps: `${inst.dir}.none/maps`, links: `${inst.dir}.none/links`, progs: `${inst.dir}.none/progs` };
  }
  if (changes) {
    claimInstance(inst);
    process.once('exit', () => {
      try {
        tightenModes(inst);
      } catch { /* the command's own outcome stands */ }
    });
  }
  return { inst, netns };
}
