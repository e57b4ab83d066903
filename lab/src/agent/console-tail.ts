/**
 * Follows one domU's console log, as xenconsoled writes it (`--log=guest`: every byte it reads
 * from the guest's console ring is appended to `guest-<name>.log` at once, by name, O_APPEND).
 * Part of dom0's agent; kept apart so the host tests can drive it on plain files.
 */
import { closeSync, existsSync, openSync, readSync, statSync, unlinkSync } from 'node:fs';
import { LineSplitter } from '../control.ts';

export interface ConsoleTailOptions {
  /** How often the log is read while the domain runs. */
  readonly intervalMs?: number;
  /** drain(): the log must stay unchanged this long when no end marker comes. */
  readonly settleMs?: number;
  /** drain(): gives up after this long whatever the log does. */
  readonly maxDrainMs?: number;
}

/**
 * Starts following `path` for a domain about to be created. xenconsoled names the log after the
 * domain and appends to it, so a log left by an earlier domain of the same name would hand that
 * domain's lines (its `done` among them) to this one: the old log is removed first.
 */
export function followNewConsoleLog(
  path: string,
  onLine: (text: string) => void,
  options: ConsoleTailOptions = {},
): ConsoleTail {
  if (existsSync(path)) unlinkSync(path);
  return new ConsoleTail(path, onLine, options);
}

export class ConsoleTail {
  private readonly splitter: LineSplitter;
  private readonly buffer = Buffer.alloc(64 * 1024);
  private offset = 0;
  private readonly timer: NodeJS.Timeout;
  private stopped = false;
  private readonly lines: string[] = [];

  constructor(
    private readonly path: string,
    onLine: (text: string) => void,
    private readonly options: ConsoleTailOptions = {},
  ) {
    this.splitter = new LineSplitter((line) => {
      // The last few lines only, for drain()'s end marker.
      this.lines.push(line);
      if (this.lines.length > 8) this.lines.shift();
      onLine(line);
    });
    this.timer = setInterval(() => this.poll(), options.intervalMs ?? 200);
  }

  /** Reads what the log gained since the last read; returns the number of new bytes. */
  poll(): number {
    if (!existsSync(this.path)) return 0;
    const fd = openSync(this.path, 'r');
    let total = 0;
    try {
      // A log shorter than what we read is a new file under the same name: start it over.
      if (statSync(this.path).size < this.offset) this.offset = 0;
      for (;;) {
        const n = readSync(fd, this.buffer, 0, this.buffer.length, this.offset);
        if (n <= 0) break;
        this.offset += n;
        total += n;
        this.splitter.push(this.buffer.toString('utf8', 0, n));
      }
    } finally {
      closeSync(fd);
    }
    return total;
  }

  /**
   * Reads on while xenconsoled may still be writing what it took from the guest's ring: until a
   * line matches `endMarker` (the guest's own last words), or the log has been quiet for
   * `settleMs`, or `maxDrainMs` passed. Call it while the shut-down domain still exists:
   * xenconsoled stops reading a ring once the domain is dying, so what it has not read by the
   * destroy is lost.
   */
  async drain(endMarker?: RegExp): Promise<void> {
    const settleMs = this.options.settleMs ?? 1_000;
    const deadline = performance.now() + (this.options.maxDrainMs ?? 10_000);
    let quietSince = performance.now();
    for (;;) {
      if (this.poll() > 0) quietSince = performance.now();
      if (endMarker && this.lines.some((line) => endMarker.test(line))) return;
      const now = performance.now();
      if (now - quietSince >= settleMs || now >= deadline) return;
      await new Promise((resolve) => setTimeout(resolve, Math.min(100, settleMs)));
    }
  }

  /** Ends the tail: a last read, then the partial last line (a guest may die mid-line). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    this.poll();
    this.splitter.flush();
  }
}
