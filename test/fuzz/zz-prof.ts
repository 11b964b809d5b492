import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
export function profile<T>(name: string, fn: () => T): T {
  const s = new Session();
  s.connect();

  s.post('Profiler.enable');
  s.post('Profiler.start');
  try { return fn(); } finally {
    s.post('Profiler.stop', (err, { profile }) => { writeFileSync(`/tmp/p18f-prof/${name}.cpuprofile`, JSON.stringify(profile)); });
  }
}
