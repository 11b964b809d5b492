// Number arguments, checked before anything privileged happens (usage errors, exit 2),
// and renamed options' old spellings.
import { type Command, Option } from 'commander';
import { UsageError } from '../errors.js';

export function positive(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${what} must be a positive number, got ${v}`);
  return n;
}

export function integer(v: string, what: string, min: number, max: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) throw new UsageError(`${what} must be a whole number from ${min} to ${max}, got ${v}`);
  return n;
}

/**
 * An old spelling of a renamed option: hidden from --help, still accepted, and
 * said so on stderr. Its value goes to the new option's key as it is parsed
 * (before required options are checked), so the action sees one name; giving
 * both is a usage error.
 */
export function deprecatedAlias(cmd: Command, oldFlags: string, now: string): Command {
  const old = new Option(oldFlags, `deprecated spelling of ${now}`).hideHelp();
  const nowOpt = new Option(`${now} <x>`);
  let viaOld = false;
  let viaNow = false;
  const both = () => new UsageError(`${old.long} and ${now} are the same option: give ${now} only`);
  cmd.addOption(old);
  cmd.on(`option:${old.name()}`, (value: string) => {
    if (viaNow) throw both();
    viaOld = true;
    console.error(`xdpnet: warning: ${old.long} is deprecated here, use ${now} (${old.long} means something else in other commands)`);
    cmd.setOptionValueWithSource(nowOpt.attributeName(), value, 'cli');
  });
  cmd.on(`option:${nowOpt.name()}`, () => {
    if (viaOld) throw both();
    viaNow = true;
  });
  return cmd;
}
