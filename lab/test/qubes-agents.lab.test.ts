import { SCENARIO_EXPECTED_EVENTS, SCENARIO_INITIAL } from '@moat/qubesdb/dom0';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bootLab,
  buildGuestAddon,
  expectGuestOk,
  type GuestHandle,
  type GuestResult,
  guestImage,
  type Lab,
  patternSha256,
} from '../src/index.ts';
import { domainId } from '../src/vchan-lab.ts';
import { QUBES_AGENTS, type QubesAgentsArgs } from './guests/qubes-plan.ts';

/**
 * Our QubesDB and qrexec agents in a PV domU (one node process, @moat/vchan over the native
 * addon) against our dom0 daemons in dom0, on real Xen 4.17. One lab boot and one domU for the
 * file; the two sides run their steps in order (guests/qubes-agents.guest.ts) and each test
 * awaits the steps it checks. Latencies are measured and printed, never asserted.
 */
const GUEST = new URL('./guests/qubes-agents.guest.ts', import.meta.url).pathname;
const WAIT = { timeoutMs: 600_000 };
const MiB = 1024 * 1024;

let lab: Lab;
let vm: GuestHandle;
let dom0: GuestHandle;
const figures: Record<string, unknown> = {};

beforeAll(async () => {
  const addon = await buildGuestAddon();
  const built = await guestImage(GUEST, { addon });
  // A busy shared machine (other labs running) can take minutes to boot dom0 under TCG.
  lab = await bootLab({ addon, bootTimeoutMs: 600_000 });
  figures.labBootMs = lab.timings.bootMs;
  vm = lab.createDomU(built.image, {
    type: 'pv',
    name: QUBES_AGENTS.vmName,
    memoryMb: 192,
    args: { role: 'vm' } satisfies QubesAgentsArgs,
  });
  const peer = await domainId(lab, QUBES_AGENTS.vmName);
  dom0 = lab.runInDom0(built.bundle, {
    args: { role: 'dom0', peer } satisfies QubesAgentsArgs,
    timeoutMs: 900_000,
  });
});

/** Protocol figures over the bare vchan's in the same run (emulated figures are read as ratios). */
function ratios(): Record<string, number> {
  const out: Record<string, number> = {};
  const qdb = figures.qubesdbRoundTripMs as { medianMs: number } | undefined;
  const bare = figures.bareVchanRoundTripMs as { medianMs: number } | undefined;
  const echo = figures.qrexecEchoCallMs as number | undefined;
  const bareEcho = figures.bareVchanEcho1MiBMs as number | undefined;
  if (qdb && bare) out.qubesdbRoundTripOverBareVchan = Number((qdb.medianMs / bare.medianMs).toFixed(2));
  if (echo && bareEcho) out.qrexecEchoOverBareVchan = Number((echo / bareEcho).toFixed(2));
  return out;
}

afterAll(async () => {
  figures.ratios = ratios();
  // One line with every figure of the run, for reports (the guests' result lines have them too).
  console.log(`qubes-agents lab figures: ${JSON.stringify(figures)}`);
  await lab?.shutdown();
});

async function data<T>(guest: GuestHandle, step: string): Promise<T> {
  const result: GuestResult = await guest.result(step, WAIT);
  if (!result.ok) throw new Error(`${guest.guest}: ${step} failed: ${result.error}`);
  return result.data as T;
}

interface CallReport {
  exitCode: number;
  stdoutBytes: number;
  stdoutSha256: string;
  stdoutText?: string;
  stderr: string;
  ms: number;
  stdinSha256?: string;
}

