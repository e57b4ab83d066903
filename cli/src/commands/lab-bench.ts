import { LabError } from '@moat/lab';
import {
  FIREWALL_BENCH_NOTE,
  type FirewallKind,
  formatFirewallBench,
  NETIF_AIM,
  NETIF_DIRECTIONS,
  netifReportRows,
  runFirewallBench,
  runGuiBench,
  runNetifBench,
  runPenaltyBench,
  runVchanBench,
} from '@moat/lab/bench';
import type { Command } from 'commander';
import { CheckFailed, ExitCode, SetupProblem } from '../errors.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';

export function labFailure(error: unknown): never {
  if (error instanceof LabError) throw new CheckFailed(error.message, { step: error.step, ...error.detail });
  throw error;
}

/**
 * Benches that need the lab (real Xen in QEMU): `bench penalty` (how much slower the same C
 * and JS run in a domU than here) and `bench vchan` (our vchan against the C
 * vchan-socket-proxy in the same lab run, with that run's penalty beside it) and `bench gui`
 * (full-window updates through our GUI agent against dom0's grant copy of the same bytes) and
 * `bench netif` (iperf3 through our netif domU beside a Linux bridge domU, with the penalty) and
 * `bench firewall` (sys-moat beside the Linux reference firewall, with the penalty).
 */
