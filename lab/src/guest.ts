/**
 * The runtime of a guest bundle (esbuild bundles it with the test's entry): runs named steps
 * one after another and prints each outcome as a protocol line, then `done`. Runs in dom0
 * (args from the MOAT_ARGS environment variable) and in domUs (args from the kernel command
 * line, `moat.args=<base64url JSON>`, since a domU gets nothing else from its creator).
 */
import { existsSync, readFileSync } from 'node:fs';
import { encodeMessage, type GuestMessage, type GuestResult } from './protocol.ts';

// A domU image built with the addon carries it at /app on its disk (mounted on /mnt); dom0's
// agent sets MOAT_XEN_ADDON itself. @moat/xen reads the variable when it first loads the addon.
const DOMU_ADDON = '/mnt/app/moat_xen.node';
if (!process.env.MOAT_XEN_ADDON && existsSync(DOMU_ADDON)) process.env.MOAT_XEN_ADDON = DOMU_ADDON;

export type GuestStep = (args: Record<string, unknown>) => unknown | Promise<unknown>;

function emit(message: GuestMessage): void {
  // One write per line: the console is shared with the kernel and init.
  process.stdout.write(`${encodeMessage(message)}\n`);
}

/** The arguments the lab gave this guest. */
export function guestArgs(): Record<string, unknown> {
  const fromEnv = process.env.MOAT_ARGS;
  if (fromEnv) return JSON.parse(fromEnv) as Record<string, unknown>;
  try {
    const cmdline = readFileSync('/proc/cmdline', 'utf8');
    const match = /(?:^|\s)moat\.args=([A-Za-z0-9_-]+)/.exec(cmdline);
    if (match?.[1])
      return JSON.parse(Buffer.from(match[1], 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch (error) {
    emit({ kind: 'log', text: `cannot read args from /proc/cmdline: ${(error as Error).message}` });
  }
  return {};
}

export function guestLog(text: string): void {
  emit({ kind: 'log', text });
}

/** Runs the steps in order; a failing step is reported and the next one still runs. */
export async function guestMain(steps: Record<string, GuestStep>): Promise<void> {
  const args = guestArgs();
  const results: GuestResult[] = [];
  for (const [name, step] of Object.entries(steps)) {
    const start = performance.now();
    let result: GuestResult;
    try {
      const data = await step(args);
      result = { name, ok: true, ms: Math.round(performance.now() - start), data };
    } catch (error) {
      const e = error instanceof Error ? error : new Error(String(error));
      result = { name, ok: false, ms: Math.round(performance.now() - start), error: e.stack ?? e.message };
    }
    results.push(result);
    emit({ kind: 'result', ...result });
  }
  const ok = results.every((r) => r.ok);
  emit({ kind: 'done', ok, results: results.length });
  // A guest is a one-shot program: end it even if a step left handles open (an event channel
  // poller, a mapping), or a domU would wait for its node forever. stdout to a tty or a pipe
  // is written synchronously on Linux, so nothing emitted above is lost.
  process.exit(ok ? 0 : 1);
}
