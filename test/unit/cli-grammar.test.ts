// One CLI grammar: every `show` answers to list/ls, every `del` to delete,
// every --json to -j; --version prints package.json's; completion scripts
// come from the same command tree; options that do nothing are errors.
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { xdpnet } from '../helpers/sys.js';


/** Each command path of the tree (from the bash completion script, which is generated from it) with its words: subcommands, aliases, options. */
function tree(): Map<string, string[]> {
  const script = xdpnet(['completion', 'bash']).stdout;
  return new Map([...script.matchAll(/^ {4}"([^"]*)"\) words="([^"]*)" ;;$/gm)].map((m) => [m[1], m[2].split(' ')]));
}

/** Every command that changes state: each prints what it created, removed or changed with --json. */
const CHANGES = ['attach', 'detach', 'bridge add', 'bridge del', 'fdb add', 'fdb del', 'fdb flush', 'fdb load', 'fdb age',
  'vxlan add', 'vxlan del', 'vxlan remote add', 'vxlan remote del', 'nat masquerade add', 'nat masquerade del', 'nat snat add',
  'nat snat del', 'nat portmap add', 'nat portmap del', 'nat flush', 'conntrack flush', 'conntrack gc', 'conntrack timeouts',
  'network create', 'endpoint add', 'endpoint del'];

describe('cli grammar', () => {
  it('over the whole command tree: every show has list and ls, every del has delete, every --json has -j', () => {
    const t = tree();
    expect(t.size).toBeGreaterThan(40);
    for (const [path, words] of t) {
      if (words.includes('show')) expect(words, `${path} show`).toEqual(expect.arrayContaining(['list', 'ls']));
      if (words.includes('del')) expect(words, `${path} del`).toContain('delete');
      if (words.includes('--json')) expect(words, path).toContain('-j');
    }
  });
  it('every command that changes state takes --json (and only paths that exist are listed)', () => {
    const t = tree();
    for (const path of CHANGES) expect(t.get(path), path).toEqual(expect.arrayContaining(['--json', '-j']));
  });
  it('a global --netns on a command that never enters a namespace is an error, not ignored', () => {
    for (const cmd of [['network', 'create', 'n', '--vni', '1', '--cidr', '10.0.0.0/16'], ['network', 'show', 'n'], ['completion', 'bash']]) {
      expect(xdpnet(['--netns', 'x', ...cmd]), cmd.join(' ')).toMatchObject({
        code: 2, stdout: '', stderr: expect.stringMatching(new RegExp(`^xdpnet: error: --netns does not apply to \`xdpnet ${cmd[0]}( ${cmd[1]})?\``)),
      });
    }
  });
  it('attach --mode on a bridge port, which defaults to the tc hook, is an error naming both options', () => {
    expect(xdpnet(['attach', 'veth1', '--bridge', 'br0', '--mode', 'generic'])).toMatchObject({
      code: 2, stderr: expect.stringContaining('--mode applies to --hook xdp only: --bridge ports use --hook tc unless told otherwise'),
    });
  });
  it('the aliases are the commands themselves (a sample: the tree-wide check above covers every path)', () => {
    for (const [name, alias] of [[['conntrack', 'show'], ['conntrack', 'ls']], [['vxlan', 'remote', 'del'], ['vxlan', 'remote', 'delete']]]) {
      const help = xdpnet([...name, '--help']);
      expect(help.code, name.join(' ')).toBe(0);
      expect(xdpnet([...alias, '--help']).stdout, alias.join(' ')).toBe(help.stdout);
      expect(help.stdout).toMatch(/show\|list|del\|delete/);
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
