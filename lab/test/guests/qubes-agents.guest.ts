/**
 * The guest of qubes-agents.lab.test.ts: one bundle, two roles (args.role).
 *
 * - vm (domU): our VM agents in one node process, as a moat VM runs them: the QubesDB replica
 *   (@moat/qubesdb) and the qrexec agent (@moat/qrexec, built-ins plus the test services),
 *   both over @moat/vchan on the native addon.
 * - dom0: our dom0 peers: the QubesDB daemon holding the VM's database (initial keys, then
 *   run-time writes and removals) and the qrexec daemon calling services in the VM.
 *
 * The two sides meet only through Xen (vchan ports 111 and 512) and QubesDB keys: the VM
 * half of the scenario (qubesdb/src/scenario.ts) answers dom0's writes, and dom0 tells the VM
 * it is done with qrexec by writing `/lab/qrexec-done`.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { startAgent } from '@moat/qrexec';
import { QrexecDaemon } from '@moat/qrexec/dom0';
import { registerTestServices } from '@moat/qrexec/run';
import { connectQubesDb, type QubesDb } from '@moat/qubesdb';
import { QubesDbDaemon, runDom0Half, runVmHalf, SCENARIO_INITIAL } from '@moat/qubesdb/dom0';
import { type VchanTransport, xenVchanTransport } from '@moat/vchan';
import { socketVchanTransport } from '@moat/vchan/socket';
import { openNativeDomain } from '@moat/xen';
import { within } from '@moat/xen/conformance';
import { type GuestStep, guestArgs, guestLog, guestMain } from '../../src/guest.ts';
import { patternBlock } from '../../src/vchan-roles.ts';
import { QUBES_AGENTS, type QubesAgentsArgs } from './qubes-plan.ts';

// A domU image carries the addon at /app on its disk (mounted on /mnt); dom0's agent sets the
// variable itself. Set here too, so this guest does not depend on which module loads first.
const DOMU_ADDON = '/mnt/app/moat_xen.node';
if (!process.env.MOAT_XEN_ADDON && existsSync(DOMU_ADDON)) process.env.MOAT_XEN_ADDON = DOMU_ADDON;

const args = guestArgs() as unknown as QubesAgentsArgs;
const log = (text: string) => guestLog(text);

/**
 * Real Xen; or, for a dry run of both roles on a host, vchan-socket in MOAT_DRY_RUN_SOCKET_DIR
 * (our domain id from MOAT_DRY_RUN_DOMAIN), so a change to this guest can be tried in seconds.
 */
function transport(): { domid: number; transport: VchanTransport } {
  const directory = process.env.MOAT_DRY_RUN_SOCKET_DIR;
  if (directory) {
    const domid = Number(process.env.MOAT_DRY_RUN_DOMAIN ?? 0);
    return { domid, transport: socketVchanTransport({ directory, localDomain: domid }) };
  }
  const domain = openNativeDomain();
  return { domid: domain.domid, transport: xenVchanTransport(domain) };
}

