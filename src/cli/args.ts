// Number arguments, checked before anything privileged happens (usage errors, exit 2).
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
