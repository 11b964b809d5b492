// What every privileged command does first, in an order that gives the most
// useful error: privileges, then the namespace, then bpffs.
import type { Command } from 'commander';
import { ensureBpffs, enterNetns, requirePrivileges } from '../dataplane/host.js';
import { instancePaths, type InstancePaths } from '../objects/paths.js';

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

export function context(cmd: Command): Context {
  const { netns } = globals(cmd);
  requirePrivileges();
  if (netns) enterNetns(netns);
  ensureBpffs();
  return { inst: instancePaths(netns), netns };
}
