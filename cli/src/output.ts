/**
 * How the CLI talks to people and to programs.
 *
 * Human mode writes readable lines to stderr (progress) and stdout (results).
 * JSON mode (`--json`) writes one JSON object per line to stdout, each an
 * `Envelope`; nothing else is written to stdout, so `jq` can consume it.
 */

export const ENVELOPE_VERSION = 1;

export type EnvelopeType = 'start' | 'progress' | 'log' | 'result' | 'error' | 'end';

/** One line of `--json` output. Documented in README.md ("Machine-readable output"). */
export interface Envelope {
  /** Envelope format version; bumped on incompatible change. */
  v: typeof ENVELOPE_VERSION;
  /** What this line is. */
  type: EnvelopeType;
  /** The command path, e.g. `bench vchan`. */
  cmd: string;
  /** Milliseconds since the command started. */
  t: number;
  /** Payload: free-form per type and command, always an object. */
  data: Record<string, unknown>;
}

export interface ProgressStep {
  /** Advance to step `index` of `total` (1-based) with a short description. */
  update(index: number, what: string): void;
  /** Mark the whole task finished. */
  done(summary?: string): void;
}

export interface Reporter {
  readonly json: boolean;
  /** A free-form informational line. */
  log(message: string, data?: Record<string, unknown>): void;
  /** A result object; in human mode printed as `title` plus key/value lines. */
  result(title: string, data: Record<string, unknown>): void;
  /** An error that ends the command. */
  error(message: string, data?: Record<string, unknown>): void;
  /** Progress of a long task: what, how far, elapsed. */
  progress(task: string, total: number): ProgressStep;
  /** Emits the `end` envelope with the exit code. */
  end(exitCode: number): void;
}

interface Sink {
  out(line: string): void;
  err(line: string): void;
  /** Whether stderr is an interactive terminal that can redraw a line. */
  tty: boolean;
}

const processSink: Sink = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  tty: Boolean(process.stderr.isTTY),
};

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

export function createReporter(
  cmd: string,
  json: boolean,
  sink: Sink = processSink,
  now = () => performance.now(),
): Reporter {
  const start = now();
  const emit = (type: EnvelopeType, data: Record<string, unknown>) => {
    const envelope: Envelope = { v: ENVELOPE_VERSION, type, cmd, t: Math.round(now() - start), data };
    sink.out(JSON.stringify(envelope));
  };
  if (json) emit('start', { argv: process.argv.slice(2) });

  return {
    json,
    log(message, data = {}) {
      if (json) emit('log', { message, ...data });
      else sink.err(message);
    },
    result(title, data) {
      if (json) {
        emit('result', { title, ...data });
        return;
      }
      sink.out(title);
      for (const [key, value] of Object.entries(data)) {
        sink.out(`  ${key}: ${typeof value === 'string' ? value : JSON.stringify(value)}`);
      }
    },
    error(message, data = {}) {
      if (json) emit('error', { message, ...data });
      else sink.err(`moat: ${message}`);
    },
    progress(task, total) {
      const taskStart = now();
      let lastLength = 0;
      const line = (text: string, final: boolean) => {
        if (sink.tty && !json) {
          // Redraw one line on a terminal; pad to erase the previous, longer text.
          const padded = text.padEnd(lastLength);
          lastLength = text.length;
          process.stderr.write(`\r${padded}${final ? '\n' : ''}`);
        } else if (!json) {
          sink.err(text);
        }
      };
      return {
        update(index, what) {
          const elapsed = seconds(now() - taskStart);
          if (json) emit('progress', { task, index, total, what, elapsedMs: Math.round(now() - taskStart) });
          line(`[${task} ${index}/${total}] ${what} (${elapsed})`, false);
        },
        done(summary = 'done') {
          const elapsedMs = Math.round(now() - taskStart);
          if (json) emit('progress', { task, index: total, total, what: summary, elapsedMs, done: true });
          line(`[${task}] ${summary} (${seconds(elapsedMs)})`, true);
        },
      };
    },
    end(exitCode) {
      if (json) emit('end', { exitCode });
    },
  };
}
