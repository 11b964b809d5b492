// Running the CNI plugin as a runtime does (env + stdin), and checking a result
// against the shape the CNI spec (SPEC.md, "Success" result) prescribes.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { expect } from 'vitest';
import { ROOT } from './sys.js';

/** The plugin as shipped: `make ts` bundles dist/src into this one file (see the Makefile). */
export const PLUGIN = `${ROOT}dist/xdpnet-cni.js`;

// A bundle older than the compiled sources would test yesterday's plugin: say so instead.
const newest = (dir: string): number => Math.max(0, ...readdirSync(dir, { withFileTypes: true })
  .map((e) => (e.isDirectory() ? newest(join(dir, e.name)) : e.name.endsWith('.js') ? statSync(join(dir, e.name)).mtimeMs : 0)));
if (!existsSync(PLUGIN) || statSync(PLUGIN).mtimeMs < newest(`${ROOT}dist/src`)) {
  throw new Error(`${PLUGIN} is missing or older than dist/src: run \`make ts\` (it bundles the plugin)`);
}

export interface PluginRun { code: number; json: Record<string, unknown>; stdout: string; stderr: string }

export function runPlugin(env: Record<string, string | undefined>, stdin: string, wrap: string[] = []): PluginRun {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CNI_')));
  const argv = [...wrap, process.execPath, PLUGIN];
  const r = spawnSync(argv[0], argv.slice(1), { input: stdin, encoding: 'utf8', env: { ...clean, ...env } as NodeJS.ProcessEnv, timeout: 60_000 });
  let json: Record<string, unknown> = {};
  try { json = JSON.parse(r.stdout); } catch { /* checked by callers */ }
  return { code: r.status ?? -1, json, stdout: r.stdout, stderr: r.stderr };
}

/** An error object: code, msg, exit 1, and nothing else on stdout. */
export function expectCniError(r: PluginRun, code: number, msg: RegExp): void {
  expect(r.code, r.stdout + r.stderr).toBe(1);
  expect(r.json.code, r.stdout).toBe(code);
  expect(typeof r.json.cniVersion).toBe('string');
  expect(String(r.json.msg)).toMatch(msg);
  expect(Object.keys(r.json).every((k) => ['cniVersion', 'code', 'msg', 'details'].includes(k))).toBe(true);
}

const isCidr = (s: unknown) => typeof s === 'string' && /^[^/]+\/\d+$/.test(s) && isIP(s.split('/')[0]) !== 0;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** The spec's result rules: interfaces by name, IPs as CIDR with a gateway and an index into interfaces, routes, dns. */
export function expectValidResult(r: Record<string, unknown>, version: string): void {
  const keys = ['cniVersion', 'interfaces', 'ips', 'routes', 'dns'];
  for (const k of Object.keys(r)) expect(keys, `unexpected result key ${k}`).toContain(k);
  expect(r.cniVersion).toBe(version);
  const ifs = r.interfaces as Array<Record<string, unknown>>;
  expect(Array.isArray(ifs)).toBe(true);
  for (const i of ifs) {
    expect(typeof i.name).toBe('string');
    if (i.mac !== undefined) expect(i.mac).toMatch(MAC_RE);
    if (i.sandbox !== undefined) expect(String(i.sandbox)).toMatch(/^\//);
  }
  const ips = r.ips as Array<Record<string, unknown>>;
  expect(ips.length).toBeGreaterThan(0);
  for (const ip of ips) {
    expect(isCidr(ip.address), String(ip.address)).toBe(true);
    if (ip.gateway !== undefined) expect(isIP(String(ip.gateway))).not.toBe(0);
    expect(Number.isInteger(ip.interface) && (ip.interface as number) >= 0 && (ip.interface as number) < ifs.length).toBe(true);
    expect(ifs[ip.interface as number].sandbox, 'an IP belongs to the container interface').toBeDefined();
    if (version < '1.0.0') expect(ip.version).toBe('4'); else expect(ip.version).toBeUndefined();
  }
  for (const rt of (r.routes ?? []) as Array<Record<string, unknown>>) {
    expect(isCidr(rt.dst)).toBe(true);
    if (rt.gw !== undefined) expect(isIP(String(rt.gw))).not.toBe(0);
  }
  if (r.dns !== undefined) expect(typeof r.dns).toBe('object');
}
