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
  /** How it ended, in words (a domU: its shutdown reason and xl's exit); empty while running. */
  readonly ending: string;
  /** What Xen's own console said about this domU (a triple fault, its early output). */
  readonly hypervisorLines: readonly string[];
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
  private hypervisor: readonly string[] = [];
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

  /** Xen's console lines about this guest, given by the lab when a domU ends. */
  protected setHypervisorLines(lines: readonly string[]): void {
    this.hypervisor = lines;
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** The lines seen since the mark `from` (a `lineCount`), as far as they are still kept. */
  linesFrom(from: number): string[] {
    return this.lines.slice(Math.max(0, from - this.droppedLines));
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
          `ended (${this.exit.detail}) without reporting "${name}"; ${describeOutput(this.snapshot())}`,
        );
      }
      return undefined;
    });
  }

  /** How many lines the guest printed so far (dropped ones included): `after` for consoleLine. */
  get lineCount(): number {
    return this.droppedLines + this.lines.length;
  }

  /**
   * Waits for a console line matching `pattern` (for VMs that log rather than report results, like
   * sys-moat); fails if the guest ends without printing one. Returns the first matching line
   * among those printed after the first `after` (lineCount before the action awaited).
   */
  consoleLine(pattern: RegExp, options: { timeoutMs?: number; after?: number } = {}): Promise<string> {
    const after = options.after ?? 0;
    return this.waitUntil(`a console line matching ${pattern}`, options.timeoutMs ?? 600_000, () => {
      const from = Math.max(0, after - this.droppedLines);
      const found = this.lines.slice(from).find((line) => pattern.test(line));
      if (found !== undefined) return found;
      if (this.exit) {
        throw new LabError(
          this.guest,
          `ended (${this.exit.detail}) without printing ${pattern}; ${describeOutput(this.snapshot())}`,
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
      ending: this.exit?.detail ?? '',
      hypervisorLines: this.hypervisor,
      lines: this.droppedLines
        ? [`(${this.droppedLines} earlier lines dropped)`, ...this.lines]
        : [...this.lines],
      ms: Math.round(this.exit ? this.endMs : performance.now() - this.start),
    };
  }
}

/** Kernel lines that say why a guest died (Linux's panic, oops and BUG headlines, the OOM killer). */
const KERNEL_HEADLINE =
  /Kernel panic|BUG:|Oops|general protection fault|Out of memory|Attempted to kill init/;

/** Lines the lab prefixes to what xl printed about a domU (the rest is the guest's console). */
const XL_PREFIX = 'xl: ';

/**
 * A guest's own output for a failure message: the tail of its console (a domU: xenconsoled's
 * log, so kernel messages, init's lines and node's stderr) apart from xl's lines, and what Xen
 * printed about the domain.
 */
export function describeOutput(run: GuestRun, consoleLines = 30): string {
  const own = run.lines.filter((line) => !line.startsWith(XL_PREFIX));
  const xl = run.lines.filter((line) => line.startsWith(XL_PREFIX));
  // A panic's headline comes before its 40-odd lines of registers and trace: name it apart.
  const headlines = own.slice(0, -consoleLines).filter((line) => KERNEL_HEADLINE.test(line));
  const parts = [
    own.length > 0
      ? `its output, last ${Math.min(consoleLines, own.length)} of ${own.length} lines:\n${own.slice(-consoleLines).join('\n')}`
      : 'its output: nothing (not one line reached its console)',
  ];
  if (headlines.length > 0) parts.unshift(`kernel errors before that:\n${headlines.slice(-5).join('\n')}`);
  if (xl.length > 0) parts.push(`xl:\n${xl.slice(-10).join('\n')}`);
  if (run.hypervisorLines.length > 0)
    parts.push(`Xen about this domain:\n${run.hypervisorLines.slice(-40).join('\n')}`);
  return parts.join('\n');
}

/** Throws unless the run printed `done` and every result is ok; the message says what failed. */
export function expectGuestOk(run: GuestRun): GuestRun {
  if (!run.done) {
    throw new LabError(
      run.guest,
      `never reported done (${run.ending || `exit code ${run.exitCode}`}); ${describeOutput(run)}`,
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
