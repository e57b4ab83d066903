/**
 * The VM's wall clock. A moat VM does not set the kernel clock (no root tools, no
 * settimeofday from node); it keeps an offset that dom0 adjusts with qubes.SetDateTime, and
 * everything in the VM that needs wall time reads this `Clock` instead of `Date.now()`.
 */

export interface Clock {
  /** Milliseconds since the Unix epoch, UTC. */
  now(): number;
}

export class AdjustableClock implements Clock {
  private offset = 0;

  /** `source` is the underlying clock (the kernel's, or a fake in tests). */
  constructor(private readonly source: () => number = Date.now) {}

  now(): number {
    return this.source() + this.offset;
  }

  /** The correction currently applied to the underlying clock, in ms. */
  get offsetMs(): number {
    return this.offset;
  }

  /** Makes `now()` return `epochMs` at this moment. */
  set(epochMs: number): void {
    this.offset = epochMs - this.source();
  }
}

export type ParsedTimestamp = { ok: true; epochMs: number } | { ok: false; reason: string };

const TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[,.](\d{1,9}))?(Z|[+-]\d{2}(?::?\d{2})?)$/;

/**
 * Parses what dom0 sends to qubes.SetDateTime: one line in `date -u -Iseconds` form, e.g.
 * `2015-07-31T16:10:43+0000` (the Qubes docs) or `2024-05-01T10:00:00+00:00` (current date),
 * optionally with a `,nnnnnnnnn` fraction (`date -Ins`).
 */
export function parseTimestamp(line: string): ParsedTimestamp {
  const m = TIMESTAMP.exec(line.trim());
  if (!m) return { ok: false, reason: 'not an ISO 8601 timestamp' };
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const fields = [y, mo, d, h, mi, s].map(Number) as [number, number, number, number, number, number];
  const [year, month, day, hour, minute, second] = fields;
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return { ok: false, reason: 'field out of range' };
  }
  let ms = Date.UTC(year, month - 1, day, hour, minute, second);
  if (new Date(ms).getUTCDate() !== day) return { ok: false, reason: 'no such day' };
  if (frac) ms += Math.floor(Number(`0.${frac}`) * 1000);
  if (zone && zone !== 'Z') {
    const sign = zone.startsWith('-') ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const offsetMin = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4) || '0');
    ms -= sign * offsetMin * 60_000;
  }
  return { ok: true, epochMs: ms };
}

/** `date -u -Iseconds` (`2024-05-01T10:00:00+00:00`) or with `nanoseconds`, `date -u -Ins`. */
export function formatTimestamp(epochMs: number, nanoseconds: boolean): string {
  const iso = new Date(epochMs).toISOString(); // 2024-05-01T10:00:00.123Z
  const base = iso.slice(0, 19);
  if (!nanoseconds) return `${base}+00:00`;
  const ms = iso.slice(20, 23);
  return `${base},${ms}000000+00:00`;
}
