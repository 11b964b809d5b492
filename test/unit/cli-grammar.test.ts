// One CLI grammar: every `show` answers to list/ls, every `del` to delete,
// every --json to -j; --version prints package.json's; completion scripts
// come from the same command tree; options that do nothing are errors.
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { xdpnet } from '../helpers/sys.js';

const SHOWS = [['bridge'], ['fdb'], ['vxlan'], ['nat'], ['nat', 'masquerade'], ['nat', 'snat'], ['nat', 'portmap'], ['conntrack']];
const DELS = [['bridge'], ['fdb'], ['vxlan'], ['vxlan', 'remote'], ['nat', 'masquerade'], ['nat', 'snat'], ['nat', 'portmap']];

describe('cli grammar', () => {
  it('show answers to list and ls everywhere (conntrack list included)', () => {
    for (const p of SHOWS) {
      const help = xdpnet([...p, 'show', '--help']);
      expect(help.code, p.join(' ')).toBe(0);
      expect(help.stdout, p.join(' ')).toContain('show|list');
      for (const a of ['list', 'ls']) expect(xdpnet([...p, a, '--help']).stdout, `${p.join(' ')} ${a}`).toBe(help.stdout);
    }
  });
  it('del answers to delete everywhere', () => {
    for (const p of DELS) {
      const help = xdpnet([...p, 'del', '--help']);
      expect(help.code, p.join(' ')).toBe(0);
      expect(xdpnet([...p, 'delete', '--help']).stdout, p.join(' ')).toBe(help.stdout);
    }
  });
  it('-j is --json wherever there is --json', () => {
    for (const p of [...SHOWS.map((x) => [...x, 'show']), ['status'], ['stats'], ['conntrack', 'timeouts'], ['vxlan', 'add']]) {
      expect(xdpnet([...p, '--help']).stdout, p.join(' ')).toContain('-j, --json');
    }
  });
  it('--version prints package.json\'s version', () => {
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    expect(xdpnet(['--version'])).toMatchObject({ code: 0, stdout: `${version}\n` });
  });
  it('stats --count without --watch is an error, not ignored', () => {
    expect(xdpnet(['stats', '--count', '3'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--count needs --watch') });
  });
  it('vxlan --port is now --udp-port (one meaning per flag: --port is a bridge or host port elsewhere)', () => {
    const help = xdpnet(['vxlan', 'add', '--help']).stdout;
    expect(help).toContain('--udp-port <n>');
    expect(help).not.toMatch(/\s--port\b/);
  });
  it('one meaning per flag: portmap takes --host-port and --out; old spellings warn and still parse; both at once is an error', () => {
    const help = xdpnet(['nat', 'portmap', 'add', '--help']).stdout;
    expect(help).toContain('--host-port <port>');
    expect(help).toContain('--out <iface>');
    expect(help).not.toMatch(/\s--(port|on)\b/);
    // a bad value stops the command before anything privileged: the old spelling reached the new option
    const old = xdpnet(['nat', 'portmap', 'add', '--proto', 'tcp', '--port', '70000', '--to', '172.17.0.2:80']);
    expect(old).toMatchObject({ code: 2, stderr: expect.stringContaining("xdpnet: warning: --port is deprecated here, use --host-port") });
    expect(old.stderr).toContain("--host-port: invalid port '70000'");
    expect(xdpnet(['nat', 'portmap', 'add', '--proto', 'tcp', '--host-port', '80', '--port', '80', '--to', '172.17.0.2:80']))
      .toMatchObject({ code: 2, stderr: expect.stringContaining('--port and --host-port are the same option') });
    const vx = xdpnet(['vxlan', 'add', '--bridge', 'b', '--vni', '0', '--local', '10.0.0.1', '--dev', 'lo', '--port', '8472']);
    expect(vx).toMatchObject({ code: 2, stderr: expect.stringContaining('--port is deprecated here, use --udp-port') });
    expect(xdpnet(['network', 'create', 'n', '--vni', '1', '--cidr', '10.0.0.0/16', '--port', '99999']))
      .toMatchObject({ code: 2, stderr: expect.stringMatching(/--port is deprecated here, use --udp-port[\s\S]*--udp-port must be a whole number/) });
  });
  it('detach --everything without --all is an error; detach --help says what --all leaves', () => {
    expect(xdpnet(['detach', '--everything'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--everything goes with --all') });
    expect(xdpnet(['detach', '--help']).stdout).toMatch(/bridges' host interfaces, VTEP uplinks, NAT links/);
  });
  it('xdpnet --help documents the exit codes, 70 included', () => {
    const help = xdpnet(['--help']).stdout;
    for (const code of ['0 ', '1 ', '2 ', '70 ']) expect(help).toContain(`\n  ${code}`);
  });
  it('completion: bash completes subcommands, aliases and options from the command tree', () => {
    const script = xdpnet(['completion', 'bash']).stdout;
    const complete = (...words: string[]) => execFileSync('bash', ['-c',
      `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _xdpnet; echo "\${COMPREPLY[@]}"`], { encoding: 'utf8' }).trim();
    expect(complete('xdpnet', 'conn')).toBe('conntrack');
    expect(complete('xdpnet', 'fdb', 'l').split(' ').sort()).toEqual(['list', 'load', 'ls']);
    expect(complete('xdpnet', 'nat', 'portmap', 'add', '--p').split(' ').sort()).toEqual(['--proto']);
    expect(xdpnet(['completion', 'zsh']).stdout).toContain('#compdef xdpnet');
    expect(xdpnet(['completion', 'fish'])).toMatchObject({ code: 2, stderr: expect.stringContaining("unknown shell 'fish'") });
  });
});
