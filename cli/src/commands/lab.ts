import { readFileSync } from 'node:fs';
import {
  LabError,
  parseScenario,
  runScenario,
  runSmoke,
  SCENARIO_FIREWALLS,
  type ScenarioFirewall,
  type StepReport,
} from '@moat/lab';
import type { Command } from 'commander';
import { CheckFailed, ExitCode, SetupProblem } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';
import { missingDebianPackages } from '../system.ts';

/** What the lab needs on the host (the `lab` test phase installs them). */
export const labDebianPackages = ['qemu-system-x86', 'squashfs-tools', 'gcc', 'libc6-dev'] as const;

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** One row of the human-readable table of `moat lab run`. */
function stepRow(r: StepReport): string {
  const expect = r.expect ? `expect ${r.expect}` : '';
  const detail = r.detail as { why?: string; error?: string; differs?: { why: string } } | undefined;
  // A row where the Linux reference differs by design says why (the scenario's `why`).
  const why =
    detail?.why ?? detail?.error ?? (detail?.differs ? `differs: ${detail.differs.why}` : undefined);
  return `${r.ok ? 'ok  ' : 'FAIL'} ${r.step.padEnd(7)} ${r.what.padEnd(40)} ${r.result.padEnd(9)} ${expect.padEnd(14)} ${seconds(r.ms).padStart(7)}${why ? `  ${why}` : ''}`;
}

/** `moat lab smoke`: boot Xen in QEMU, run node in dom0, a PV and a PVH domU, and say how long each took. */
export const labCommand: CommandModule = {
  register(_program: Command, ctx: CliContext) {
    ctx.lab
      .command('smoke')
      .description('boot the lab; run our JS in dom0, a PV and a PVH domU; check /dev/xen and the results')
      .option('--console', 'print Xen and dom0 console lines as they come')
      .option(
        '--firewall <kind>',
        `run with this firewall instead of the file's "firewall" field (${SCENARIO_FIREWALLS.join(', ')})`,
      )
      .action(
        handler(async (reporter, cmd) => {
          const missing = missingDebianPackages(labDebianPackages);
          if (missing.length > 0) {
            reporter.log(
              `missing Debian packages: ${missing.join(' ')} (./moat test --only lab installs them)`,
            );
          }
          const showConsole = Boolean(cmd.opts<{ console?: boolean }>().console);
          const progress = reporter.progress('lab smoke', 5);
          progress.update(1, 'building images');
          let steps: Awaited<ReturnType<typeof runSmoke>>;
          try {
            steps = await runSmoke({
              onStep: (step, index, total) => {
                reporter.log(`${step.name}: ${step.detail} (${seconds(step.ms)})`);
                if (index < total) progress.update(index + 1, `after ${step.name}`);
              },
              ...(showConsole ? { onConsoleLine: (line: string) => reporter.log(`console | ${line}`) } : {}),
            });
          } catch (error) {
            if (error instanceof LabError)
              throw new CheckFailed(error.message, { step: error.step, ...error.detail });
            throw error;
          }
          const totalMs = steps.reduce((sum, s) => sum + s.ms, 0);
          progress.done(`all ${steps.length} steps ok`);
          reporter.result('lab smoke', {
            steps: steps.map((s) => `${s.name}: ${seconds(s.ms)}`).join(', '),
            details: steps.map((s) => `${s.name}: ${s.detail}`),
            total: seconds(totalMs),
            figures: Object.fromEntries(steps.map((s) => [s.name, s.ms])),
          });
          return ExitCode.ok;
        }),
      );

    ctx.lab
      .command('run')
      .description('run a lab scenario file (format version 1, README "Lab scenarios") on real Xen in QEMU')
      .argument('<file>', 'scenario JSON, e.g. test/scenarios/direct-upstream.json')
      .option('--console', 'print Xen and dom0 console lines as they come')
      .option(
        '--firewall <kind>',
        `run with this firewall instead of the file's "firewall" field (${SCENARIO_FIREWALLS.join(', ')})`,
      )
      .action(
        handler(async (reporter, cmd) => {
          const file = String(cmd.args[0]);
          let text: string;
          try {
            text = readFileSync(file, 'utf8');
          } catch (error) {
            throw new SetupProblem(`cannot read ${file}: ${(error as Error).message}`);
          }
          let scenario: ReturnType<typeof parseScenario>;
          try {
            scenario = parseScenario(text, file);
          } catch (error) {
            throw new SetupProblem((error as Error).message);
          }
          const opts = cmd.opts<{ console?: boolean; firewall?: string }>();
          const showConsole = Boolean(opts.console);
          const override = opts.firewall;
          if (override !== undefined && !(SCENARIO_FIREWALLS as readonly string[]).includes(override))
            throw new SetupProblem(
              `--firewall ${override}: not a firewall this lab knows (${SCENARIO_FIREWALLS.join(', ')})`,
            );
          const firewall = (override ?? scenario.firewall) as ScenarioFirewall;
          reporter.log(
            `scenario ${scenario.name}: booting the lab, the upstream, ${firewall === 'none' ? '' : `the ${firewall} firewall, `}and ${scenario.clients.length} client(s)`,
          );
          const run = await runScenario(scenario, {
            firewall,
            onStep: (r) => {
              if (reporter.json)
                reporter.result('step', {
                  step: r.step,
                  what: r.what,
                  result: r.result,
                  expect: r.expect ?? null,
                  ok: r.ok,
                  ms: r.ms,
                  detail: r.detail ?? null,
                });
              else {
                reporter.log(stepRow(r));
                const diagnostics = (r.detail as { diagnostics?: Record<string, string> } | undefined)
                  ?.diagnostics;
                for (const [where, text] of Object.entries(diagnostics ?? {}))
                  for (const line of `${where}:\n${text}`.split('\n')) reporter.log(`        | ${line}`);
              }
            },
            ...(showConsole ? { onConsoleLine: (line: string) => reporter.log(`console | ${line}`) } : {}),
          }).catch((error: unknown) => {
            if (error instanceof LabError)
              throw new CheckFailed(error.message, { step: error.step, ...error.detail });
            throw error;
          });
          const failed = run.reports.filter((r) => !r.ok).length;
          reporter.result(`scenario ${run.scenario}`, {
            ok: run.ok,
            steps: run.reports.length,
            failed,
            ...run.timings,
          });
          return run.ok ? ExitCode.ok : ExitCode.checkFailed;
        }),
      );
  },
};
