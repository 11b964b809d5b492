// The CNI plugin's parsing and error objects, run as a runtime runs it (the
// built executable, env + stdin): every error here happens before anything is
// changed, so no root is needed.
import { describe, expect, it } from 'vitest';
import { parseEnv, parseNetConf } from '../../src/cni/config.js';
import { CODES, resultFor, SUPPORTED_VERSIONS } from '../../src/cni/spec.js';
import { hostVethName } from '../../src/cni/link.js';
import { spawnSync } from 'node:child_process';
import { expectCniError, expectValidResult, PLUGIN, runPlugin } from '../helpers/cni.js';

const CONF = {
  cniVersion: '1.0.0', name: 'xnet', type: 'xdpnet', bridge: 'xn0', isGateway: true, ipMasq: true, mtu: 1500, hook: 'tc',
  ipam: { type: 'host-local', ranges: [[{ subnet: '10.89.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] },
  capabilities: { portMappings: true },
};
const ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' };
const conf = (o: object = {}) => JSON.stringify({ ...CONF, ...o });

describe('network configuration', () => {
  it('reads the documented example, with defaults for what it leaves out', () => {
    const c = parseNetConf(conf({ runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '' }] } }));
    expect(c).toMatchObject({ name: 'xnet', bridge: 'xn0', isGateway: true, ipMasq: true, mtu: 1500, hook: 'tc' });
    expect(c.portMappings).toEqual([{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: undefined }]);
    const d = parseNetConf(JSON.stringify({ cniVersion: '0.4.0', name: 'n', type: 'xdpnet', ipam: { type: 'host-local' } }));
    expect(d).toMatchObject({ bridge: 'xn0', isGateway: true, ipMasq: false, mtu: 1500, hook: 'tc', portLock: true, portMappings: [] });
  });
  it('accepts the keys runtimes inject', () => {
    expect(() => parseNetConf(conf({ args: {}, dns: {}, runtimeConfig: { portMappings: [] }, prevResult: { cniVersion: '1.0.0' } }))).not.toThrow();
  });
  it('names an unknown or misspelt field (code 7)', () => {
    expect(() => parseNetConf(conf({ brigde: 'xn0' }))).toThrow(/unknown field "brigde"/);
    expect(() => parseNetConf(conf({ runtimeConfig: { portMappings: [{ hostPort: 1, containerPort: 2, hostIp: 'x' }] } })))
      .toThrow(/unknown field runtimeConfig.portMappings\[0\].hostIp/);
  });
  it('refuses bad values, naming the field', () => {
    const cases: Array<[object, RegExp]> = [
      [{ mtu: 100 }, /mtu must be/], [{ hook: 'tcx' }, /hook must be/], [{ isGateway: 'yes' }, /isGateway must be true or false/], [{ portLock: 1 }, /portLock must be true or false/],
      [{ bridge: 'a-very-long-bridge-name' }, /bridge must be/], [{ type: 'bridge' }, /type must be "xdpnet"/],
      [{ ipam: {} }, /ipam must be an object naming/], [{ name: '' }, /name must be/],
      [{ runtimeConfig: { portMappings: [{ hostPort: 0, containerPort: 80 }] } }, /hostPort must be a port/],
      [{ runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, protocol: 'sctp' }] } }, /protocol must be tcp or udp/],
    ];
    for (const [o, re] of cases) expect(() => parseNetConf(conf(o)), JSON.stringify(o)).toThrow(re);
  });
  it('reads ipam xdpnet-cluster strictly: a network name, no bridge of its own, no unknown field', () => {
    const cl = (ipam: object, o: object = {}) => JSON.stringify({ cniVersion: '1.0.0', name: 'prod', type: 'xdpnet', ipam, ...o });
    expect(parseNetConf(cl({ type: 'xdpnet-cluster', network: 'prod' })).cluster).toEqual({ network: 'prod', socket: undefined });
    expect(parseNetConf(conf()).cluster).toBeUndefined();
    const cases: Array<[string, RegExp]> = [
      [cl({ type: 'xdpnet-cluster' }), /ipam.network must name a cluster network/],
      [cl({ type: 'xdpnet-cluster', network: 'Prod!' }), /ipam.network must name/],
      [cl({ type: 'xdpnet-cluster', network: 'prod', subnet: '10.0.0.0/8' }), /unknown field ipam.subnet for xdpnet-cluster/],
      [cl({ type: 'xdpnet-cluster', network: 'prod', socket: 'rel.sock' }), /ipam.socket must be an absolute path/],
      [cl({ type: 'xdpnet-cluster', network: 'prod' }, { bridge: 'xn0' }), /bridge must be left out with xdpnet-cluster/],
    ];
    for (const [text, re] of cases) expect(() => parseNetConf(text), text).toThrow(re);
  });
  it('checks CNI_* by command', () => {
    expect(parseEnv({ ...ENV, CNI_PATH: '/a:/b' }).path).toEqual(['/a', '/b']);
    expect(parseEnv({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c', CNI_IFNAME: 'eth0', CNI_PATH: '/a' }).netns).toBe(''); // DEL may come without a netns
    expect(() => parseEnv({ ...ENV, CNI_NETNS: undefined })).toThrow(/CNI_NETNS is not set: ADD needs it/);
    expect(() => parseEnv({ ...ENV, CNI_IFNAME: 'a/b' })).toThrow(/CNI_IFNAME/);
    expect(() => parseEnv({ ...ENV, CNI_IFNAME: '..' })).toThrow(/CNI_IFNAME/);
    expect(() => parseEnv({ ...ENV, CNI_CONTAINERID: '-x' })).toThrow(/CNI_CONTAINERID/);
    expect(() => parseEnv({ ...ENV, CNI_COMMAND: 'PUT' })).toThrow(/unknown CNI_COMMAND "PUT"/);
  });
  it('names host interfaces within IFNAMSIZ, stable per (container, ifname)', () => {
    const n = hostVethName('a'.repeat(64), 'eth0');
    expect(n).toMatch(/^xnc[0-9a-f]{12}$/);
    expect(hostVethName('a'.repeat(64), 'eth0')).toBe(n);
    expect(hostVethName('a'.repeat(64), 'eth1')).not.toBe(n);
  });
});

describe('results', () => {
  const r = {
    interfaces: [{ name: 'xn0', mac: '02:00:00:00:00:01' }, { name: 'xncabc', mac: '02:00:00:00:00:02' }, { name: 'eth0', mac: '02:00:00:00:00:03', sandbox: '/run/netns/x' }],
    ips: [{ address: '10.89.0.2/24', gateway: '10.89.0.1', interface: 2 }], routes: [{ dst: '0.0.0.0/0' }], dns: {},
  };
  it('has the shape of the version asked for', () => {
    expectValidResult(resultFor('1.0.0', r) as unknown as Record<string, unknown>, '1.0.0');
    expectValidResult(resultFor('0.4.0', r) as unknown as Record<string, unknown>, '0.4.0'); // IPs name their family before 1.0.0
    expect(() => expectValidResult(resultFor('1.0.0', { ...r, ips: [{ ...r.ips[0], interface: 0 }] }) as unknown as Record<string, unknown>, '1.0.0')).toThrow();
  });
});

describe('the executable: error objects', () => {
  it('VERSION lists the versions it speaks', () => {
    const v = runPlugin({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}');
    expect(v.code).toBe(0);
    expect(v.json).toEqual({ cniVersion: '1.0.0', supportedVersions: [...SUPPORTED_VERSIONS] });
    expectCniError(runPlugin({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"9.9.9"}'), CODES.INCOMPATIBLE_VERSION, /incompatible CNI version 9.9.9/);
  });
  it('bad JSON: 6', () => expectCniError(runPlugin(ENV, '{"cniVersion":'), CODES.DECODING_FAILURE, /cannot decode/));
  it('unknown field: 7, in the version of the configuration', () => {
    const r = runPlugin(ENV, conf({ cniVersion: '0.4.0', ipMasquerade: true }));
    expectCniError(r, CODES.INVALID_CONFIG, /unknown field "ipMasquerade"/);
    expect(r.json.cniVersion).toBe('0.4.0');
  });
  it('unsupported version: 1', () => expectCniError(runPlugin(ENV, conf({ cniVersion: '2.0.0' })), CODES.INCOMPATIBLE_VERSION, /incompatible CNI version 2.0.0/));
  it('missing or bad environment: 4', () => {
    expectCniError(runPlugin({ ...ENV, CNI_COMMAND: undefined }, conf()), CODES.INVALID_ENV, /CNI_COMMAND is not set/);
    expectCniError(runPlugin({ ...ENV, CNI_CONTAINERID: undefined }, conf()), CODES.INVALID_ENV, /CNI_CONTAINERID is not set/);
    expectCniError(runPlugin({ ...ENV, CNI_NETNS: undefined }, conf()), CODES.INVALID_ENV, /CNI_NETNS is not set/);
    expectCniError(runPlugin({ ...ENV, CNI_IFNAME: undefined }, conf()), CODES.INVALID_ENV, /CNI_IFNAME is not set/);
    expectCniError(runPlugin({ ...ENV, CNI_PATH: undefined }, conf()), CODES.INVALID_ENV, /CNI_PATH is not set/);
  });
  it('--help teaches the conflist', () => {
    const h = spawnSync(process.execPath, [PLUGIN, '--help'], { encoding: 'utf8' });
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/make install-cni/);
    expect(JSON.parse(/\{"cniVersion".*\}\]\}/s.exec(h.stdout)![0].replace(/\n\s*/g, ''))).toMatchObject({ plugins: [{ type: 'xdpnet' }] });
  });
});
