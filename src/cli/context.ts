// What every privileged command does first, in an order that gives the most
// useful error: privileges, then the namespace, then bpffs.
import type { Command } from 'commander';
import { ensureBpffs, enterNetns, instanceNetns, lockState, requirePrivileges, withNetns } from '../dataplane/host.js';
import { claimInstance, forgetIfGone, refuseSymlinks, staleReason, tightenModes } from '../dataplane/hygiene.js';
import { instanceName, instancePaths, listInstances, type InstancePaths } from '../objects/paths.js';

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
  let claimed: InstancePaths | undefined;
  if (changes) {
    lockState(instanceName(netns)); // held until the process exits
    process.once('exit', () => {
      try {
        if (claimed) tightenModes(claimed);
      } catch { /* the command's own outcome stands */ }
      try {
        // The holder's last act, however the command ended (a namespace that does not exist
        // included): an instance with no state leaves no files in /run.
        forgetIfGone(instancePaths(netns));
      } catch { /* as above */ }
    });
  }
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
    claimed = inst;
  }
  return { inst, netns };
}

/**
 * fn in each instance's own namespace (--all-namespaces). State whose namespace is gone gets the
 * note status gives it, a namespace deleted while this runs an error line; the rest still show.
 */
export function eachInstance<T>(fn: (inst: InstancePaths) => T): Array<{ netns: string } & T> {
  return listInstances().flatMap((inst) => {
    const stale = staleReason(inst);
    if (stale) {
      console.error(`note: stale state ${inst.dir}: ${stale} (\`xdpnet daemon\` removes it)`);
      return [];
    }
    try {
      return [{ netns: inst.name, ...withNetns(instanceNetns(inst.name), () => fn(inst)) }];
    } catch (e) {
      console.error(`xdpnet: ${inst.name}: ${(e as Error).message}`);
      return [];
    }
  });
}
