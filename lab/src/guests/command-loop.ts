/**
 * The command loop of the lab's long-running domUs (the Linux guests, the netif guest): dom0
 * writes `/local/domain/<domid>/data/moat-cmd/<seq>` (JSON) with `xenstore-write`
 * (topology.ts), the guest watches the directory with @moat/xenstore over /dev/xen/xenbus,
 * removes each command before answering and prints a result line named `cmd <seq>`. Chosen
 * over the console (input switching) and over booting a domU per probe (minutes under
 * emulation). A domU may read keys dom0 creates under its `data/` (they take the parent's owner).
 */
import { openXenbusDevice } from '@moat/xen';
import { xenstoreOverXenbus } from '@moat/xenstore';
import { encodeMessage } from '../protocol.ts';

const emit = (line: string) => process.stdout.write(`${line}\n`);

/**
 * Runs each command dom0 writes, in order, one at a time; never returns once the watch is set.
 * `dir` replaces the domain's own `data/moat-cmd` (a dom0 bundle: one directory per process).
 */
export async function serveXenstoreCommands(
  execute: (command: unknown) => Promise<unknown>,
  options: { dir?: string } = {},
): Promise<void> {
  const xs = xenstoreOverXenbus(openXenbusDevice());
  const dir = options.dir ?? `/local/domain/${(await xs.readString('domid')).trim()}/data/moat-cmd`;
  const done = new Set<number>();
  let busy = false;
  let again = false;
  const drain = async () => {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      do {
        again = false;
        let names: string[] = [];
        try {
          names = await xs.directory(dir);
        } catch {
          names = [];
        }
        const seqs = names
          .map(Number)
          .filter((n) => Number.isInteger(n) && !done.has(n))
          .sort((a, b) => a - b);
        for (const seq of seqs) {
          done.add(seq);
          const start = performance.now();
          const name = `cmd ${seq}`;
          try {
            const text = await xs.readString(`${dir}/${seq}`);
            // Removed before the result goes out, so the host never counts a spent command.
            await xs.rm(`${dir}/${seq}`).catch(() => undefined);
            const data = await execute(JSON.parse(text));
            emit(
              encodeMessage({
                kind: 'result',
                name,
                ok: true,
                ms: Math.round(performance.now() - start),
                data,
              }),
            );
          } catch (error) {
            const e = error as Error;
            emit(
              encodeMessage({
                kind: 'result',
                name,
                ok: false,
                ms: Math.round(performance.now() - start),
                error: e.stack ?? e.message,
              }),
            );
          }
        }
      } while (again);
    } finally {
      busy = false;
    }
  };
  await xs.watch(dir, { onEvent: () => void drain() });
}
