/**
 * A log line per peer event, at most `burst` lines per `intervalMs`: a hostile client that
 * breaks the protocol a million times costs a million counter increments, not a million
 * lines. Suppressed lines are counted and reported with the next line that gets through.
 */
import type { NetifLog } from './device.ts';

export const defaultLog: NetifLog = (line) => {
  process.stderr.write(`${line}\n`);
};

export class RateLimitedLog {
  private windowStart = -Infinity;
  private inWindow = 0;
  /** Lines not written since the last one that was. */
  suppressed = 0;

  constructor(
    private readonly sink: NetifLog,
    private readonly burst = 5,
    private readonly intervalMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  log(line: string): void {
    const t = this.now();
    if (t - this.windowStart >= this.intervalMs) {
      this.windowStart = t;
      this.inWindow = 0;
    }
    if (this.inWindow >= this.burst) {
      this.suppressed++;
      return;
    }
    this.inWindow++;
    const note = this.suppressed > 0 ? ` (${this.suppressed} similar lines suppressed)` : '';
    this.suppressed = 0;
    this.sink(line + note);
  }
}
