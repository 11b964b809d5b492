// Typed errors. Every failure the CLI reports is one of these: a message that
// names what failed and why, an optional hint saying what to do, an exit code.
import { constants } from 'node:os';

const ERRNO_NAMES = new Map<number, string>(
  Object.entries(constants.errno).map(([name, n]) => [n as number, name]),
);

export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}

export class XdpnetError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Usage errors (bad arguments): exit code 2, like commander's own. */
export class UsageError extends XdpnetError {
  constructor(message: string, hint?: string) {
    super(message, hint, 2);
  }
}

/** A failed kernel/libbpf operation: what was done, to what, and the errno. */
export class BpfError extends XdpnetError {
  readonly errno: number;
  constructor(
    readonly op: string,
    readonly target: string,
    errno: number,
    hint?: string,
  ) {
    const e = Math.abs(errno);
    super(`${op} ${target}: ${errnoName(e)}${describeErrno(e)}`, hint);
    this.errno = e;
  }
}

/**
 * The kernel refused an rtnetlink request: what was asked, of what, the errno,
 * and the kernel's own reason when it gave one (extended ack), e.g.
 * "create veth xnc1/eth0: EEXIST (File exists)".
 */
export class NetlinkError extends XdpnetError {
  readonly errno: number;
  constructor(
    readonly op: string,
    readonly target: string,
    errno: number,
    readonly kernelMsg?: string,
    hint?: string,
  ) {
    const e = Math.abs(errno);
    super(`${op} ${target}: ${errnoName(e)}${describeErrno(e)}${kernelMsg ? `: ${kernelMsg}` : ''}`, hint);
    this.errno = e;
  }
}

/** The verifier rejected a program; `log` is the full verifier log. */
export class VerifierError extends BpfError {
  constructor(
    readonly program: string,
    errno: number,
    readonly log: string,
  ) {
    super('load program', program, errno, 'the verifier rejected it; rerun with --verbose for the full log');
    const tail = log.trimEnd().split('\n').slice(-12).join('\n');
    if (tail) this.message += `\nverifier log (tail):\n${tail}`;
  }
}

let strerror: ((e: number) => string) | undefined;
/** Set by sys/libc.ts so this module stays free of FFI. */
export function setStrerror(fn: (e: number) => string): void {
  strerror = fn;
}
function describeErrno(e: number): string {
  return strerror ? ` (${strerror(e)})` : '';
}
