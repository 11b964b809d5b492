#!/usr/bin/env node
// xdpnet: the command-line entry point.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { UsageError, XdpnetError, VerifierError } from '../errors.js';
import { libbpfLog } from '../sys/libbpf.js';
import { attachCommands } from './attach.js';
import { bridgeCommands } from './bridge.js';
import { clusterCommands } from './cluster.js';
import { conntrackCommands } from './conntrack.js';
import { daemonCommand } from './daemon.js';
import { fdbCommands } from './fdb.js';
import { monitorCommand } from './monitor.js';

import { applyGrammar, completionScript } from './grammar.js';
import { natCommands } from './nat.js';
import { statsCommand } from './stats.js';
import { upgradeCommand } from './upgrade.js';
import { vxlanCommands } from './vxlan.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const program = new Command('xdpnet')
  .description('eBPF container networking: XDP/tc dataplane driven from the command line')
  .version(VERSION, '-V, --version', 'print xdpnet\'s version')
  .option('--netns <name>', 'act inside this network namespace (from `ip netns list`); state stays on the host bpffs')
  .option('-v, --verbose', 'show full verifier logs and libbpf messages on errors')
  .showHelpAfterError('(run with --help for usage)')
  .addHelpText('after', `
Exit codes:
  0   success
  1   the operation failed: "xdpnet: error: ..." says what, "hint: ..." what to do
  2   usage error (unknown command or option, bad or conflicting arguments); nothing was changed
  70  internal error: a bug in xdpnet; it prints the stack, please report it

Every command takes --help. README.md is the user's guide.`)
  .exitOverride();

attachCommands(program);
bridgeCommands(program);
fdbCommands(program);
statsCommand(program);
daemonCommand(program);
vxlanCommands(program);
natCommands(program);
conntrackCommands(program);
monitorCommand(program);
clusterCommands(program);
upgradeCommand(program);

program
  .command('completion')
  .description('print a shell completion script: eval "$(xdpnet completion bash)" (or zsh) in your shell\'s rc file')
  .argument('<shell>', 'bash or zsh')
  .action((shell: string) => {
    if (shell !== 'bash' && shell !== 'zsh') throw new UsageError(`completion: unknown shell '${shell}'`, 'one of: bash, zsh');
    process.stdout.write(completionScript(program, shell));
  });
applyGrammar(program);

// --netns is global, but these commands never enter a namespace (etcd, or nothing at all): said, not ignored.
const NO_NETNS = new Set(['network create', 'network show', 'completion']);
program.hook('preAction', (_root, action) => {
  const path: string[] = [];
  for (let c: Command | null = action; c?.parent; c = c.parent) path.unshift(c.name());
  if (program.opts().netns !== undefined && NO_NETNS.has(path.join(' '))) {
    throw new UsageError(`--netns does not apply to \`xdpnet ${path.join(' ')}\`: it ${path[0] === 'network' ? 'only talks to etcd' : 'touches no namespace'}`, 'leave out --netns');
  }
});

function fail(e: unknown): never {
  if (e instanceof CommanderError) process.exit(e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : 2);
  const verbose = process.argv.includes('--verbose') || process.argv.includes('-v');
  if (e instanceof XdpnetError) {
    console.error(`xdpnet: error: ${verbose && e instanceof VerifierError ? `${e.op} ${e.target}: verifier rejected it\n${e.log}` : e.message}`);
    if (e.hint) console.error(`hint: ${e.hint}`);
    if (verbose && libbpfLog().length) console.error(`libbpf said:\n${libbpfLog().join('\n')}`);
    process.exit(e.exitCode);
  }
  console.error(`xdpnet: internal error: ${(e as Error)?.stack ?? e}`);
  process.exit(70);
}

program.parseAsync(process.argv).catch(fail);
