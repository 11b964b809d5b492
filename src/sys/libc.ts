// libc through koffi: namespaces, mounts and interface names. With
// sys/libbpf.ts the only code that talks FFI.
import koffi from 'koffi';
import { constants } from 'node:os';
import { setStrerror } from '../errors.js';

const libc = koffi.load('libc.so.6');
koffi.struct('ifreq_ethtool', { name: koffi.array('char', 16, 'String'), data: 'void *', pad: koffi.array('uint8', 16) });

const c = {
  setns: libc.func('int setns(int fd, int nstype)'),
  open: libc.func('int open(const char *path, int flags)'),
  close: libc.func('int close(int fd)'),
  mount: libc.func('int mount(const char *src, const char *target, const char *fstype, unsigned long flags, const char *data)'),
  if_nametoindex: libc.func('unsigned int if_nametoindex(const char *name)'),
  if_indextoname: libc.func('char *if_indextoname(unsigned int ifindex, _Out_ uint8_t *buf)'),
  strerror: libc.func('const char *strerror(int errnum)'),
  vsnprintf: libc.func('int vsnprintf(_Out_ uint8_t *buf, size_t n, const char *fmt, void *ap)'),
  flock: libc.func('int flock(int fd, int op)'),
  clock_gettime: libc.func('int clock_gettime(int clk, _Out_ uint8_t *ts)'),
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  getsockopt: libc.func('int getsockopt(int fd, int level, int name, _Out_ uint8_t *val, _Inout_ uint32_t *len)'),
  setsockopt: libc.func('int setsockopt(int fd, int level, int name, const uint8_t *val, uint32_t len)'),
  send: libc.func('long send(int fd, const uint8_t *buf, size_t len, int flags)'),
  recv: libc.func('long recv(int fd, _Out_ uint8_t *buf, size_t len, int flags)'),
  // struct ifreq with ifr_data: the ethtool command buffer, written back by the kernel
  ioctl_ethtool: libc.func('int ioctl(int fd, unsigned long req, ifreq_ethtool *ifr)'),
};

setStrerror((e) => c.strerror(e) as string);

export const CLONE_NEWNET = 0x40000000;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;

/** Returns -errno on failure. */
export function openRead(path: string): number {
  const fd = c.open(path, O_RDONLY | O_CLOEXEC) as number;
  return fd < 0 ? -koffi.errno() : fd;
}

export function close(fd: number): void {
  c.close(fd);
}

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

/** flock(2) on an open fd: exclusive, without waiting. true if taken; false if another holder has it; -errno otherwise. */
export function tryLockExclusive(fd: number): boolean | number {
  if (c.flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
  const e = koffi.errno();
  return e === constants.errno.EWOULDBLOCK ? false : -e;
}

export function unlock(fd: number): void {
  c.flock(fd, LOCK_UN);
}

/** Enter a namespace on the calling thread (Node's main thread). Returns 0 or -errno. */
export function setns(fd: number, nstype: number): number {
  return c.setns(fd, nstype) < 0 ? -koffi.errno() : 0;
}

export function mount(src: string, target: string, fstype: string): number {
  return c.mount(src, target, fstype, 0, null) < 0 ? -koffi.errno() : 0;
}

/** 0 when no such interface exists in the current network namespace. */
export function ifNameToIndex(name: string): number {
  return c.if_nametoindex(name) as number;
}

export function ifIndexToName(ifindex: number): string | undefined {
  const buf = Buffer.alloc(16);
  if (!c.if_indextoname(ifindex, buf)) return undefined;
  return buf.toString('utf8', 0, buf.indexOf(0));
}

const CLOCK_MONOTONIC_COARSE = 6;
const coarseTs = Buffer.alloc(16); // struct timespec

/** CLOCK_MONOTONIC_COARSE in ns: bpf_ktime_get_coarse_ns()'s clock (CLOCK_MONOTONIC, as of the last tick). */
export function monotonicCoarseNs(): bigint {
  c.clock_gettime(CLOCK_MONOTONIC_COARSE, coarseTs);
  return coarseTs.readBigInt64LE(0) * 1_000_000_000n + coarseTs.readBigInt64LE(8);
}

/** Formats a printf-style message with a va_list (for libbpf's print callback). */
export function vformat(fmt: string, ap: unknown): string {
  const buf = Buffer.alloc(1024);
  const n = c.vsnprintf(buf, buf.length, fmt, ap) as number;
  return buf.toString('utf8', 0, Math.max(0, Math.min(n, buf.length - 1)));
}

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const EINTR = constants.errno.EINTR;

/** A socket of the calling thread's network namespace, close-on-exec (the IPAM plugin must not inherit it). fd or -errno. */
export function socket(domain: number, type: number, protocol: number): number {
  const fd = c.socket(domain, type | SOCK_CLOEXEC, protocol) as number;
  return fd < 0 ? -koffi.errno() : fd;
}

/** setsockopt(2) with the option's bytes. 0 or -errno. */
export function setsockopt(fd: number, level: number, name: number, value: Buffer): number {
  return (c.setsockopt(fd, level, name, value, value.length) as number) < 0 ? -koffi.errno() : 0;
}

/** setsockopt with an int value. 0 or -errno. */
export function setsockoptInt(fd: number, level: number, name: number, value: number): number {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value);
  return setsockopt(fd, level, name, v);
}

/** send(2) of the whole buffer, retried on EINTR: bytes sent or -errno. */
export function send(fd: number, buf: Buffer): number {
  for (;;) {
    const n = Number(c.send(fd, buf, buf.length, 0));
    if (n >= 0) return n;
    const e = koffi.errno();
    if (e !== EINTR) return -e;
  }
}

/** recv(2) into buf, retried on EINTR: the length (with MSG_TRUNC in flags, the datagram's real length) or -errno. */
export function recv(fd: number, buf: Buffer, flags = 0): number {
  for (;;) {
    const n = Number(c.recv(fd, buf, buf.length, flags));
    if (n >= 0) return n;
    const e = koffi.errno();
    if (e !== EINTR) return -e;
  }
}
const SOL_SOCKET = 1;
const SO_NETNS_COOKIE = 71;

/**
 * The current network namespace's cookie (SO_NETNS_COOKIE, Linux 5.14): unique
 * for the boot, never reused, unlike the namespace's nsfs inode. -errno on failure.
 */
export function netnsCookie(): bigint | number {
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) return -koffi.errno();
  try {
    const val = Buffer.alloc(8);
    const len = [8];
    if ((c.getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, val, len) as number) < 0) return -koffi.errno();
    return val.readBigUInt64LE(0);
  } finally {
    c.close(fd);
  }
}

const SIOCETHTOOL = 0x8946;
/** The legacy ethtool "set" commands for the offloads a port's container end needs (struct ethtool_value). */
export const ETHTOOL_SET = { gro: 0x2c, tx: 0x17 } as const;

/**
 * `ethtool -K IFACE FEATURE on|off` in the current network namespace without
 * running ethtool: one SIOCETHTOOL ioctl. Returns 0 or -errno.
 */
export function setOffload(iface: string, feature: keyof typeof ETHTOOL_SET, on: boolean): number {
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) return -koffi.errno();
  try {
    const val = Buffer.alloc(8);
    val.writeUInt32LE(ETHTOOL_SET[feature], 0);
    val.writeUInt32LE(on ? 1 : 0, 4);
    return (c.ioctl_ethtool(fd, SIOCETHTOOL, { name: iface, data: val, pad: new Array(16).fill(0) }) as number) < 0 ? -koffi.errno() : 0;
  } finally {
    c.close(fd);
  }
}
