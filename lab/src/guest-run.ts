import { LabError, LabTimeout } from './errors.ts';
import { type GuestResult, parseLine } from './protocol.ts';

/** What a guest (a dom0 bundle or a domU) did, as far as its own output says. */
export interface GuestRun {
  readonly guest: string;
  readonly results: readonly GuestResult[];
  /** Whether the guest printed `done` (it ran to its end). */
  readonly done: boolean;
  readonly ok: boolean;
  /** Exit code of node (dom0) or of `xl create -F` (domU). */
  readonly exitCode: number | null;
  /** Every line it printed (console for a domU), protocol lines included. */
  readonly lines: readonly string[];
  readonly ms: number;
}

/** Keeps at most this many lines per guest; older ones are dropped (and counted). */
const MAX_LINES = 20_000;

/**
 * The host's view of one guest: collects its lines, parses the protocol lines, and lets
 * callers wait for a named result or for the end. It is created by the lab, fed by the
 * control channel, and never turns silence into success.
 */
export class GuestHandle {
  private readonly lines: string[] = [];
  private droppedLines = 0;
  private readonly results: GuestResult[] = [];
  private doneSeen: { ok: boolean } | undefined;
  private exit: { code: number | null; detail: string } | undefined;
  private readonly waiters = new Set<() => void>();
  private readonly start = performance.now();
  private endMs = 0;
  readonly badLines: string[] = [];

  constructor(
    readonly guest: string,
    private readonly onTimeout: () => void = () => {},
  ) {}

  /** Fed by the lab with every line of the guest's output. */
  line(text: string): void {
    if (this.lines.length >= MAX_LINES) {
      this.lines.shift();
      this.droppedLines++;
    }
    this.lines.push(text);
    const parsed = parseLine(text);
    if (parsed.kind === 'bad') this.badLines.push(`${parsed.reason}: ${text.slice(0, 200)}`);
    if (parsed.kind === 'message') {
      const m = parsed.message;
      if (m.kind === 'result') {
        const { kind: _kind, ...result } = m;
        this.results.push(result);
      } else if (m.kind === 'done') this.doneSeen = { ok: m.ok };
    }
    this.wake();
  }

  /** Fed by the lab when the guest's process or domain is gone. */
  exited(code: number | null, detail: string): void {
    this.exit = { code, detail };
    this.endMs = performance.now() - this.start;
    this.wake();
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** The last lines, for error messages. */
  tail(n = 25): string {
    return this.lines.slice(-n).join('\n');
  }

  private waitUntil<T>(what: string, timeoutMs: number, check: () => T | undefined): Promise<T> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter = () => {
        let value: T | undefined;
        try {
          value = check();
        } catch (error) {
          this.waiters.delete(waiter);
          clearTimeout(timer);
          reject(error);
          return;
        }
        if (value === undefined) return;
        this.waiters.delete(waiter);
        clearTimeout(timer);
        resolve(value);
      };
      timer = setTimeout(() => {
        this.waiters.delete(waiter);
        this.onTimeout();
        reject(
          new LabTimeout(`${this.guest}: ${what}`, timeoutMs, { lastLines: this.tail() }, this.tail(15)),
        );
      }, timeoutMs);
      this.waiters.add(waiter);
      waiter();
    });
  }

  /** Waits for the guest's own result `name`; fails if the guest ends without printing it. */
  result(name: string, options: { timeoutMs?: number } = {}): Promise<GuestResult> {
    return this.waitUntil(`result "${name}"`, options.timeoutMs ?? 600_000, () => {
      const found = this.results.find((r) => r.name === name);
      if (found) return found;
      if (this.exit) {
        throw new LabError(
          this.guest,
          `ended (${this.exit.detail}) without reporting "${name}"; last lines:\n${this.tail()}`,
        );
      }
      return undefined;
    });
  }

  /** Waits for the end and returns what the guest reported; `done` false if it never said so. */
  finished(options: { timeoutMs?: number } = {}): Promise<GuestRun> {
    return this.waitUntil('end of the run', options.timeoutMs ?? 600_000, () =>
      this.exit ? this.snapshot() : undefined,
    );
  }

  snapshot(): GuestRun {
    return {
      guest: this.guest,
      results: [...this.results],
      done: this.doneSeen !== undefined,
      ok: this.doneSeen?.ok === true && this.results.every((r) => r.ok),
      exitCode: this.exit?.code ?? null,
      lines: this.droppedLines
        ? [`(${this.droppedLines} earlier lines dropped)`, ...this.lines]
        : [...this.lines],
      ms: Math.round(this.exit ? this.endMs : performance.now() - this.start),
    };
  }
}

/** Throws unless the run printed `done` and every result is ok; the message says what failed. */
export function expectGuestOk(run: GuestRun): GuestRun {
  if (!run.done) {
    throw new LabError(
      run.guest,
      `never reported done (exit code ${run.exitCode}); last lines:\n${run.lines.slice(-25).join('\n')}`,
    );
  }
  const failed = run.results.filter((r) => !r.ok);
  if (failed.length > 0 || !run.ok) {
    throw new LabError(
      run.guest,
      `failed steps: ${failed.map((r) => `${r.name}: ${r.error ?? '?'}`).join('; ') || '(done said not ok)'}`,
    );
  }
  return run;
}
