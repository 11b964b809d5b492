// xn_arp, the bridge's ARP responder table (bpf/lib/arp.h): (bridge, VLAN,
// IPv4) -> MAC. This module is its only writer.
import { join } from 'node:path';
import { ArpEntry, ArpKey, BRIDGE } from '../objects/bridge.js';
import type { InstancePaths } from '../objects/paths.js';
import { BpfMap } from '../sys/libbpf.js';
import { ipv4ToNum, numToIpv4 } from '../objects/codec.js';
import { formatMac, parseMac } from './addr.js';

export interface ArpRow {
  bridge: number;
  vid: number;
  ip: string;
  mac: string;
}

function withArp<T>(inst: InstancePaths, fn: (m: BpfMap) => T): T | undefined {
  return BpfMap.usePin(join(inst.maps, BRIDGE.maps.arp), fn);
}

/** Sets (mac) or removes (null) one answer. */
export function setArp(inst: InstancePaths, bridge: number, vid: number, ip: string, mac: string | null): void {
  withArp(inst, (m) => {
    const k = ArpKey.encode({ bridge, vid, pad: 0, ip: ipv4ToNum(ip) });
    if (mac) m.update(k, ArpEntry.encode({ mac: parseMac(mac), flags: 0 }));
    else m.delete(k);
  });
}

export function listArp(inst: InstancePaths, bridge?: number): ArpRow[] {
  return (withArp(inst, (m) => m.entries().map(([k, v]) => {
    const key = ArpKey.decode(k);
    return { bridge: key.bridge, vid: key.vid, ip: numToIpv4(key.ip), mac: formatMac(ArpEntry.decode(v).mac) };
  })) ?? []).filter((r) => bridge === undefined || r.bridge === bridge);
}

/**
 * Makes the bridge's entries in one VLAN exactly `want` (IPv4 -> MAC string):
 * adds and replaces what differs, removes the rest. Returns what changed.
 */
export function syncArp(inst: InstancePaths, bridge: number, vid: number, want: Map<string, string>): { added: number; removed: number } {
  return withArp(inst, (m) => {
    const have = new Map<string, string>();
    for (const [k, v] of m.entries()) {
      const key = ArpKey.decode(k);
      if (key.bridge === bridge && key.vid === vid) have.set(numToIpv4(key.ip), formatMac(ArpEntry.decode(v).mac));
    }
    const key = (ip: string) => ArpKey.encode({ bridge, vid, pad: 0, ip: ipv4ToNum(ip) });
    // one batch each way: 50 000 single updates took seconds of the agent's convergence
    const ks: Buffer[] = [];
    const vs: Buffer[] = [];
    for (const [ip, mac] of want) {
      if (have.get(ip) === mac) continue;
      ks.push(key(ip));
      vs.push(ArpEntry.encode({ mac: parseMac(mac), flags: 0 }));
    }
    if (ks.length) m.updateBatch(Buffer.concat(ks), Buffer.concat(vs), ks.length);
    const gone = [...have.keys()].filter((ip) => !want.has(ip)).map(key);
    if (gone.length) m.deleteKeys(Buffer.concat(gone), gone.length);
    return { added: ks.length, removed: gone.length };
  }) ?? { added: 0, removed: 0 };
}
