// Plain-text output helpers: aligned tables and human units.
import { formatVlanList } from '../dataplane/addr.js';

export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  // A loop, not Math.max(...column): spreading a full table's rows (131,072 FDB entries) overflows the stack.
  const widths = headers.map(() => 0);
  for (const r of cells) for (let i = 0; i < widths.length; i++) widths[i] = Math.max(widths[i], r[i]?.length ?? 0);
  return cells.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

const SI = ['', 'k', 'M', 'G', 'T'];
export function si(n: number, unit: string, digits = 2): string {
  let i = 0;
  while (Math.abs(n) >= 1000 && i < SI.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i ? n.toFixed(digits) : Math.round(n)} ${SI[i]}${unit}`;
}

/** Bytes in binary units, as the kernel counts memory: "512 B", "64.0 KiB", "2.0 MiB". */
export function ibytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
}

export function ago(d: Date, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - d.getTime()) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function json(v: unknown): string {
  return JSON.stringify(v, null, 2);
}

/** A port's VLANs for people: "1 untagged", "10,20,30-40 tagged", "1 untagged; 10,20 tagged". */
export function vlansText(p: { vlans: Array<{ vid: number; tagged: boolean }> }): string {
  const list = (tagged: boolean) => formatVlanList(p.vlans.filter((v) => v.tagged === tagged).map((v) => v.vid));
  return [[list(false), 'untagged'], [list(true), 'tagged']].filter(([l]) => l).map(([l, how]) => `${l} ${how}`).join('; ') || 'none';
}
