// daemon: periodic housekeeping of every instance until SIGINT/SIGTERM. The
// datapath never depends on it (expired entries are already ignored); it frees
// map slots. Later tasks (conntrack GC) join TASKS.
import { Command } from 'commander';
import { reapVanishedPorts } from '../dataplane/bridge.js';
import { ageFdb } from '../dataplane/fdb.js';
import { lockState } from '../dataplane/host.js';
import { natHousekeeping } from '../dataplane/nat.js';
import { listInstances, type InstancePaths } from '../objects/paths.js';
import { positive } from './args.js';
import { context, globals } from './context.js';

const TASKS: Array<{ name: string; run(inst: InstancePaths): string }> = [
  { name: 'fdb', run: (inst) => `${ageFdb(inst).removed} aged out` },
  { name: 'ports', run: (inst) => `${reapVanishedPorts(inst).length} with vanished interfaces reaped` }, // containers gone without a CNI DEL
  { name: 'conntrack', run: natHousekeeping }, // expired flows (both entries), masquerade addresses
];

export function daemonCommand(program: Command): void {
  program
    .command('daemon')
    .description('run housekeeping (FDB ageing, conntrack GC, masquerade addresses) for every instance, periodically, until interrupted')
    .option('--interval <secs>', 'seconds between passes', '5')
    .addHelpText('after', `
Examples:
  xdpnet daemon                     every instance (host and namespaces), every 5 s
  xdpnet --verbose daemon --interval 1
                                    one line per pass
  xdpnet --netns blue daemon        only namespace "blue"`)
    .action(async (o: { interval: string }, cmd: Command) => {
      const interval = positive(o.interval, '--interval');
      const { verbose, netns } = globals(cmd);
      const ctx = context(cmd);
      let timer: NodeJS.Timeout | undefined;
      let wake = () => {};
      let stop = false;
      const onSignal = () => {
        stop = true;
        clearTimeout(timer);
        wake();
      };
      process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
      while (!stop) {
        const done: string[] = [];
        const release = lockState(); // a pass changes maps as commands do
        for (const inst of netns ? [ctx.inst] : listInstances()) {
          for (const t of TASKS) {
            try {
              done.push(`${inst.name} ${t.name}: ${t.run(inst)}`);
            } catch (e) {
              console.error(`xdpnet: ${inst.name} ${t.name}: ${(e as Error).message}`); // one bad instance stops no other
            }
          }
        }
        release();
        if (verbose) console.log(`${new Date().toISOString()} ${done.join(', ') || 'no instances'}`);
        await new Promise<void>((r) => {
          wake = r;
          timer = setTimeout(r, interval * 1000);
        });
      }
    });
}
