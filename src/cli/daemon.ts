// daemon: periodic housekeeping of every instance until SIGINT/SIGTERM. The
// datapath never depends on it (expired entries are already ignored); it frees
// map slots. Later tasks (conntrack GC) join TASKS.
import { Command } from 'commander';
import { reapVanishedPorts } from '../dataplane/bridge.js';
import { ageFdb } from '../dataplane/fdb.js';
import { instanceNetns, lockState, requirePrivileges, withNetns } from '../dataplane/host.js';
import { forgetIfGone, removeStale, staleInstances } from '../dataplane/hygiene.js';
import { natHousekeeping } from '../dataplane/nat.js';
import { instancePaths, listInstances, type InstancePaths } from '../objects/paths.js';
import { parseListenAddr, serveMetrics } from '../observe/server.js';
import { positive } from './args.js';
import { context, globals } from './context.js';

const TASKS: Array<{ name: string; run(inst: InstancePaths): string }> = [
  { name: 'fdb', run: (inst) => `${ageFdb(inst).removed.length} aged out` },
  { name: 'ports', run: (inst) => `${reapVanishedPorts(inst).length} with vanished interfaces reaped` }, // containers gone without a CNI DEL
  { name: 'conntrack', run: natHousekeeping }, // expired flows (both entries), masquerade addresses
];

export function daemonCommand(program: Command): void {
  program
    .command('daemon')
    .description('run housekeeping (FDB ageing, conntrack GC, masquerade addresses) for every instance, periodically, until interrupted')
    .option('--interval <secs>', 'seconds between passes', '5')
    .option('--metrics-addr <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9432)')
    .addHelpText('after', `
Examples:
  xdpnet daemon                     every instance (host and namespaces), every 5 s
  xdpnet --verbose daemon --interval 1
                                    one line per pass
  xdpnet --netns blue daemon        only namespace "blue"
  xdpnet daemon --metrics-addr 127.0.0.1:9432
                                    also serve Prometheus metrics (see README, Observing)`)
    .action(async (o: { interval: string; metricsAddr?: string }, cmd: Command) => {
      const interval = positive(o.interval, '--interval');
      const addr = o.metricsAddr === undefined ? undefined : parseListenAddr(o.metricsAddr);
      const { verbose, netns } = globals(cmd);
      // listening before context() enters --netns: the address is the host's (a socket keeps its namespace)
      requirePrivileges();
      // prom-client is loaded only when metrics are served: a quarter of every other command's start-up
      const server = addr && await serveMetrics((await import('../observe/metrics.js')).createRegistry({ instances: netns ? () => [instancePaths(netns)] : undefined }), addr);
      if (server) console.error(`serving metrics at http://${o.metricsAddr}/metrics`);
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
        for (const { inst, reason } of netns ? [] : staleInstances()) {
          const release = lockState(inst.name);
          removeStale(inst);
          forgetIfGone(inst);
          release();
          done.push(`${inst.name} removed: ${reason}`);
        }
        for (const inst of netns ? [ctx.inst] : listInstances()) {
          const release = lockState(inst.name); // a pass changes maps as commands do
          // Inside the instance's namespace: its interfaces (names, ifindexes, routes) are the namespace's.
          // Without --netns the daemon runs on the host, where a namespace's ports look vanished.
          const pass = () => {
            for (const t of TASKS) {
              try {
                done.push(`${inst.name} ${t.name}: ${t.run(inst)}`);
              } catch (e) {
                console.error(`xdpnet: ${inst.name} ${t.name}: ${(e as Error).message}`); // one bad instance stops no other
              }
            }
          };
          try {
            if (netns) pass(); // context() entered it already
            else withNetns(instanceNetns(inst.name), pass);
          } catch (e) {
            console.error(`xdpnet: ${inst.name}: ${(e as Error).message}`); // its namespace went away under us: the next pass sees it stale
          } finally {
            release();
          }
        }
        if (verbose) console.log(`${new Date().toISOString()} ${done.join(', ') || 'no instances'}`);
        await new Promise<void>((r) => {
          wake = r;
          timer = setTimeout(r, interval * 1000);
        });
      }
      server?.close();
    });
}
