import { startAgent } from '@moat/qrexec';
import { measureQrexec } from '@moat/qrexec/bench';
import { QrexecDaemon } from '@moat/qrexec/dom0';
import { registerTestServices } from '@moat/qrexec/run';
import { DEFAULT_VCHAN_SOCKET_DIR, socketVchanTransport } from '@moat/vchan/socket';
import type { Command } from 'commander';
import { CheckFailed, ExitCode, SetupProblem } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';

function domainOption(value: string, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 0x7fef)
    throw new SetupProblem(`${name} must be a domain id, got ${value}`);
  return n;
}

/**
 * `moat qrexec agent|call` (qrexec over unix-socket vchan on a laptop; either end may be Qubes'
 * C programs built against qubes-core-vchan-socket) and `moat bench qrexec`.
 */
export const qrexecCommand: CommandModule = {
  register(program: Command, ctx: CliContext) {
    ctx.bench
      .command('qrexec')
      .description(
        'dom0 → VM qrexec call latency and stdin throughput over unix-socket vchan vs a bare socket',
      )
      .option('--calls <n>', 'calls to time', '200')
      .option('--mib <n>', 'MiB of stdin for the throughput run', '64')
      .action(
        handler(async (reporter, cmd) => {
          const opts = cmd.opts<{ calls: string; mib: string }>();
          const calls = Number(opts.calls);
          const mebibytes = Number(opts.mib);
          if (!Number.isInteger(calls) || calls < 10)
            throw new SetupProblem('--calls must be an integer >= 10');
          if (!Number.isInteger(mebibytes) || mebibytes < 1)
            throw new SetupProblem('--mib must be an integer >= 1');
          const r = await measureQrexec({ calls, mebibytes });
          reporter.result('qrexec call latency (ms)', {
            calls: r.calls,
            median: Number(r.callMedianMs.toFixed(3)),
            p90: Number(r.callP90Ms.toFixed(3)),
            bareSocketRoundTripMedian: Number(r.bareRoundTripMedianMs.toFixed(3)),
            ratioToBareSocket: Number((r.callMedianMs / r.bareRoundTripMedianMs).toFixed(1)),
          });
          reporter.result('qrexec stdin throughput (MiB/s)', {
            mebibytes,
            qrexec: Number(r.qrexecMiBps.toFixed(1)),
            bareSocket: Number(r.bareSocketMiBps.toFixed(1)),
            ratioToBareSocket: Number((r.qrexecMiBps / r.bareSocketMiBps).toFixed(3)),
          });
          return ExitCode.ok;
        }),
      );

    const qrexec = program.command('qrexec').description('qrexec over unix-socket vchan (host testing)');
    qrexec
      .command('agent')
      .description('run our VM agent (built-in services) for domain <domid> until interrupted')
      .requiredOption('--domain <domid>', "the VM's domain id (VCHAN_DOMAIN)")
      .option('--socket-dir <dir>', 'vchan socket directory (VCHAN_SOCKET_DIR)', DEFAULT_VCHAN_SOCKET_DIR)
      .option('--test-services', 'also moat.Sha256, moat.Echo, moat.Exit+N')
      .action(
        handler(async (reporter, cmd) => {
          const opts = cmd.opts<{ domain: string; socketDir: string; testServices?: boolean }>();
          const { agent } = await startAgent({
            transport: socketVchanTransport({
              directory: opts.socketDir,
              localDomain: domainOption(opts.domain, '--domain'),
            }),
            log: (level, message) => reporter.log(`${level}: ${message}`),
          });
          if (opts.testServices) registerTestServices(agent);
          reporter.log(`listening on port 512; services: ${agent.serviceNames().join(' ')}`);
          await new Promise<void>((resolve) => {
            process.once('SIGINT', () => resolve());
            process.once('SIGTERM', () => resolve());
          });
          await agent.stop();
          reporter.result('qrexec agent', { ...agent.stats });
          return ExitCode.ok;
        }),
      );
    qrexec
      .command('call')
      .description("call <service>[+arg] in a VM as dom0 (connects to the VM's agent, like qrexec-client -d)")
      .argument('<service>', 'service name, optionally +argument')
      .requiredOption('--vm <domid>', "the VM's domain id")
      .option('--socket-dir <dir>', 'vchan socket directory (VCHAN_SOCKET_DIR)', DEFAULT_VCHAN_SOCKET_DIR)
      .option('--stdin <file>', 'file to send as stdin')
      .option('--user <user>', 'user part of the command line', 'user')
      .action(
        handler(async (reporter, cmd, descriptor: string) => {
          const opts = cmd.opts<{ vm: string; socketDir: string; stdin?: string; user: string }>();
          const daemon = await QrexecDaemon.connect({
            transport: socketVchanTransport({ directory: opts.socketDir, localDomain: 0 }),
            domain: domainOption(opts.vm, '--vm'),
            name: `domain-${opts.vm}`,
            startupTimeoutMs: 10_000,
            log: (level, message) => {
              if (level !== 'info') reporter.log(`${level}: ${message}`);
            },
          });
          try {
            const plus = descriptor.indexOf('+');
            const result = await daemon.call(plus < 0 ? descriptor : descriptor.slice(0, plus), {
              ...(plus < 0 ? {} : { argument: descriptor.slice(plus + 1) }),
              ...(opts.stdin ? { stdin: { path: opts.stdin } } : {}),
              user: opts.user,
            });
            const figures = {
              exitCode: result.exitCode,
              stdoutBytes: result.stdout.length,
              stdout: result.stdout.subarray(0, 4096).toString('latin1'),
              stderr: result.stderr.subarray(0, 4096).toString('latin1'),
            };
            if (result.exitCode !== 0)
              throw new CheckFailed(`${descriptor} exited ${result.exitCode}`, figures);
            reporter.result(`qrexec call ${descriptor}`, figures);
            return ExitCode.ok;
          } finally {
            await daemon.close();
          }
        }),
      );
  },
};