describe('our QubesDB and qrexec agents in a domU against our dom0 daemons on real Xen (lab)', () => {
  it('the domU synchronises QubesDB from our dom0 daemon and sees the initial keys', async () => {
    const up = await data<{ initial: Record<string, string>; syncMs: number; services: number }>(
      vm,
      'agents up',
    );
    expect(up.initial).toEqual(Object.fromEntries(SCENARIO_INITIAL));
    expect(up.services).toBeGreaterThan(3);
    const synced = await data<{ entries: number }>(dom0, 'qubesdb synchronised');
    expect(synced.entries).toBe(SCENARIO_INITIAL.length);
    figures.qubesdbSyncMs = up.syncMs;
  });

  it("the domU sees dom0's run-time writes and removals, in order, and answers every ping", async () => {
    const seen = await data<{ events: string[]; seqLeft: string[]; pongs: number; initialOk: boolean }>(
      vm,
      'qubesdb runtime changes',
    );
    // Writes /lab/seq/1..5, removal of /lab/seq/3, removal of the subtree /lab/seq/.
    expect(seen.events).toEqual(SCENARIO_EXPECTED_EVENTS);
    expect(seen.seqLeft).toEqual([]);
    expect(seen.initialOk).toBe(true);
    const driven = await data<{
      ok: boolean;
      failures: string[];
      roundTrip?: { samples: number; medianMs: number; p90Ms: number; maxMs: number };
    }>(dom0, 'qubesdb runtime changes');
    expect(driven.failures).toEqual([]);
    expect(driven.ok).toBe(true);
    expect(driven.roundTrip?.samples).toBe(QUBES_AGENTS.pings);
    // dom0 write -> VM watch -> VM write -> dom0 watch; one way is about half (no shared clock).
    const rt = driven.roundTrip;
    if (rt) {
      figures.qubesdbRoundTripMs = rt;
      figures.qubesdbOneWayEstimateMs = Number((rt.medianMs / 2).toFixed(2));
      console.log(
        `QubesDB dom0 write -> domU watch -> domU write -> dom0 watch over ${rt.samples} rounds: ` +
          `median ${rt.medianMs.toFixed(2)} ms, p90 ${rt.p90Ms.toFixed(2)} ms, max ${rt.maxMs.toFixed(2)} ms ` +
          `(one way about ${(rt.medianMs / 2).toFixed(2)} ms)`,
      );
    }
  });

  it('a bare vchan between the same domains echoes 1 MiB (the baseline for the figures)', async () => {
    const bare = await data<{
      roundTrip: { medianMs: number; samples: number };
      echoMs: number;
      bytes: number;
    }>(dom0, 'bare vchan baseline');
    expect(bare.roundTrip.samples).toBe(QUBES_AGENTS.pings);
    const echoed = await data<{ echoed: number }>(vm, 'bare vchan echo');
    expect(echoed.echoed).toBe(QUBES_AGENTS.pings + QUBES_AGENTS.stdinBytes);
    figures.bareVchanRoundTripMs = bare.roundTrip;
    figures.bareVchanEcho1MiBMs = bare.echoMs;
    console.log(
      `bare vchan (64 KiB rings): 1-byte round trip median ${bare.roundTrip.medianMs.toFixed(2)} ms, ` +
        `1 MiB echoed in ${bare.echoMs} ms`,
    );
  });

  it('dom0 calls a service in the domU with 1 MiB of stdin and gets stdout and the exit code back, checksummed', async () => {
    const expected = patternSha256(QUBES_AGENTS.stdinSeed, QUBES_AGENTS.stdinBytes);
    const connected = await data<{ version: number }>(dom0, 'qrexec connected');
    expect(connected.version).toBe(3);

    const hashed = await data<CallReport>(dom0, 'moat.Sha256 with 1 MiB of stdin');
    expect(hashed.stdinSha256).toBe(expected);
    expect(hashed).toMatchObject({ exitCode: 0, stdoutText: `${expected} ${MiB}\n`, stderr: '' });

    const echoed = await data<CallReport>(dom0, 'moat.Echo with 1 MiB of stdin');
    expect(echoed).toMatchObject({ exitCode: 0, stdoutBytes: MiB, stdoutSha256: expected, stderr: '' });

    const again = await data<CallReport>(dom0, 'moat.Sha256 with 1 MiB again');
    expect(again).toMatchObject({ exitCode: 0, stdoutText: `${expected} ${MiB}\n`, stderr: '' });

    const exited = await data<CallReport>(dom0, 'moat.Exit+7');
    expect(exited).toMatchObject({ exitCode: 7, stdoutBytes: 0 });

    figures.qrexecSha256CallMs = hashed.ms;
    figures.qrexecSha256WarmCallMs = again.ms;
    figures.qrexecEchoCallMs = echoed.ms;
    figures.qrexecExitCallMs = exited.ms;
    console.log(
      `qrexec 1 MiB stdin: moat.Sha256 ${hashed.ms} ms first, ${again.ms} ms again ` +
        `(${(1000 / again.ms).toFixed(2)} MiB/s), ` +
        `moat.Echo (1 MiB each way) ${echoed.ms} ms; moat.Exit+7 ${exited.ms} ms`,
    );
  });

  it("dom0 calls an unknown service and the agent refuses it with Qubes' exit code 127", async () => {
    const refused = await data<CallReport>(dom0, 'unknown service');
    expect(refused).toMatchObject({ exitCode: 127, stdoutBytes: 0 });
  });

  it('both sides run every step to the end, and the agent counted the calls and the refusal', async () => {
    const finished = expectGuestOk(await dom0.finished(WAIT));
    const served = expectGuestOk(await vm.finished(WAIT));
    expect(served.results.map((r) => r.name)).toEqual([
      'agents up',
      'qubesdb runtime changes',
      'bare vchan echo',
      'qrexec served',
    ]);
    const stats = served.results[3]?.data as { calls: number; refused: number; controlErrors: number };
    expect(stats).toMatchObject({ refused: 1, controlErrors: 0 });
    expect(stats.calls).toBe(4);
    expect(finished.results.at(-1)?.data).toEqual({ vm: stats });
  });
});
