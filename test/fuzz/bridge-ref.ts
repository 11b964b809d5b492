// The bridge's forwarding rules, as a reader of the README would state them,
// for the fuzz tier to check the programs against. Deliberately small: no
// cache, no clocks (nothing ages during a run), one FDB as a JS Map.

export interface RefPort {
  bridge: number;
  pvid: number; // 0: untagged frames are refused
  access: boolean; // exactly one VLAN, untagged: no VLAN table entries needed
  learning: boolean;
  vlans: Map<number, boolean>; // vid -> leaves untagged
}

export interface RefSwitch {
  macs: Map<number, string>; // by bridge: frames to it go to the host
  ports: Map<string, RefPort>;
  fdb: Map<string, FdbEntry>; // key: bridge/vid/mac
  vnis?: Map<string, number>; // bridge/vid -> the VNI that carries it to remote VTEPs
}

/** Behind a port, or (remote set) behind a remote VTEP, port then naming the uplink. */
export interface FdbEntry { port: string; isStatic: boolean; remote?: string }

export type Outcome =
  | { cls: 'pass' } // not a port: untouched
  | { cls: 'local' } // to the host
  | { cls: 'drop'; reason: string }
  | { cls: 'flood'; members: string[] } // the other ports of the bridge and VLAN
  | { cls: 'forward'; out: string; tag: boolean }
  | { cls: 'encap'; remote: string; vni: number }; // to a MAC behind a remote VTEP, untagged in its VLAN's VNI

const macAt = (f: Buffer, off: number) => f.toString('hex', off, off + 6).replace(/(..)(?!$)/g, '$1:');
export const fdbKey = (bridge: number, vid: number, mac: string) => `${bridge}/${vid}/${mac}`;

/** How a frame leaves port `name` in VLAN vid: tagged, untagged, or not at all (undefined). */
export function egressTag(p: RefPort, vid: number): boolean | undefined {
  if (p.access) return vid === p.pvid ? false : undefined;
  const untagged = p.vlans.get(vid);
  return untagged === undefined ? undefined : !untagged;
}

/**
 * What the bridge does with frame f arriving on port `in`, and the FDB entry
 * it learns (applied to br.fdb). The rules: a tag (802.1Q only) selects the
 * VLAN, VLAN 0 or none the port's PVID; the port must be a member; the source
 * must be a unicast, non-zero MAC and is learned (unless it is the bridge's own); multicast floods, a known
 * destination forwards (unless behind the ingress port, or its port is not in
 * the VLAN), the bridge's own MAC goes to the host, the rest floods.
 */
export function bridgeRef(br: RefSwitch, inName: string, f: Buffer, hook: 'xdp' | 'tc'): Outcome & { learned?: boolean } {
  const port = br.ports.get(inName);
  if (!port) return { cls: 'pass' };
  if (f.length < 14) return { cls: 'drop', reason: 'truncated-ethernet' };
  const tagged = f.readUInt16BE(12) === 0x8100;
  if (tagged && f.length < 18) return { cls: 'drop', reason: 'truncated-vlan' };
  const vid = (tagged ? f.readUInt16BE(14) & 0xfff : 0) || port.pvid;
  if (!vid) return { cls: 'drop', reason: 'vlan-untagged-refused' };
  if ((tagged || !port.access) && !port.vlans.has(vid)) return { cls: 'drop', reason: 'vlan-ingress-denied' };
  const dst = macAt(f, 0);
  const src = macAt(f, 6);
  if (f[6] & 1 || src === '00:00:00:00:00:00') return { cls: 'drop', reason: 'invalid-source-mac' };
  let learned = false;
  if (port.learning && src !== br.macs.get(port.bridge)) { // never the bridge's own MAC
    const k = fdbKey(port.bridge, vid, src);
    const e = br.fdb.get(k);
    if (!e || (!e.isStatic && (e.port !== inName || e.remote))) {
      br.fdb.set(k, { port: inName, isStatic: false });
      learned = true;
    }
  }
  // tc pops a tag it finds in the bytes (a test run puts it there, not in the skb) before anything leaves;
  // the kernel's pop also pulls the next tag of a stack, and fails on a cut one
  const cutStack = hook === 'tc' && tagged && f.length < 22 && [0x8100, 0x88a8].includes(f.readUInt16BE(16));
  const flood = (): Outcome => cutStack ? { cls: 'drop', reason: 'vlan-tag-op-failed' } : ({
    cls: 'flood',
    members: [...br.ports].filter(([n, p]) => n !== inName && p.bridge === port.bridge && egressTag(p, vid) !== undefined).map(([n]) => n),
  });
  if (f[0] & 1) return { ...flood(), learned };
  const e = br.fdb.get(fdbKey(port.bridge, vid, dst));
  if (e) {
    if (e.port === inName && !e.remote) return { cls: 'drop', reason: 'same-port', learned };
    if (e.remote) {
      const vni = br.vnis?.get(`${port.bridge}/${vid}`);
      if (vni === undefined) return { cls: 'drop', reason: 'vxlan-unknown-vni', learned };
      if (cutStack) return { cls: 'drop', reason: 'vlan-tag-op-failed', learned };
      return { cls: 'encap', remote: e.remote, vni, learned };
    }
    const out = br.ports.get(e.port);
    const tag = out && egressTag(out, vid);
    if (tag === undefined) return { cls: 'drop', reason: 'vlan-egress-denied', learned };
    if (cutStack) return { cls: 'drop', reason: 'vlan-tag-op-failed', learned };
    return { cls: 'forward', out: e.port, tag, learned };
  }
  if (dst === br.macs.get(port.bridge)) return { cls: 'local', learned };
  return { ...flood(), learned };
}

/** The frame as it leaves with (tag) or without its VLAN's 802.1Q tag: XDP edits the bytes. */
export function retagged(f: Buffer, vid: number, tag: boolean): Buffer {
  const tagged = f.readUInt16BE(12) === 0x8100;
  if (tagged && tag) {
    const b = Buffer.from(f);
    b.writeUInt16BE((b.readUInt16BE(14) & 0xf000) | vid, 14);
    return b;
  }
  if (tagged) return Buffer.concat([f.subarray(0, 12), f.subarray(16)]);
  if (!tag) return f;
  const t = Buffer.alloc(4);
  t.writeUInt16BE(0x8100, 0);
  t.writeUInt16BE(vid, 2);
  return Buffer.concat([f.subarray(0, 12), t, f.subarray(12)]);
}
