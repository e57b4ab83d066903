/**
 * `qubes.SetMonitorLayout`: dom0 (qubes-gui-daemon's screen-layout handler) sends one line
 * per monitor, `W H X Y` optionally followed by the physical size in mm `W_mm H_mm`
 * (QubesOS/qubes-gui-agent-linux @ bc845212eb42 `appvm-scripts/usrbin/qubes-set-monitor-layout`).
 */

export interface Monitor {
  x: number;
  y: number;
  width: number;
  height: number;
  /** Physical size when dom0 knows it. */
  widthMm?: number;
  heightMm?: number;
}

export const MAX_MONITORS = 32;
/** Bigger than any layout of MAX_MONITORS lines; the service reads no more than this. */
export const MAX_LAYOUT_BYTES = 4096;
const MAX_EXTENT = 65535;

export type MonitorLayoutResult = { ok: true; monitors: Monitor[] } | { ok: false; reason: string };

export function parseMonitorLayout(text: string): MonitorLayoutResult {
  if (text.length > MAX_LAYOUT_BYTES) return { ok: false, reason: `layout of ${text.length} bytes` };
  const monitors: Monitor[] = [];
  for (const [index, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    const fields = line.trim().split(/[ \t]+/);
    if (fields.length !== 4 && fields.length !== 6)
      return {
        ok: false,
        reason: `line ${index + 1}: ${fields.length} fields, expected W H X Y [W_mm H_mm]`,
      };
    const numbers = fields.map((f) => (/^-?[0-9]{1,6}$/.test(f) ? Number(f) : Number.NaN));
    const [width, height, x, y, widthMm, heightMm] = numbers as [
      number,
      number,
      number,
      number,
      number?,
      number?,
    ];
    if (numbers.some((n) => Number.isNaN(n))) return { ok: false, reason: `line ${index + 1}: not integers` };
    if (width < 1 || height < 1 || width > MAX_EXTENT || height > MAX_EXTENT)
      return { ok: false, reason: `line ${index + 1}: size ${width}x${height}` };
    if (Math.abs(x) > MAX_EXTENT || Math.abs(y) > MAX_EXTENT)
      return { ok: false, reason: `line ${index + 1}: position ${x},${y}` };
    const monitor: Monitor = { x, y, width, height };
    if (widthMm !== undefined && heightMm !== undefined) {
      if (widthMm < 0 || heightMm < 0) return { ok: false, reason: `line ${index + 1}: negative size in mm` };
      monitor.widthMm = widthMm;
      monitor.heightMm = heightMm;
    }
    monitors.push(monitor);
    if (monitors.length > MAX_MONITORS) return { ok: false, reason: `more than ${MAX_MONITORS} monitors` };
  }
  if (monitors.length === 0) return { ok: false, reason: 'no monitors' };
  return { ok: true, monitors };
}
