import { describe, expect, it } from 'vitest';
import {
  formatMac, formatVlanList, parseCidr, parseMac, parseUnicastMac, parseVlan, parseVlanList, randomMac,
} from '../../src/dataplane/addr.js';
import { UsageError } from '../../src/errors.js';

describe('MAC addresses', () => {
  it('parses colon or dash separated hex, either case, and formats lower-case with colons', () => {
    expect(parseMac('02:42:AC:11:00:02').toString('hex')).toBe('0242ac110002');
    expect(parseMac('02-42-ac-11-00-02').toString('hex')).toBe('0242ac110002');
    expect(formatMac(Buffer.from('0242ac110002', 'hex'))).toBe('02:42:ac:11:00:02');
  });

  it.each(['zz:00:00:00:00:01', '02:42:ac:11:00:0g', '02:42:ac:1::00:02', '02:42:ac:11:00', '02:42:ac:11:00:02:03', '0242ac110002', '02:42-ac:11:00:02', '2:42:ac:11:0:2', ''])(
    'refuses %j with a usage error that shows the expected form', (s) => {
      expect(() => parseMac(s)).toThrow(new UsageError(`invalid MAC address '${s}': expected six hex octets like 02:42:ac:11:00:02`));
    });

  it('unicast: refuses multicast, broadcast and zero', () => {
    expect(() => parseUnicastMac('01:00:5e:00:00:01')).toThrow('MAC address 01:00:5e:00:00:01 is multicast or broadcast');
    expect(() => parseUnicastMac('ff:ff:ff:ff:ff:ff')).toThrow('is multicast or broadcast');
    expect(() => parseUnicastMac('00:00:00:00:00:00')).toThrow('is not a valid address');
    expect(formatMac(parseUnicastMac('02:00:00:00:00:01'))).toBe('02:00:00:00:00:01');
  });

  it('random MACs are locally administered unicast', () => {
    for (let i = 0; i < 64; i++) expect(randomMac()[0] & 0b11).toBe(0b10);
  });
});

describe('VLANs', () => {
  it('parses single ids and lists with ranges, sorted without repeats', () => {
    expect(parseVlan('1')).toBe(1);
    expect(parseVlan('4094')).toBe(4094);
    expect(parseVlanList('10,20,30-32')).toEqual([10, 20, 30, 31, 32]);
    expect(parseVlanList('30-32, 10 ,31')).toEqual([10, 30, 31, 32]);
  });

  it.each([
    ['0', "invalid VLAN 0: expected a VLAN id from 1 to 4094"],
    ['4095', 'invalid VLAN 4095: expected a VLAN id from 1 to 4094'],
    ['a', "invalid VLAN list 'a': 'a' is not a VLAN id or range like 30-40"],
    ['5-3', "invalid VLAN list '5-3': range 5-3 runs backwards"],
    ['10,,20', "invalid VLAN list '10,,20': '' is not a VLAN id or range like 30-40"],
    ['1-4095', 'invalid VLAN 4095'],
  ])('refuses the list %j', (s, msg) => {
    expect(() => parseVlanList(s)).toThrow(UsageError);
    expect(() => parseVlanList(s)).toThrow(msg);
  });

  it('refuses a non-numeric single VLAN', () => {
    expect(() => parseVlan('ten')).toThrow("invalid VLAN 'ten': expected a VLAN id from 1 to 4094");
  });

  it('formats lists back with ranges', () => {
    expect(formatVlanList([32, 10, 30, 31, 20])).toBe('10,20,30-32');
    expect(formatVlanList([])).toBe('');
    expect(formatVlanList(parseVlanList('1-4094'))).toBe('1-4094');
  });
});

describe('CIDR', () => {
  it('takes IPv4 and IPv6 with a prefix', () => {
    expect(parseCidr('172.17.0.1/16')).toBe('172.17.0.1/16');
    expect(parseCidr('fd00::1/64')).toBe('fd00::1/64');
  });
  it.each(['172.17.0.1', '172.17.0.1/33', '172.17.0/16', 'br0/24', '10.0.0.1/24/1'])('refuses %j', (s) => {
    expect(() => parseCidr(s)).toThrow(`invalid address '${s}': expected ADDRESS/PREFIX like 172.17.0.1/16`);
  });
});
