import { connectQubesDb } from '@moat/qubesdb';
import { measureWatchLatency } from '@moat/qubesdb/bench';
import { QubesDbDaemon, serveLocalSocket } from '@moat/qubesdb/dom0';
import { DEFAULT_VCHAN_SOCKET_DIR, socketVchanTransport } from '@moat/vchan/socket';
import type { Command } from 'commander';
import { ExitCode, SetupProblem } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';

function domainOption(value: string, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 0x7fef)
    throw new SetupProblem(`${name} must be a domain id, got ${value}`);
  return n;
}

function untilInterrupted(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

/**
 * `moat bench qubesdb`, and `moat qubesdb serve|sync`: QubesDB on a laptop over the
 * vchan-socket transport (the same socket files Qubes' C tools use with
 * qubes-core-vchan-socket, so either end may be the C daemon).
 */
export const qubesdbCommand: CommandModule = {
  register(program: Command, ctx: CliContext) {
    ctx.bench
      .command('qubesdb')
      .description(
        'QubesDB write → watch delivery latency (dom0 daemon → VM replica over unix-socket vchan) vs a bare socket',
      )
      .option('--writes <n>', 'writes to time', '2000')
      .action(
        handler(async (reporter, cmd) => {
          const writes = Number(cmd.opts<{ writes: string }>().writes);
          if (!Number.isInteger(writes) || writes < 10)
            throw new SetupProblem('--writes must be an integer >= 10');
          const report = await measureWatchLatency({ writes });
          reporter.result('qubesdb write → watch latency (ms)', {
            writes,
            median: report.qubesdb.medianMs,
            p90: report.qubesdb.p90Ms,
            p99: report.qubesdb.p99Ms,
            max: report.qubesdb.maxMs,
            bareSocketMedian: report.rawSocket.medianMs,
            ratioToBareSocket: Number(report.medianRatio.toFixed(2)),
          });
          return ExitCode.ok;
        }),
      );

    const qubesdb = program.command('qubesdb').description('QubesDB over unix-socket vchan (host testing)');
    qubesdb
      .command('serve')
      .description(
        'run a dom0 QubesDB daemon for one VM until interrupted (like `qubesdb-daemon <vm> <name>`)',
      )
      .requiredOption('--vm <domid>', "the VM's domain id")
      .option('--socket-dir <dir>', 'vchan socket directory (VCHAN_SOCKET_DIR)', DEFAULT_VCHAN_SOCKET_DIR)
      .option('--set <path=value...>', 'initial entries')
      .option(
        '--local-socket <path>',
        'also serve the local client protocol here (qubesdb-read/-write, QubesDbLocalClient), e.g. /var/run/qubes/qubesdb.<vm>.sock',
      )
      .action(
        handler(async (reporter, cmd) => {
          const opts = cmd.opts<{ vm: string; socketDir: string; set?: string[]; localSocket?: string }>();
          const initial = (opts.set ?? []).map((entry): [string, string] => {
            const at = entry.indexOf('=');
            if (at < 1) throw new SetupProblem(`--set wants path=value, got ${entry}`);
            return [entry.slice(0, at), entry.slice(at + 1)];
          });
          const daemon = new QubesDbDaemon({
            vmDomain: domainOption(opts.vm, '--vm'),
            transport: socketVchanTransport({ directory: opts.socketDir, localDomain: 0 }),
            initial,
          });
          daemon.onEvent((event) =>
            reporter.log(`${event.kind}${'path' in event ? ` ${event.path}` : ''}`, {
              ...(event.kind === 'disconnected' && event.error ? { error: event.error.message } : {}),
            }),
          );
          await daemon.start();
          const local = opts.localSocket
            ? await serveLocalSocket(daemon, {
                path: opts.localSocket,
                readOnlyPath: opts.localSocket.replace(/\.sock$/, '.ro.sock'),
              })
            : undefined;
          await untilInterrupted();
          await local?.close();
          await daemon.stop();
          reporter.result('qubesdb daemon stopped', { entries: daemon.list().length, ...daemon.stats });
          return ExitCode.ok;
        }),
      );
    qubesdb
      .command('sync')
      .description('connect as a VM, print the synchronised database, and optionally follow a watch')
      .requiredOption('--domain <domid>', 'our (the VM) domain id (VCHAN_DOMAIN)')
      .option('--socket-dir <dir>', 'vchan socket directory (VCHAN_SOCKET_DIR)', DEFAULT_VCHAN_SOCKET_DIR)
      .option('--timeout <ms>', 'give up connecting after this long', '10000')
      .option('--watch <path>', 'then print changes under this path until interrupted')
      .action(
        handler(async (reporter, cmd) => {
          const opts = cmd.opts<{ domain: string; socketDir: string; timeout: string; watch?: string }>();
          const db = await connectQubesDb({
            transport: socketVchanTransport({
              directory: opts.socketDir,
              localDomain: domainOption(opts.domain, '--domain'),
            }),
            timeoutMs: Number(opts.timeout),
          });
          reporter.result('qubesdb', Object.fromEntries(db.multiread()));
          if (opts.watch) {
            const off = db.watch(opts.watch, (path) =>
              reporter.log(`${path} = ${db.read(path) ?? '(removed)'}`),
            );
            await untilInterrupted();
            off();
          }
          db.close();
          return ExitCode.ok;
        }),
      );
  },
};
