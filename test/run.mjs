// Runs every test tier with vitest and ends with the line CI reads:
// "N passed, N failed" (counted from vitest's JSON report).
import { spawnSync } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = process.getuid?.() === 0;
const dir = mkdtempSync(join(tmpdir(), 'xdpnet-test-'));
const report = join(dir, 'report.json');
const tiers = root ? ['test/unit', 'test/bpf', 'test/fuzz', 'test/e2e'] : ['test/unit'];
if (!root) console.log('not root: running the unit tier only (bpf and e2e tiers need root)');

const r = spawnSync('npx', ['vitest', 'run', '--config', 'test/vitest.config.ts',
  '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...tiers, ...process.argv.slice(2)],
  { stdio: 'inherit' });

let passed = 0;
let failed = 0;
try {
  const j = JSON.parse(readFileSync(report, 'utf8'));
  passed = j.numPassedTests;
  failed = j.numFailedTests + (j.numRuntimeErrorTestSuites ?? 0);
  if (j.numTotalTests === 0) failed += 1; // a run that tested nothing is a failure
  // vitest's own list scrolls away in a long log: name the failures again next to the count
  for (const f of j.testResults) {
    for (const a of f.assertionResults) if (a.status === 'failed') console.log(`FAILED ${f.name.replace(`${process.cwd()}/`, '')} > ${a.fullName}`);
  }
} catch (e) {
  console.error(`no vitest report (${e.message})`);
  failed += 1;
}
rmSync(dir, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed || r.status ? 1 : 0);