export const labBenchCommand: CommandModule = {
  register(_program: Command, ctx: CliContext) {
    ctx.bench
      .command('penalty')
      .description('emulation penalty: the same C and JS workload on this machine and in a lab domU')
      .option('--pvh', 'run the domU as PVH instead of PV')
      .action(
        handler(async (reporter, cmd) => {
          const progress = reporter.progress('bench penalty', 1);
          progress.update(1, 'host runs, then a lab domU');
          const f = await runPenaltyBench({ type: cmd.opts<{ pvh?: boolean }>().pvh ? 'pvh' : 'pv' }).catch(
            labFailure,
          );
          progress.done('measured');
          reporter.result('emulation penalty (guest / host, fastest run)', {
            iterations: f.iterations,
            hostCMs: f.host.cMs,
            hostJsMs: f.host.jsMs,
            guestCMs: f.guest.cMs,
            guestJsMs: f.guest.jsMs,
            slowdownC: f.slowdown.c,
            slowdownJs: f.slowdown.js,
            jsOverCHost: f.jsOverC.host,
            jsOverCGuest: f.jsOverC.guest,
            hashesAgree: f.hashesAgree,
          });
          return f.hashesAgree ? ExitCode.ok : ExitCode.checkFailed;
        }),
      );

    ctx.bench
      .command('gui')
      .description(
        'GUI agent in a lab domU: 800x600 full-window updates per second to the lab daemon in dom0, beside grant-copying the same bytes',
      )
      .action(
        handler(async (reporter) => {
          const progress = reporter.progress('bench gui', 3);
          let step = 0;
          const f = await runGuiBench({ onStep: (text) => progress.update(Math.min(++step, 3), text) }).catch(
            labFailure,
          );
          progress.done('measured');
          reporter.result('GUI full-window updates in the lab (emulated; read the ratio)', {
            ...f,
            domUDrawMs: `rgba ${f.domUDrawMs.rgba}, bgrx ${f.domUDrawMs.bgrx}`,
          });
          return ExitCode.ok;
        }),
      );

    ctx.bench
      .command('vchan')
      .description(
        'our vchan vs the C vchan-socket-proxy, domU <-> dom0 in one lab run (same ring sizes, same C peer in dom0)',
      )
      .option(
        '--mib <n>',
        "MiB per measured transfer (the C server's 1-2 KiB rings make this slow under emulation)",
        '1',
      )
      .option('--rounds <n>', 'rounds of alternating C / ours (ratio: median of the per-round ratios)', '3')
      .option('--no-penalty', 'skip the emulation-penalty measurement')
      .action(
        handler(async (reporter, cmd) => {
          const o = cmd.opts<{ mib: string; rounds: string; penalty: boolean }>();
          const mib = Number(o.mib);
          if (!Number.isInteger(mib) || mib < 1 || mib > 1024)
            throw new SetupProblem('--mib must be an integer from 1 to 1024');
          const rounds = Number(o.rounds);
          if (!Number.isInteger(rounds) || rounds < 1 || rounds > 5)
            throw new SetupProblem('--rounds must be an integer from 1 to 5');
          const progress = reporter.progress('bench vchan', 4);
          let step = 0;
          const f = await runVchanBench({
            mib,
            rounds,
            penalty: o.penalty,
            onStep: (text) => progress.update(Math.min(++step, 4), text),
          }).catch(labFailure);
          progress.done('measured');
          const ratios = [f.domUToDom0.ratio, f.dom0ToDomU.ratio];
          reporter.result(
            'vchan throughput in the lab (MB/s, best round; ratio = median of ours / C per round)',
            {
              mib,
              rings: f.rings,
              domUToDom0C: f.domUToDom0.c,
              domUToDom0Ours: f.domUToDom0.ours,
              domUToDom0Ratio: f.domUToDom0.ratio,
              dom0ToDomUC: f.dom0ToDomU.c,
              dom0ToDomUOurs: f.dom0ToDomU.ours,
              dom0ToDomURatio: f.dom0ToDomU.ratio,
              domUToDom0RoundRatios: f.domUToDom0.roundRatios.join(' '),
              dom0ToDomURoundRatios: f.dom0ToDomU.roundRatios.join(' '),
              domUToDom0BestRatio: f.domUToDom0.bestRatio,
              dom0ToDomUBestRatio: f.dom0ToDomU.bestRatio,
              domUToDom0OursUnbuffered: f.domUToDom0.oursUnbuffered,
              domUToDom0UnbufferedRatio: f.domUToDom0.unbufferedRatio,
              dom0ToDomUOursUnbuffered: f.dom0ToDomU.oursUnbuffered,
              dom0ToDomUUnbufferedRatio: f.dom0ToDomU.unbufferedRatio,
              rounds: f.rounds,
              target: 'ratio >= 0.8',
              meetsTarget: ratios.every((r) => r >= 0.8),
              ...(f.penalty
                ? {
                    penaltySlowdownC: f.penalty.slowdown.c,
                    penaltySlowdownJs: f.penalty.slowdown.js,
                    penaltyHashesAgree: f.penalty.hashesAgree,
                  }
                : { penalty: 'not measured (--no-penalty); see ./moat bench penalty' }),
            },
          );
          return ExitCode.ok;
        }),
      );

    ctx.bench
      .command('netif')
      .description(
        'iperf3 TCP client -> middle domU -> Linux netvm in one lab run: our netif domU beside a Linux bridge domU, with the emulation penalty',
      )
      .option('--seconds <n>', 'seconds of each iperf3 run', '10')
      .option(
        '--rounds <n>',
        'rounds alternating the Linux path and ours (ratio: median of per-round ratios)',
        '3',
      )
      .action(
        handler(async (reporter, cmd) => {
          const o = cmd.opts<{ seconds: string; rounds: string }>();
          const seconds = Number(o.seconds);
          if (!Number.isInteger(seconds) || seconds < 1 || seconds > 120)
            throw new SetupProblem('--seconds must be an integer from 1 to 120');
          const rounds = Number(o.rounds);
          if (!Number.isInteger(rounds) || rounds < 1 || rounds > 9)
            throw new SetupProblem('--rounds must be an integer from 1 to 9');
          const steps = 5 + rounds * NETIF_DIRECTIONS.length;
          const progress = reporter.progress('bench netif', steps);
          let step = 0;
          const f = await runNetifBench({
            seconds,
            rounds,
            onStep: (text) => progress.update(Math.min(++step, steps), text),
            onLog: (text) => reporter.log(`bench netif: ${text}`),
          }).catch(labFailure);
          progress.done('measured');
          for (const row of netifReportRows(f, f.rounds, f.penalty))
            reporter.result(
              `netif TCP throughput ${row.direction}, ${f.note} (iperf3 Mbit/s, best round; ratio: median of ours / Linux bridge per round; corrected: ratio x JS slowdown / C slowdown; direct: a Linux client on the netvm itself, the ceiling of any middle)`,
              row,
            );
          reporter.result('netif in the lab: both directions', {
            correctedRatio: f.correctedRatio,
            aim: `corrected ratio >= ${NETIF_AIM} both ways`,
            meetsAim: f.meetsAim,
            meetsAimAgainstDirect: f.meetsAimAgainstDirect,
            oursUpFrames: f.oursCounts.up.frames,
            oursUpGsoFrames: f.oursCounts.up.gsoFrames,
            oursUpLargest: f.oursCounts.up.largest,
            oursUpDropped: f.oursCounts.up.dropped,
            oursDownFrames: f.oursCounts.down.frames,
            oursDownGsoFrames: f.oursCounts.down.gsoFrames,
            oursDownLargest: f.oursCounts.down.largest,
            oursDownDropped: f.oursCounts.down.dropped,
          });
          const p = f.profiled;
          const perFrame = (n: number | undefined, frames: number | undefined) =>
            frames ? Number(((n ?? 0) / frames).toFixed(2)) : 0;
          reporter.result('our domU during one more iperf3 (V8 profiler on; counters over that run)', {
            mbitPerS: p.mbitPerS,
            retransmits: p.tcp.retransmits ?? 'n/a',
            rttMs: p.tcp.rttMs ?? 'n/a',
            profiledMs: p.profile.ms,
            idleShare: p.profile.idle,
            gcShare: p.profile.gc,
            programShare: p.profile.program,
            clientFrames: p.netback.rxFrames ?? 0,
            clientEventsInPerFrame: perFrame(p.netback.eventsIn, p.netback.rxFrames),
            clientEventsOutPerFrame: perFrame(p.netback.eventsOut, p.netback.rxFrames),
            clientCopyCallsPerFrame: perFrame(p.netback.copyBatches, p.netback.rxFrames),
            upstreamEventsInPerFrame: perFrame(p.netfront.eventsIn, p.netfront.txFrames),
            upstreamEventsOutPerFrame: perFrame(p.netfront.eventsOut, p.netfront.txFrames),
            busiest: p.profile.top
              .slice(0, 12)
              .map((t) => `${t.fn} ${t.ms}ms ${Math.round(t.busyShare * 100)}%`)
              .join('; '),
          });
          for (const failure of f.failures) reporter.log(`iperf3 failed: ${failure}`);
          return f.penalty.hashesAgree && f.failures.length === 0 ? ExitCode.ok : ExitCode.checkFailed;
        }),
      );

    ctx.bench
      .command('firewall')
      .description(
        'sys-moat beside the Linux reference firewall in one lab run: iperf3 both ways, ping, xl create to first forwarded packet, memory with 20 clients; raw and corrected by the emulation penalty of the same run',
      )
      .option('--seconds <n>', 'seconds of each iperf3 run', '10')
      .option(
        '--rounds <n>',
        'measured iperf3 rounds each way after one warm-up run (figure: their median)',
        '3',
      )
      .option('--clients <n>', 'client vifs plugged for the memory figure', '20')
      .option('--client-domains <n>', 'Linux client domUs carrying those vifs', '2')
      .option('--only <kind>', 'measure one firewall: moat or linux (no ratios then)')
      .action(
        handler(async (reporter, cmd) => {
          const o = cmd.opts<{
            seconds: string;
            rounds: string;
            clients: string;
            clientDomains: string;
            only?: string;
          }>();
          const seconds = Number(o.seconds);
          if (!Number.isInteger(seconds) || seconds < 1 || seconds > 120)
            throw new SetupProblem('--seconds must be an integer from 1 to 120');
          const rounds = Number(o.rounds);
          if (!Number.isInteger(rounds) || rounds < 1 || rounds > 9)
            throw new SetupProblem('--rounds must be an integer from 1 to 9');
          const clients = Number(o.clients);
          if (!Number.isInteger(clients) || clients < 1 || clients > 40)
            throw new SetupProblem('--clients must be an integer from 1 to 40');
          const clientDomains = Number(o.clientDomains);
          if (!Number.isInteger(clientDomains) || clientDomains < 1 || clientDomains > 4)
            throw new SetupProblem('--client-domains must be an integer from 1 to 4');
          if (o.only !== undefined && o.only !== 'moat' && o.only !== 'linux')
            throw new SetupProblem('--only must be moat or linux');
          const steps = 20 + 2 * rounds;
          const progress = reporter.progress('bench firewall', steps);
          let step = 0;
          const f = await runFirewallBench({
            seconds,
            rounds,
            clients,
            clientDomains,
            ...(o.only ? { only: o.only as FirewallKind } : {}),
            onStep: (text) => progress.update(Math.min(++step, steps), text),
          }).catch(labFailure);
          progress.done('measured');
          const table = formatFirewallBench(f);
          // --json: the figures as they are (bench-firewall-report.ts), the printed table beside them
          if (reporter.json) reporter.result(`bench firewall: ${FIREWALL_BENCH_NOTE}`, { ...f, table });
          else reporter.result(table.join('\n'), {});
          // A side that failed is a failed check: the report says which and why.
          return f.moat.ok && (f.linux.ok || o.only === 'moat') && f.penalty.hashesAgree
            ? ExitCode.ok
            : ExitCode.checkFailed;
        }),
      );
  },
};
