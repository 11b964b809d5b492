// The rtnetlink client against `ip`'s view of the same namespaces: what it
// reads (routes, addresses, a dump of many datagrams) must be what `ip`
// prints, what it makes (a veth with its peer in another namespace, an
// address, routes) must be what `ip` then shows, and what the kernel refuses
// must come back as its errno and reason, with nothing changed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { withNetns } from '../../src/dataplane/host.js';
import { NetlinkError } from '../../src/errors.js';
import { ifNameToIndex } from '../../src/sys/libc.js';
import { addAddress, addRoute, addVeth, deleteLink, dumpAddresses, getRoute, setLinkUp } from '../../src/sys/rtnl.js';
import { cleanup, netns, sh, veth } from '../helpers/sys.js';

const ipj = <T>(ns: string, ...args: string[]): T => JSON.parse(sh('ip', ['-n', ns, '-j', ...args]) || '[]') as T;
const refused = (fn: () => unknown): NetlinkError => {
  try {
    fn();
  } catch (e) {
    if (e instanceof NetlinkError) return e;
    throw e;
  }
  throw new Error('the kernel accepted it');
};

let a = '';
let b = '';

beforeAll(() => {
  a = netns('rtnla');
  b = netns('rtnlb');
  veth(a, 'up0', b, 'eth0', '10.210.0.1/24', '10.210.0.2/24');
  sh('ip', ['-n', a, 'addr', 'add', '10.210.0.9/24', 'dev', 'up0']); // a secondary
  sh('ip', ['-n', a, 'route', 'add', 'default', 'via', '10.210.0.2']);
  sh('ip', ['-n', a, 'route', 'add', 'unreachable', '198.51.100.0/24']);
  sh('ip', ['-n', a, 'route', 'add', '203.0.113.0/24', 'dev', 'up0', 'src', '10.210.0.9']);
});

afterAll(cleanup);

describe('reading: what `ip` prints', () => {
  it('route get: local, on-link, via the gateway, with a preferred source, from/oif; none where ip finds none', () => {
    const asIp = (dst: string, ...more: string[]) => {
      const r = ipj<Array<{ type?: string; dev: string; gateway?: string; prefsrc?: string }>>(a, 'route', 'get', dst, ...more)[0];
      return { type: r.type ?? 'unicast', dev: r.dev, ...(r.gateway ? { gateway: r.gateway } : {}), ...(r.prefsrc ? { prefsrc: r.prefsrc } : {}) };
    };
    const ours = (dst: string, o?: { from?: string; oif?: number }) => withNetns(a, () => {
      const r = getRoute(dst, o);
      const names = new Map(ipj<Array<{ ifindex: number; ifname: string }>>(a, 'link', 'show').map((l) => [l.ifindex, l.ifname]));
      return r && { type: r.type, dev: names.get(r.oif!), ...(r.gateway ? { gateway: r.gateway } : {}), ...(r.prefsrc ? { prefsrc: r.prefsrc } : {}) };
    });
    for (const dst of ['10.210.0.1', '127.0.0.1', '10.210.0.2', '192.0.2.77', '203.0.113.5', '10.210.0.255']) expect(ours(dst), dst).toEqual(asIp(dst));
    expect(ours('192.0.2.77', { from: '10.210.0.9', oif: ifNameToIndexIn(a, 'up0') })).toEqual(asIp('192.0.2.77', 'from', '10.210.0.9', 'oif', 'up0'));
    expect(ours('198.51.100.1')).toBeUndefined(); // unreachable: `ip route get` fails too
    expect(() => sh('ip', ['-n', a, 'route', 'get', '198.51.100.1'])).toThrow(/No route to host/);
    expect(withNetns(b, () => getRoute('192.0.2.77'))).toBeUndefined(); // b has no default route
  });

  it('the IPv4 address dump, in ip\'s order, across many datagrams (NLM_F_MULTI up to NLMSG_DONE)', () => {
    // 1500 addresses (~100 KB of answer): the dump spans several datagrams
    const batch = Array.from({ length: 1500 }, (_, i) => `addr add 10.${211 + (i >> 10)}.${(i >> 8) & 3}.${i & 255}/16 dev eth0\n`).join('');
    execFileSync('ip', ['-n', b, '-batch', '-'], { input: batch });
    const fromIp = ipj<Array<{ ifindex: number; ifname: string; addr_info: Array<{ family: string; local: string; prefixlen: number; secondary?: boolean; label?: string }> }>>(b, '-4', 'addr', 'show')
      .flatMap((l) => l.addr_info.map((x) => ({ ifindex: l.ifindex, address: x.local, prefixlen: x.prefixlen, secondary: Boolean(x.secondary), label: x.label ?? l.ifname })));
    const ours = withNetns(b, dumpAddresses);
    expect(fromIp.length).toBe(1500 + 2); // lo, eth0's own, the batch
    expect(ours).toEqual(fromIp);
    expect(ours.filter((x) => x.secondary).length).toBe(1498); // all but the first of each of the two /16s
  });
});

function ifNameToIndexIn(ns: string, dev: string): number {
  return withNetns(ns, () => ifNameToIndex(dev));
}

