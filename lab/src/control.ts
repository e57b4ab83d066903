/**
 * The host <-> dom0 agent channel (a virtio-serial port): one JSON object per line. The host
 * sends commands with an id; the agent answers with `line` events (output of what the command
 * started) and one `exit` event per command.
 */

export type AgentCommand =
  /** Run a bundle from the share with dom0's node (args as MOAT_ARGS). */
  | { id: number; op: 'run'; bundle: string; args: Record<string, unknown>; timeoutMs: number }
  /** `xl create -F` a domU from this config; console lines follow until the domain is gone. */
  | { id: number; op: 'create'; name: string; config: string }
  /** Run a program in dom0 (never a shell) and report its output lines. */
  | { id: number; op: 'exec'; argv: string[]; timeoutMs: number }
  | { id: number; op: 'poweroff' };

export type AgentEvent =
  | { kind: 'ready'; uptimeMs: number }
  | { kind: 'line'; id: number; stream: 'stdout' | 'stderr' | 'console' | 'xl'; text: string }
  | { kind: 'exit'; id: number; code: number | null; signal: string | null; timedOut?: boolean }
  | { kind: 'error'; id: number; message: string };

/** Longest control line accepted: bounds what a confused peer can make us buffer. */
export const MAX_CONTROL_LINE = 4 << 20;

/** Splits a byte stream into lines, bounding the partial line. */
export class LineSplitter {
  private partial = '';
  constructor(
    private readonly onLine: (line: string) => void,
    private readonly maxLine = MAX_CONTROL_LINE,
  ) {}

  push(chunk: string): void {
    const text = this.partial + chunk;
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    if (this.partial.length > this.maxLine) {
      this.onLine(this.partial);
      this.partial = '';
    }
    for (const line of lines) this.onLine(line.replace(/\r$/, ''));
  }

  flush(): void {
    if (this.partial) this.onLine(this.partial);
    this.partial = '';
  }
}
