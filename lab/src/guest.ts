/**
 * The runtime of a guest bundle (esbuild bundles it with the test's entry): runs named steps
 * one after another and prints each outcome as a protocol line, then `done`. Runs in dom0
 * (args from the MOAT_ARGS environment variable) and in domUs (args from the kernel command
 * line, `moat.argz=<base64url of deflated JSON>`, since a domU gets nothing else from its
 * creator and Xen passes a PV guest at most 1023 bytes of command line).
 */
import { existsSync, readFileSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
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

/** The arguments the lab gave this guest. Throws when they are there but unreadable. */
export function guestArgs(): Record<string, unknown> {
  const fromEnv = process.env.MOAT_ARGS;
  if (fromEnv) return JSON.parse(fromEnv) as Record<string, unknown>;
  if (!existsSync('/proc/cmdline')) return {};
  const cmdline = readFileSync('/proc/cmdline', 'utf8');
  const match = /(?:^|\s)moat\.argz=([A-Za-z0-9_-]+)/.exec(cmdline);
  if (!match?.[1]) return {};
  try {
    const json = inflateRawSync(Buffer.from(match[1], 'base64url')).toString('utf8');
    return JSON.parse(json) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`cannot read moat.argz from /proc/cmdline: ${(error as Error).message}`);
  }
}

export function guestLog(text: string): void {
  emit({ kind: 'log', text });
}

/** Runs the steps in order; a failing step is reported and the next one still runs. */
export async function guestMain(steps: Record<string, GuestStep>): Promise<void> {
  let args: Record<string, unknown>;
  try {
    args = guestArgs();
  } catch (error) {
    // Running the steps without their arguments would report results nobody asked for.
    emit({ kind: 'result', name: 'arguments', ok: false, ms: 0, error: (error as Error).message });
    emit({ kind: 'done', ok: false, results: 1 });
    return exitWhenWritten(1);
  }
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
  // poller, a mapping), or a domU would wait for its node forever.
  return exitWhenWritten(ok ? 0 : 1);
}

/** How long a guest waits for its last lines to be taken before it exits anyway. */
const FLUSH_LIMIT_MS = 60_000;

/**
 * Exits once everything written to stdout has left the process. A domU's console is a tty,
 * written synchronously, but dom0's agent runs bundles with node's `stdio: 'pipe'`, which is a
 * socket pair: node writes to it asynchronously, and `process.exit` with a line still queued
 * cut `./moat view`'s 700 kB screenshot lines at the socket buffer's ~210 kB (and lost `done`).
 * Writes complete in order, so an empty write's callback runs after every earlier line.
 */
function exitWhenWritten(code: number): Promise<void> {
  return new Promise(() => {
    setTimeout(() => process.exit(code), FLUSH_LIMIT_MS).unref();
    process.stdout.write('', () => process.exit(code));
  });
}
