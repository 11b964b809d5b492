// VXLAN arguments are checked before anything privileged happens: exit 2, a
// message naming the problem, nothing changed.
import { describe, expect, it } from 'vitest';
import { xdpnet } from '../helpers/sys.js';

const add = (...a: string[]) => xdpnet(['vxlan', 'add', '--bridge', 'br0', '--local', '192.0.2.1', '--dev', 'eth0', ...a]);

describe('vxlan usage', () => {
  it('--help teaches with examples', () => {
    const r = xdpnet(['vxlan', 'add', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('xdpnet vxlan add --bridge br0 --vni 100 --local 192.168.1.10 --dev eth0 --learning');
    expect(r.stdout).toContain('forwarding=1');
    expect(xdpnet(['vxlan', '--help']).stdout).toMatch(/add .*\n.*del\|delete .*\n.*show\|list .*\n.*remote /s);
    expect(xdpnet(['vxlan', 'remote', 'add', '--help']).stdout).toContain('xdpnet vxlan remote add --vni 100 192.168.1.11');
    expect(xdpnet(['fdb', 'add', '--help']).stdout).toContain('--remote 192.168.1.11');
  });
  it('checks VNIs, addresses and ports', () => {
    expect(add('--vni', '0')).toMatchObject({ code: 2, stderr: expect.stringContaining("invalid VNI '0': expected a number from 1 to 16777215") });
    expect(add('--vni', '16777216').code).toBe(2);
    expect(add('--vni', '1x').code).toBe(2);
    expect(xdpnet(['vxlan', 'add', '--bridge', 'br0', '--vni', '5', '--local', '10.0.0.256', '--dev', 'eth0']))
      .toMatchObject({ code: 2, stderr: expect.stringContaining("--local: invalid IPv4 address '10.0.0.256'") });
    expect(xdpnet(['vxlan', 'add', '--bridge', 'br0', '--vni', '5', '--local', '224.0.0.1', '--dev', 'eth0']))
      .toMatchObject({ code: 2, stderr: expect.stringContaining('a VTEP address is a unicast address') });
    expect(add('--vni', '5', '--udp-port', '70000')).toMatchObject({ code: 2, stderr: expect.stringContaining("--udp-port: invalid port '70000'") });
    // the old spelling, kept hidden: same meaning, same check
    expect(add('--vni', '5', '--port', '70000')).toMatchObject({ code: 2, stderr: expect.stringContaining("--udp-port: invalid port '70000'") });
    expect(add('--vni', '5', '--vlan', '4095')).toMatchObject({ code: 2, stderr: expect.stringContaining('invalid VLAN 4095') });
    expect(xdpnet(['vxlan', 'add', '--vni', '5'])).toMatchObject({ code: 2, stderr: expect.stringContaining("required option '--bridge <name>' not specified") });
    expect(xdpnet(['vxlan', 'remote', 'add', '--vni', '5', 'fe80::1'])).toMatchObject({ code: 2, stderr: expect.stringContaining("remote VTEP: invalid IPv4 address 'fe80::1'") });
    expect(xdpnet(['vxlan', 'del', '--vni', '-1']).code).toBe(2);
  });
  it('fdb add takes --port or --remote, not both or neither', () => {
    const fdb = (...a: string[]) => xdpnet(['fdb', 'add', '02:00:00:00:00:01', '--bridge', 'br0', ...a]);
    expect(fdb()).toMatchObject({ code: 2, stderr: expect.stringContaining('--port IFACE or --remote VTEP-IP (one of them)') });
    expect(fdb('--port', 'v1', '--remote', '192.0.2.2').code).toBe(2);
    expect(fdb('--remote', '192.0.2.300')).toMatchObject({ code: 2, stderr: expect.stringContaining("--remote: invalid IPv4 address '192.0.2.300'") });
  });
});