describe('changing: what `ip` then shows', () => {
  it('a veth made with its peer in another namespace by fd: names, MTUs, MACs, the near end up', () => {
    const fd = openSync(`/run/netns/${b}`, 'r');
    try {
      withNetns(a, () => addVeth({ name: 'xnr0', mtu: 1400, mac: '02:aa:00:00:00:01', up: true }, { name: 'cni0', mtu: 1400, mac: '02:aa:00:00:00:02', netnsFd: fd }));
    } finally {
      closeSync(fd);
    }
    const [near] = ipj<Array<{ ifname: string; mtu: number; address: string; flags: string[]; link_netnsid?: number; linkinfo: { info_kind: string } }>>(a, '-d', 'link', 'show', 'dev', 'xnr0');
    const [far] = ipj<Array<{ ifname: string; mtu: number; address: string; flags: string[]; link_netnsid?: number; linkinfo: { info_kind: string } }>>(b, '-d', 'link', 'show', 'dev', 'cni0');
    expect([near.mtu, near.address, near.linkinfo.info_kind, near.flags.includes('UP'), near.link_netnsid !== undefined]).toEqual([1400, '02:aa:00:00:00:01', 'veth', true, true]);
    expect([far.mtu, far.address, far.linkinfo.info_kind, far.flags.includes('UP')]).toEqual([1400, '02:aa:00:00:00:02', 'veth', false]);
  });

  it('an address, the link up, a default route via the gateway and a link-scope route', () => {
    withNetns(b, () => {
      const i = ifNameToIndex('cni0');
      addAddress(i, '10.212.7.5', 24, 'cni0');
      setLinkUp(i, 'cni0');
      addRoute({ dst: '0.0.0.0', dstLen: 0, gateway: '10.212.7.1', oif: i }, 'cni0');
      addRoute({ dst: '192.0.2.0', dstLen: 24, oif: i }, 'cni0');
    });
    const [l] = ipj<Array<{ flags: string[]; addr_info: Array<{ family: string; local: string; prefixlen: number; scope: string }> }>>(b, 'addr', 'show', 'dev', 'cni0');
    expect(l.flags).toContain('UP');
    expect(l.addr_info.filter((x) => x.family === 'inet')).toEqual([expect.objectContaining({ local: '10.212.7.5', prefixlen: 24, scope: 'global' })]);
    const routes = ipj<Array<{ dst: string; gateway?: string; protocol?: string; scope?: string }>>(b, '-d', '-4', 'route', 'show', 'dev', 'cni0'); // -d: protocol boot too
    expect(routes).toContainEqual(expect.objectContaining({ dst: 'default', gateway: '10.212.7.1', protocol: 'boot' }));
    expect(routes).toContainEqual(expect.objectContaining({ dst: '192.0.2.0/24', scope: 'link', protocol: 'boot' }));
  });

  it('refusals: the errno by name and the kernel\'s reason, nothing changed', () => {
    const before = sh('ip', ['-n', a, '-d', 'link', 'show']);
    const fd = openSync(`/run/netns/${b}`, 'r');
    try {
      const e = refused(() => withNetns(a, () => addVeth({ name: 'xnr0' }, { name: 'cni9', netnsFd: fd })));
      expect(e.message).toMatch(/^create veth xnr0\/cni9: EEXIST \(File exists\)/);
    } finally {
      closeSync(fd);
    }
    expect(sh('ip', ['-n', a, '-d', 'link', 'show'])).toBe(before);
    expect(ipj<unknown[]>(b, 'link', 'show', 'dev', 'cni0')).toHaveLength(1);
    expect(() => sh('ip', ['-n', b, 'link', 'show', 'dev', 'cni9'])).toThrow();

    const i = ifNameToIndexIn(b, 'cni0');
    const bad = refused(() => withNetns(b, () => addRoute({ dst: '10.9.9.9', dstLen: 8, gateway: '10.212.7.1', oif: i }, 'cni0')));
    expect(bad.errno).toBe(22);
    expect(bad.message).toBe('add route 10.9.9.9/8 via 10.212.7.1 dev cni0: EINVAL (Invalid argument): Invalid prefix for given prefix length');
    expect(refused(() => withNetns(b, () => addAddress(999_999, '10.1.1.1', 24))).message).toMatch(/^add address 10\.1\.1\.1\/24 to ifindex 999999: ENODEV/);
    expect(refused(() => withNetns(b, () => addAddress(i, '10.212.7.5', 24, 'cni0'))).message).toMatch(/EEXIST/);
  });

  it('deleting the near end takes the pair along', () => {
    withNetns(a, () => deleteLink(ifNameToIndex('xnr0'), 'xnr0'));
    expect(() => sh('ip', ['-n', a, 'link', 'show', 'dev', 'xnr0'])).toThrow();
    expect(() => sh('ip', ['-n', b, 'link', 'show', 'dev', 'cni0'])).toThrow();
    expect(refused(() => withNetns(a, () => deleteLink(999_999))).message).toMatch(/^delete link ifindex 999999: ENODEV/);
  });
});
