// The VM targets (make vagrant-*) are too slow for `make test`; these checks catch the cheap
// mistakes before anyone waits for an emulated boot.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const dir = 'vagrant';
const scripts = [...readdirSync(dir), ...readdirSync(join(dir, 'box')).map((f) => join('box', f)),
  ...readdirSync(join(dir, 'guest')).map((f) => join('guest', f))].filter((f) => f.endsWith('.sh')).map((f) => join(dir, f));
const makeAptPkgs = /^APT_PKGS := ((?:.*\\\n)*.*)$/m.exec(readFileSync('Makefile', 'utf8'))![1].replace(/\\\n/g, ' ').trim().split(/\s+/);

function boxPackages(env: Record<string, string>): string[] {
  return execFileSync('bash', ['-c', '. vagrant/box/packages.sh && box_packages'], { env: { PATH: process.env.PATH!, ...env }, encoding: 'utf8' })
    .trim().split(/\s+/);
}

describe('vagrant scripts', () => {
  it('every script parses', () => {
    expect(scripts.length).toBeGreaterThanOrEqual(8);
    for (const s of scripts) expect(spawnSync('bash', ['-n', s], { encoding: 'utf8' }).stderr, s).toBe('');
  });
  it('the box has what vagrant needs and every package make setup would install', () => {
    const pkgs = boxPackages({ XDPNET_APT_PKGS: makeAptPkgs.join(' ') });
    for (const p of ['openssh-server', 'sudo', 'systemd-sysv', 'linux-image-amd64', 'rsync', 'curl', 'make']) expect(pkgs).toContain(p);
    for (const p of makeAptPkgs) expect(pkgs).toContain(p);
    expect(makeAptPkgs).toContain('clang'); // the Makefile parse found the real list
  });
  it('without the project packages the box is still a vagrant box', () => {
    const pkgs = boxPackages({});
    expect(pkgs).toContain('openssh-server');
    expect(pkgs).not.toContain('clang');
  });
  it('provisioning pins Node >= 20 and npm with sha512 integrity values', () => {
    const p = readFileSync(join(dir, 'provision.sh'), 'utf8');
    const v = (name: string) => new RegExp(`^${name}=(.*)$`, 'm').exec(p)?.[1] ?? '';
    expect(Number(v('NODE_VERSION').split('.')[0])).toBeGreaterThanOrEqual(20);
    for (const h of [v('NODE_SHA512'), v('NPM_SHA512')]) expect(h).toMatch(/^[A-Za-z0-9+/]{86}==$/);
  });
  it('the Vagrantfile defaults to the local box and isolates the underlay', () => {
    const vf = readFileSync(join(dir, 'Vagrantfile'), 'utf8');
    const boxName = /^BOX_NAME=\$\{BOX_NAME:-(.*)\}$/m.exec(readFileSync(join(dir, 'box', 'build.sh'), 'utf8'))?.[1];
    expect(vf).toContain(`ENV.fetch("XDPNET_BOX", "${boxName}")`);
    expect(vf).toContain('libvirt__forward_mode: "none"');
  });
});
