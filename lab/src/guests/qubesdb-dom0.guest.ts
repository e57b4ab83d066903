/**
 * dom0's QubesDB for the lab's VMs (a dom0 bundle, started by topology.ts `serveQubesDb`):
 * one @moat/qubesdb QubesDbDaemon per VM, as qubesd runs one `qubesdb-daemon <domid> <name>`
 * per VM, holding the keys qubesd writes (qubesdb-keys.ts). Run-time changes (new firewall
 * rules) come through dom0's xenstore: the host writes `<args.dir>/<seq>` (JSON) and
 * the result line `update <seq>` says it was applied.
 */
import { QubesDbDaemon } from '@moat/qubesdb/dom0';
import { xenVchanTransport } from '@moat/vchan';
import { openNativeDomain } from '@moat/xen';
import { connectXenstoreSocket } from '@moat/xenstore';
import { guestArgs } from '../guest.ts';
import { encodeMessage } from '../protocol.ts';
import type { QubesDbServeArgs, QubesDbStop, QubesDbUpdate } from '../topology-wire.ts';

const emit = (line: string) => process.stdout.write(`${line}\n`);

async function main(): Promise<void> {
  const args = guestArgs() as unknown as QubesDbServeArgs;
  const start = performance.now();
  const domain = openNativeDomain();
  const daemons = new Map<number, QubesDbDaemon>();
  for (const vm of args.vms) {
    const daemon = new QubesDbDaemon({
      vmDomain: vm.domid,
      vmName: vm.name,
      transport: xenVchanTransport(domain),
      initial: vm.entries,
      log: (line) => emit(`qubesdb-daemon(${vm.name}): ${line}`),
    });
    await daemon.start();
    daemons.set(vm.domid, daemon);
  }
  const xs = await connectXenstoreSocket();
  const dir = args.dir;
  await xs.write(dir, '');
  const done = new Set<string>();
  let busy = Promise.resolve();
  const apply = async () => {
    for (const seq of (await xs.directory(dir)).filter((s) => !done.has(s))) {
      done.add(seq);
      const t = performance.now();
      try {
        const update = JSON.parse(await xs.readString(`${dir}/${seq}`)) as QubesDbUpdate | QubesDbStop;
        await xs.rm(`${dir}/${seq}`);
        if ('stop' in update) {
          emit(encodeMessage({ kind: 'result', name: `update ${seq}`, ok: true, ms: 0 }));
          await xs.rm(dir).catch(() => undefined);
          process.exit(0);
        }
        const daemon = daemons.get(update.domid);
        if (!daemon) throw new Error(`no QubesDB for domain ${update.domid}`);
        for (const path of update.rm ?? []) daemon.rm(path);
        if (update.commit) daemon.commit(update.commit.base, update.commit.entries);
        for (const [path, value] of update.write ?? []) daemon.write(path, value);
        emit(
          encodeMessage({
            kind: 'result',
            name: `update ${seq}`,
            ok: true,
            ms: Math.round(performance.now() - t),
          }),
        );
      } catch (error) {
        const e = error as Error;
        emit(encodeMessage({ kind: 'result', name: `update ${seq}`, ok: false, ms: 0, error: e.message }));
      }
    }
  };
  await xs.watch(dir, {
    onEvent: () => {
      busy = busy.then(apply).catch((e: Error) => {
        emit(`qubesdb: ${e.message}`);
      });
    },
  });
  emit(
    encodeMessage({
      kind: 'result',
      name: 'serving',
      ok: true,
      ms: Math.round(performance.now() - start),
      data: { vms: args.vms.map((v) => v.name) },
    }),
  );
}

main().catch((error: Error) => {
  emit(
    encodeMessage({ kind: 'result', name: 'serving', ok: false, ms: 0, error: error.stack ?? error.message }),
  );
  emit(encodeMessage({ kind: 'done', ok: false, results: 1 }));
  process.exit(1);
});
