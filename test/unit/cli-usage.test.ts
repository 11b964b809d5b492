// Argument errors are caught before anything privileged happens: exit 2, a
// message naming the problem, nothing changed.
import { describe, expect, it } from 'vitest';
import { xdpnet } from '../helpers/sys.js';

describe('cli usage', () => {
  it('--help teaches with examples', () => {
    const r = xdpnet(['attach', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--hook <hook>');
    expect(r.stdout).toContain('xdpnet attach veth1 --hook tc');
  });
  it('rejects an unknown hook', () => {
    const r = xdpnet(['attach', 'eth0', '--hook', 'kprobe']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("argument 'kprobe' is invalid. Allowed choices are xdp, tc.");
  });
  it('rejects --mode with the tc hook', () => {
    const r = xdpnet(['attach', 'eth0', '--hook', 'tc', '--mode', 'generic']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--mode applies to --hook xdp only');
  });
  it('detach needs an interface or --all, not both', () => {
    expect(xdpnet(['detach']).stderr).toContain('name one interface or use --all');
    expect(xdpnet(['detach', 'eth0', '--all']).code).toBe(2);
  });
  it('rejects a non-positive --watch interval', () => {
    const r = xdpnet(['stats', '--watch', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--watch must be a positive number, got 0');
  });
  it('rejects unknown commands', () => {
    const r = xdpnet(['atach', 'eth0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'atach'");
  });
});
