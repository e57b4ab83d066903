import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultSocketPath, SocketTransport, XenbusTransport } from '@moat/xenstore';
import { measureXenstoreRoundTrip } from '@moat/xenstore/bench';
import {
  type ConformanceTarget,
  conformanceSuite,
  hostileServerSuite,
  runCases,
} from '@moat/xenstore/conformance';
import { XenstoredSim } from '@moat/xenstore/sim';
import type { Command } from 'commander';
import { CheckFailed, ExitCode, SetupProblem } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';

interface ConformanceOptions {
  target: string;
  socket?: string;
  domid?: string;
  only?: string;
  timeout: string;
}

/**
 * `moat xenstore conformance`: the xenstore-js conformance ids against XenstoredSim (any
 * host), dom0's xenstored socket, or /dev/xen/xenbus in a domU; `moat xenstore hostile`: the
 * hostile-server suite.
 */
export const xenstoreCommand: CommandModule = {
  register(program: Command, ctx: CliContext) {
    ctx.bench
      .command('xenstore')
      .description(
        'xenstore-js read round trip against XenstoredSim over a unix socket vs a bare socket echo',
      )
      .option('--requests <n>', 'round trips to time', '2000')
      .action(
        handler(async (reporter, cmd) => {
          const requests = Number(cmd.opts<{ requests: string }>().requests);
          if (!Number.isInteger(requests) || requests < 10)
            throw new SetupProblem('--requests must be an integer >= 10');
          const r = await measureXenstoreRoundTrip({ requests });
          reporter.result('xenstore read round trip (µs)', { ...r });
          return ExitCode.ok;
        }),
      );
    const xenstore = program.command('xenstore').description('xenstore-js suites');
    xenstore
      .command('conformance')
      .description(
        'run the conformance cases against sim, the xenstored socket (dom0) or /dev/xen/xenbus (domU)',
      )
      .option(
        '--target <kind>',
        'sim-dom0 | sim-domu | sim-xenbus | sim-unix-socket | socket | xenbus',
        'sim-domu',
      )
      .option('--socket <path>', 'xenstored socket for --target socket', defaultSocketPath())
      .option('--domid <n>', 'own domain id for --target xenbus (default: read from xenstore)')
      .option('--only <ids>', 'comma-separated case ids')
      .option('--timeout <ms>', 'per-request timeout', '20000')
      .action(
        handler(async (reporter, cmd) => {
          const o = cmd.opts<ConformanceOptions>();
          const timeoutMs = Number(o.timeout);
          if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
            throw new SetupProblem('--timeout must be a positive integer');
          const cleanups: (() => void)[] = [];
          let target: ConformanceTarget;
          if (o.target.startsWith('sim')) {
            const sim = new XenstoredSim();
            sim.createDomain(3);
            if (o.target === 'sim-dom0')
              target = { connect: sim.transportFactory(0), domid: 0, privileged: true };
            else if (o.target === 'sim-domu')
              target = { connect: sim.transportFactory(3), domid: 3, privileged: false };
            else if (o.target === 'sim-xenbus')
              target = { connect: sim.xenbusTransportFactory(3), domid: 3, privileged: false };
            else if (o.target === 'sim-unix-socket') {
              const dir = mkdtempSync(join(tmpdir(), 'moat-xs-'));
              const path = join(dir, 'socket');
              const server = await sim.listen(path);
              cleanups.push(() => {
                server.close();
                rmSync(dir, { recursive: true, force: true });
              });
              target = {
                connect: () => SocketTransport.connect(path, { timeoutMs }),
                domid: 0,
                privileged: true,
              };
            } else throw new SetupProblem(`unknown --target ${o.target}`);
          } else if (o.target === 'socket') {
            const path = o.socket ?? defaultSocketPath();
            const probe = await SocketTransport.connect(path, { timeoutMs }).catch((error: Error) => {
              throw new SetupProblem(`cannot connect to xenstored at ${path}: ${error.message}`);
            });
            probe.close();
            target = {
              connect: () => SocketTransport.connect(path, { timeoutMs }),
              domid: 0,
              privileged: true,
            };
          } else if (o.target === 'xenbus') {
            const xen = await import('@moat/xen');
            const domid = o.domid !== undefined ? Number(o.domid) : xen.ownDomainId();
            target = {
              connect: async () => new XenbusTransport(xen.openXenbusDevice()),
              domid,
              privileged: domid === 0,
            };
          } else throw new SetupProblem(`unknown --target ${o.target}`);
          target.timeoutMs = timeoutMs;
          const suite = conformanceSuite(target);
          const only = o.only?.split(',').map((s) => s.trim());
          const progress = reporter.progress(
            `xenstore conformance (${o.target})`,
            only?.length ?? suite.length,
          );
          let n = 0;
          const results = await runCases(suite, {
            ...(only ? { only } : {}),
            onResult: (r) => {
              progress.update(++n, r.id);
              if (!r.ok) reporter.log(`FAIL ${r.id}: ${r.error}`);
            },
          }).finally(() => {
            for (const c of cleanups) c();
          });
          const failed = results.filter((r) => !r.ok);
          progress.done(`${results.length - failed.length} passed, ${failed.length} failed`);
          reporter.result(`xenstore conformance (${o.target})`, {
            passed: results.length - failed.length,
            failed: failed.length,
            failures: failed.map((r) => r.id),
            ...(reporter.json
              ? { results: results.map((r) => ({ ...r, ms: Math.round(r.ms * 10) / 10 })) }
              : {}),
          });
          if (failed.length > 0) throw new CheckFailed(`${failed.length} conformance case(s) failed`);
          return ExitCode.ok;
        }),
      );
    xenstore
      .command('hostile')
      .description('run the hostile-server suite (malformed replies from a fake server)')
      .action(
        handler(async (reporter) => {
          const results = await runCases(hostileServerSuite());
          const failed = results.filter((r) => !r.ok);
          reporter.result('xenstore hostile-server suite', {
            passed: results.length - failed.length,
            failed: failed.length,
            failures: failed.map((r) => `${r.id}: ${r.error}`),
          });
          if (failed.length > 0) throw new CheckFailed(`${failed.length} hostile-server case(s) failed`);
          return ExitCode.ok;
        }),
      );
  },
};