function waitForKey(db: QubesDb | QubesDbDaemon, path: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const value = db.read(path);
      if (value === undefined) return false;
      clearTimeout(timer);
      off();
      resolve(value);
      return true;
    };
    const timer = setTimeout(() => {
      off();
      reject(new Error(`${path} was not written within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = db.watch(path, check);
    check();
  });
}

function summarise(samples: number[]): { samples: number; medianMs: number; p90Ms: number; maxMs: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) =>
    Number((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(3));
  return { samples: sorted.length, medianMs: at(0.5), p90Ms: at(0.9), maxMs: at(1) };
}

/**
 * The baseline measured in the same run: a bare vchan between the same two domains (dom0
 * server, 64 KiB rings as qrexec's data channels), the VM echoing every byte. dom0 times
 * 1-byte round trips (against QubesDB's) and 1 MiB echoed (against moat.Echo).
 */
async function bareVchanBaseline(vchan: VchanTransport, peer: number, bulk: Uint8Array) {
  const stream = await vchan.listen({
    peer,
    port: QUBES_AGENTS.baselinePort,
    readMin: QUBES_AGENTS.baselineRing,
    writeMin: QUBES_AGENTS.baselineRing,
  });
  const failed = new Promise<never>((_, reject) => stream.once('error', reject));
  failed.catch(() => {}); // raced in every wait below
  const wait = <T>(p: Promise<T>, what: string) =>
    within(QUBES_AGENTS.waitMs, what, Promise.race([p, failed]));
  await wait(stream.whenConnected(), 'the VM connecting to the bare vchan');
  let received = 0;
  let want = 0;
  let wake: (() => void) | undefined;
  stream.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received >= want) wake?.();
  });
  const until = (n: number) =>
    new Promise<void>((resolve) => {
      want = n;
      wake = resolve;
      if (received >= n) resolve();
    });
  const samples: number[] = [];
  for (let i = 0; i < QUBES_AGENTS.pings; i++) {
    const target = received + 1;
    const start = performance.now();
    stream.write(Buffer.of(i & 0xff));
    await wait(until(target), 'a 1-byte echo');
    samples.push(performance.now() - start);
  }
  const target = received + bulk.length;
  const start = performance.now();
  stream.write(bulk);
  await wait(until(target), `${bulk.length} bytes echoed`);
  const bulkMs = performance.now() - start;
  const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
  stream.end();
  await wait(closed, 'the bare vchan closing');
  return { roundTrip: summarise(samples), echoMs: Math.round(bulkMs), bytes: bulk.length };
}

/** The VM's end of the baseline: echo until dom0 closes. */
async function bareVchanEcho(vchan: VchanTransport): Promise<{ echoed: number }> {
  const stream = await vchan.connect({
    peer: 0,
    port: QUBES_AGENTS.baselinePort,
    timeoutMs: QUBES_AGENTS.waitMs,
  });
  let echoed = 0;
  stream.on('data', (chunk: Buffer) => {
    echoed += chunk.length;
  });
  const closed = new Promise<void>((resolve, reject) => {
    stream.once('close', () => resolve());
    stream.once('error', reject);
  });
  stream.pipe(stream);
  await within(QUBES_AGENTS.waitMs, 'dom0 closing the bare vchan', closed);
  return { echoed };
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function vmSteps(): Record<string, GuestStep> {
  const { domid, transport: vchan } = transport();
  let db: QubesDb | undefined;
  let agent: Awaited<ReturnType<typeof startAgent>>['agent'] | undefined;
  return {
    'agents up': async () => {
      const start = performance.now();
      db = await connectQubesDb({ transport: vchan, timeoutMs: QUBES_AGENTS.waitMs, log });
      const syncMs = performance.now() - start;
      ({ agent } = await startAgent({
        transport: vchan,
        qubesdb: db,
        log: (level, message) => log(`qrexec-agent ${level}: ${message}`),
      }));
      registerTestServices(agent);
      return {
        domid,
        initial: Object.fromEntries(db.multiread()),
        syncMs: Math.round(syncMs),
        services: agent.serviceNames().length,
      };
    },
    'qubesdb runtime changes': async () => {
      if (!db) throw new Error('QubesDB is not connected');
      const report = await runVmHalf(db, { timeoutMs: QUBES_AGENTS.waitMs });
      return { ...report, seqLeft: db.list('/lab/seq/'), stats: db.stats };
    },
    'bare vchan echo': () => bareVchanEcho(vchan),
    'qrexec served': async () => {
      if (!db || !agent) throw new Error('the agents are not up');
      await waitForKey(db, '/lab/qrexec-done', QUBES_AGENTS.waitMs);
      const stats = { ...agent.stats };
      db.write('/lab/vm-finished', JSON.stringify(stats));
      // close() flushes the queued write before ending the channel.
      db.close();
      await agent.stop();
      return stats;
    },
  };
}

function dom0Steps(peer: number): Record<string, GuestStep> {
  const { transport: vchan } = transport();
  const daemon = new QubesDbDaemon({
    vmDomain: peer,
    vmName: QUBES_AGENTS.vmName,
    transport: vchan,
    initial: SCENARIO_INITIAL,
    log,
  });
  // Registered before start(): the VM may synchronise before the next step runs.
  const synchronised = daemon.nextEvent('synchronised', QUBES_AGENTS.waitMs);
  synchronised.catch(() => {}); // awaited in its step
  let qrexec: QrexecDaemon | undefined;
  const stdin = patternBlock(QUBES_AGENTS.stdinSeed).subarray(0, QUBES_AGENTS.stdinBytes);
  const call = async (service: string, options: Parameters<QrexecDaemon['call']>[1]) => {
    if (!qrexec) throw new Error('qrexec is not connected');
    const start = performance.now();
    const r = await qrexec.call(service, { timeoutMs: QUBES_AGENTS.waitMs, ...options });
    const ms = performance.now() - start;
    return {
      exitCode: r.exitCode,
      stdoutBytes: r.stdout.length,
      stdoutSha256: sha256(r.stdout),
      // A short stdout (a hash line) as text; long ones only by size and hash.
      stdoutText: r.stdout.length <= 200 ? r.stdout.toString('latin1') : undefined,
      stderr: r.stderr.subarray(0, 200).toString('latin1'),
      ms: Math.round(ms),
    };
  };
  return {
    'qubesdb daemon listening': async () => {
      await daemon.start();
      return { vm: peer, entries: daemon.list().length };
    },
    'qubesdb synchronised': async () => {
      const event = await synchronised;
      return { entries: event.entries };
    },
    'qubesdb runtime changes': async () => {
      const report = await runDom0Half(daemon, { timeoutMs: QUBES_AGENTS.waitMs, pings: QUBES_AGENTS.pings });
      return { ...report, forwarded: daemon.stats.forwarded };
    },
    'bare vchan baseline': () => bareVchanBaseline(vchan, peer, stdin),
    'qrexec connected': async () => {
      qrexec = await QrexecDaemon.connect({
        transport: vchan,
        domain: peer,
        name: QUBES_AGENTS.vmName,
        startupTimeoutMs: QUBES_AGENTS.waitMs,
        log: (level, message) => log(`qrexec-daemon ${level}: ${message}`),
      });
      return { version: qrexec.version };
    },
    'moat.Sha256 with 1 MiB of stdin': async () => ({
      stdinSha256: sha256(stdin),
      ...(await call('moat.Sha256', { stdin })),
    }),
    'moat.Echo with 1 MiB of stdin': async () => ({
      stdinSha256: sha256(stdin),
      ...(await call('moat.Echo', { stdin })),
    }),
    // The first call pays for V8 compiling the paths (slow under emulation); this one does not.
    'moat.Sha256 with 1 MiB again': async () => ({
      stdinSha256: sha256(stdin),
      ...(await call('moat.Sha256', { stdin })),
    }),
    'moat.Exit+7': () => call('moat.Exit', { argument: '7' }),
    'unknown service': () => call('moat.NoSuchService', { stdin: 'ignored\n' }),
    finish: async () => {
      daemon.write('/lab/qrexec-done', '1');
      const vm = JSON.parse(await waitForKey(daemon, '/lab/vm-finished', QUBES_AGENTS.waitMs)) as unknown;
      await qrexec?.close();
      await daemon.stop();
      return { vm };
    },
  };
}

function steps(): Record<string, GuestStep> {
  try {
    return args.role === 'dom0' ? dom0Steps(args.peer ?? -1) : vmSteps();
  } catch (error) {
    // e.g. the addon did not load: report it as a failed step rather than dying silently.
    return {
      setup: () => {
        throw error;
      },
    };
  }
}

void guestMain(steps()).then(() => {
  // Nothing should be left open; if a handle lingers, the results are out already.
  setTimeout(() => process.exit(), 3000).unref();
});
