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
    process.exit(1);
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
  // poller, a mapping), or a domU would wait for its node forever. stdout to a tty or a pipe
  // is written synchronously on Linux, so nothing emitted above is lost.
  process.exit(ok ? 0 : 1);
}
