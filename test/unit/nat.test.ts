// NAT argument parsing and the CLI's usage errors (caught before anything privileged: exit 2).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAddrRange, parseHostPort, parsePortRange, parsePrefix } from '../../src/dataplane/inet.js';
import { defaultPortRange } from '../../src/dataplane/nat-host.js';
import { xdpnet } from '../helpers/sys.js';
import { ipv4ToNum } from '../../src/objects/codec.js';

describe('NAT arguments', () => {
  it('parses prefixes, masking host bits', () => {
    expect(parsePrefix('172.17.0.9/16')).toEqual({ addr: ipv4ToNum('172.17.0.0'), len: 16, text: '172.17.0.0/16' });
    expect(parsePrefix('10.0.0.1').text).toBe('10.0.0.1/32');
    expect(parsePrefix('0.0.0.0/0').text).toBe('0.0.0.0/0');
    for (const bad of ['172.17.0.0/33', '172.17.0/16', 'fe80::/64', '1.2.3.4/16/2', '1.2.3.4/x']) expect(() => parsePrefix(bad)).toThrow(/invalid IPv4 prefix/);
  });
  it('parses address and port ranges', () => {
    expect(parseAddrRange('203.0.113.5')).toEqual([ipv4ToNum('203.0.113.5'), ipv4ToNum('203.0.113.5')]);
    expect(parseAddrRange('203.0.113.5-203.0.113.8')[1]).toBe(ipv4ToNum('203.0.113.8'));
    expect(() => parseAddrRange('203.0.113.8-203.0.113.5')).toThrow(/runs backwards/);
    expect(parsePortRange('20000-29999')).toEqual([20000, 29999]);
    expect(parsePortRange('80')).toEqual([80, 80]);
    for (const bad of ['0-10', '10-5', '1-65536', 'a-b', '']) expect(() => parsePortRange(bad)).toThrow(/invalid port range/);
    expect(parseHostPort('172.17.0.2:80')).toEqual({ addr: ipv4ToNum('172.17.0.2'), port: 80 });
    expect(() => parseHostPort('172.17.0.2')).toThrow(/expected IP:PORT/);
    expect(() => parseHostPort('172.17.0.2:0')).toThrow(/invalid port/);
  });
  it('picks a default SNAT range outside the ephemeral range and the ports given', () => {
    const [lo, hi] = defaultPortRange([5000]);
    const eph = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    expect(lo).toBeGreaterThanOrEqual(1024);
    expect(hi < eph[0] || lo > eph[1]).toBe(true);
    expect(lo > 5000 || hi < 5000).toBe(true);
  });
});

describe('NAT CLI usage', () => {
  it('--help teaches with examples', () => {
    expect(xdpnet(['nat', 'masquerade', 'add', '--help']).stdout).toContain('xdpnet nat masquerade add --src 172.17.0.0/16 --out eth0');
    expect(xdpnet(['nat', 'portmap', 'add', '--help']).stdout).toContain('xdpnet nat portmap add --proto tcp --host-port 8080 --to 172.17.0.2:80');
    expect(xdpnet(['conntrack', 'list', '--help']).stdout).toContain('xdpnet conntrack list --src 172.17.0.0/16 --json');
  });
  it('rejects bad arguments with exit 2', () => {
    const cases: Array<[string[], string]> = [
      [['nat', 'masquerade', 'add', '--src', '172.17.0.0/33', '--out', 'eth0'], "--src: invalid IPv4 prefix '172.17.0.0/33'"],
      [['nat', 'masquerade', 'add', '--src', '172.17.0.0/16'], "required option '--out <iface>' not specified"],
      [['nat', 'snat', 'add', '--src', '10.0.0.0/8', '--out', 'eth0', '--to', '10.0.0.9-10.0.0.1'], 'the range 10.0.0.9-10.0.0.1 runs backwards'],
      [['nat', 'snat', 'add', '--src', '10.0.0.0/8', '--out', 'eth0', '--to', '1.2.3.4', '--ports', '9-3'], "--ports: invalid port range '9-3'"],
      [['nat', 'portmap', 'add', '--proto', 'sctp', '--host-port', '80', '--to', '172.17.0.2:80'], "argument 'sctp' is invalid"],
      [['nat', 'portmap', 'add', '--proto', 'tcp', '--host-port', '80', '--to', '172.17.0.2'], "--to: expected IP:PORT, got '172.17.0.2'"],
      [['nat', 'portmap', 'add', '--proto', 'tcp', '--host-port', '70000', '--to', '172.17.0.2:80'], "--host-port: invalid port '70000'"],
      [['conntrack', 'list', '--dst', 'nowhere'], "--dst: invalid IPv4 prefix 'nowhere'"],
      [['conntrack', 'timeouts', 'tcp=5'], "unknown timeout 'tcp'"],
      [['conntrack', 'timeouts', 'udp=-1'], "expected NAME=SECONDS, got 'udp=-1'"],
    ];
    for (const [args, msg] of cases) expect(xdpnet(args), args.join(' ')).toMatchObject({ code: 2, stderr: expect.stringContaining(msg) });
  });
});
