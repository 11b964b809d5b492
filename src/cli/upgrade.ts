// upgrade [--json]
import { Command } from 'commander';
import { upgradeInstance, type UpgradeReport } from '../dataplane/upgrade.js';
import { context } from './context.js';
import { json, table } from './format.js';

function render(r: UpgradeReport): string {
  if (!r.builds.length && !r.replaced.length) return 'nothing to do: every program runs the installed build';
  const lines = r.builds.map((b) => `${b.object}.bpf.o: build ${b.from.length ? b.from.join(', ') : '(none pinned)'} → ${b.to}`);
  if (r.replaced.length) {
    lines.push(table(['WHERE', 'HOOK', 'PROGRAM', 'FROM', 'TO'],
      r.replaced.map((x) => [x.iface ?? (x.ifindex === null ? '-' : `ifindex ${x.ifindex}`), x.hook ?? '-', x.program, x.from, x.to])));
  }
  lines.push(`replaced ${r.replaced.length} program${r.replaced.length === 1 ? '' : 's'} in place; the maps were kept`);
  return lines.join('\n');
}

export function upgradeCommand(program: Command): void {
  program
    .command('upgrade')
    .description('replace every running program with the installed build, in place (no frame lost), keeping the maps')
    .option('--json', 'print the builds and each replaced program (where, hook, program ids from and to) as JSON')
    .addHelpText('after', `
After installing a new xdpnet build, run this once per instance (the host, and
each --netns with xdpnet state; \`xdpnet status -A\` lists them). It loads each
BPF object once, reusing the pinned maps, then switches every hook in one step
each: XDP and tcx links are updated (bpf_link_update), clsact filters replaced
at their handle and priority, bridge devmap entries rewritten with the new
egress program. Nothing runs without a program at any moment.

Before touching anything it checks the new build against the layout of each
pinned map (recorded when the map was made). If one differs it refuses,
naming the map and what changed, and changes nothing.

Running it again does nothing. An attach that finds an older build running
upgrades the instance the same way first. Killed midway, it leaves each hook
on the old or the new build (both work), and the next run finishes.

Examples:
  xdpnet upgrade
  xdpnet --netns h1 upgrade --json`)
    .action((o: { json?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const r = upgradeInstance(ctx.inst);
      console.log(o.json ? json(r) : render(r));
    });
}
