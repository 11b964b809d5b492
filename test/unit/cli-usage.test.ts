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
  it('bridge ports: --pvid/--trunk need --bridge, VLANs are checked', () => {
    expect(xdpnet(['attach', 'eth0', '--pvid', '10'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--pvid and --trunk apply to bridge ports') });
    expect(xdpnet(['attach', 'eth0', '--bridge', 'br0', '--trunk', '5-3'])).toMatchObject({ code: 2, stderr: expect.stringContaining("range 5-3 runs backwards") });
    expect(xdpnet(['attach', 'eth0', '--bridge', 'br0', '--pvid', '0'])).toMatchObject({ code: 2, stderr: expect.stringContaining('invalid VLAN 0') });
  });
  it('bridge add checks its name and numbers', () => {
    expect(xdpnet(['bridge', 'add', 'a-name-far-too-long'])).toMatchObject({ code: 2, stderr: expect.stringContaining("invalid bridge name 'a-name-far-too-long'") });
    expect(xdpnet(['bridge', 'add', 'br0', '--ageing', '0'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--ageing must be a whole number from 1 to 1000000, got 0') });
    expect(xdpnet(['bridge', 'add', 'br0', '--address', '10.0.0.1'])).toMatchObject({ code: 2, stderr: expect.stringContaining("invalid address '10.0.0.1'") });
    expect(xdpnet(['bridge', 'add', 'br0', '--mac', 'ff:ff:ff:ff:ff:ff'])).toMatchObject({ code: 2, stderr: expect.stringContaining('is multicast or broadcast') });
  });
  it('fdb checks MACs and required options', () => {
    expect(xdpnet(['fdb', 'add', 'zz:00:00:00:00:01', '--bridge', 'br0', '--port', 'v1'])).toMatchObject({
      code: 2, stderr: "xdpnet: error: invalid MAC address 'zz:00:00:00:00:01': expected six hex octets like 02:42:ac:11:00:02\n",
    });
    expect(xdpnet(['fdb', 'add', '02:00:00:00:00:01', '--port', 'v1'])).toMatchObject({ code: 2, stderr: expect.stringContaining("required option '--bridge <name>' not specified") });
    expect(xdpnet(['fdb', 'del', '02:00:00:00:00:01', '--bridge', 'br0', '--vlan', '4095']).code).toBe(2);
  });
  it('daemon refuses a non-positive interval', () => {
    expect(xdpnet(['daemon', '--interval', '0'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--interval must be a positive number, got 0') });
  });
  it('bridge and fdb help teach with examples', () => {
    expect(xdpnet(['bridge', 'add', '--help']).stdout).toContain('xdpnet bridge add br0 --address 172.17.0.1/16');
    expect(xdpnet(['attach', '--help']).stdout).toContain('xdpnet attach veth2 --bridge br0 --pvid 10');
    expect(xdpnet(['fdb', '--help']).stdout).toMatch(/add .*\n.*del\|delete .*\n.*show\|list .*\n.*flush .*\n.*load .*\n.*age/s);
  });
  it('rejects unknown commands', () => {
    const r = xdpnet(['atach', 'eth0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'atach'");
  });
});
