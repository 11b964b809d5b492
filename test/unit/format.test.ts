import { describe, expect, it } from 'vitest';
import { ago, si, table, vlansText } from '../../src/cli/format.js';

describe('output formatting', () => {
  it('aligns table columns', () => {
    expect(table(['IFACE', 'PKTS'], [['veth0', 1], ['eth10', 12345]])).toBe('IFACE  PKTS\nveth0  1\neth10  12345');
  });
  it('prints SI rates', () => {
    expect(si(999, 'pps')).toBe('999 pps');
    expect(si(2_600_000, 'pps')).toBe('2.60 Mpps');
    expect(si(13.4e9, 'bit/s')).toBe('13.40 Gbit/s');
  });
  it('prints ages', () => {
    const now = Date.UTC(2026, 0, 1, 12);
    expect(ago(new Date(now - 5_000), now)).toBe('5s ago');
    expect(ago(new Date(now - 185_000), now)).toBe('3m05s ago');
    expect(ago(new Date(now - 7_260_000), now)).toBe('2h01m ago');
  });
});

describe('VLAN text', () => {
  it("describes a port's VLANs", () => {
    const v = (vid: number, tagged: boolean) => ({ vid, tagged });
    expect(vlansText({ vlans: [v(1, false)] })).toBe('1 untagged');
    expect(vlansText({ vlans: [v(10, true), v(20, true), v(21, true)] })).toBe('10,20-21 tagged');
    expect(vlansText({ vlans: [v(1, false), v(10, true)] })).toBe('1 untagged; 10 tagged');
  });
});
