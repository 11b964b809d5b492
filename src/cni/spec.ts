// The CNI specification's contract (https://www.cni.dev/docs/spec/): versions,
// the error object and its well-known codes, and the result's shape per version.

/** Versions this plugin reads and answers in (0.3.x/0.4.0 results carry an IP "version"). */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export const OWN_VERSION = '1.1.0';

/** Well-known error codes (spec "Error"); 100 and up are this plugin's own. */
export const CODES = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODING_FAILURE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  NOT_AVAILABLE: 50, // STATUS: the plugin cannot serve ADDs now
  DATAPLANE: 100, // xdpnet could not set up or remove the datapath (bridge, port, NAT)
  IPAM: 101, // the delegated IPAM plugin failed without an error object of its own
  CHECK_FAILED: 102, // CHECK found something missing; msg says what
} as const;

export class CniError extends Error {
  constructor(readonly code: number, msg: string, readonly details?: string) {
    super(msg);
  }

  toJSON(cniVersion: string): object {
    return { cniVersion, code: this.code, msg: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

export interface CniInterface { name: string; mac?: string; mtu?: number; sandbox?: string }
export interface CniIp { address: string; gateway?: string; interface?: number; version?: '4' | '6' }
export interface CniRoute { dst: string; gw?: string }
export interface CniDns { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] }
export interface CniResult { cniVersion: string; interfaces?: CniInterface[]; ips?: CniIp[]; routes?: CniRoute[]; dns?: CniDns }

/** Semantic order of "a.b.c" versions. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}

export function checkVersion(v: unknown): string {
  if (typeof v !== 'string' || !/^\d+\.\d+\.\d+$/.test(v)) {
    throw new CniError(CODES.INVALID_CONFIG, `cniVersion must be a version string like "1.0.0", got ${JSON.stringify(v)}`);
  }
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(v)) {
    throw new CniError(CODES.INCOMPATIBLE_VERSION, `incompatible CNI version ${v}`, `supported: ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  return v;
}

/** A result in the shape of the requested version: before 1.0.0 each IP names its family. */
export function resultFor(version: string, r: Omit<CniResult, 'cniVersion'>): CniResult {
  const old = compareVersions(version, '1.0.0') < 0;
  return {
    cniVersion: version,
    ...r,
    ips: r.ips?.map((ip) => {
      const { version: _v, ...rest } = ip;
      return old ? { ...rest, version: ip.address.includes(':') ? '6' as const : '4' as const } : rest;
    }),
  };
}
