/**
 * sys-moat's composition root: what runs, in what order, and what follows what. No packet logic
 * (that is the engine's), no device code (netif's), no protocol code (qubesdb's, qrexec's).
 *
 * 1. QubesDB is synchronised (the caller connects it) and `/vm-config/` read into settings.
 * 2. The qrexec agent answers dom0 (built-ins, and `moat.FirewallStats`).
 * 3. If QubesDB says we provide network, the engine serves the client vifs and connects the
 *    uplink; QubesDB's addresses, `/connected-ips` and rule commits are followed.
 * 4. A shutdown request (dom0's `control/shutdown`, relayed by init as SIGTERM) stops it all.
 * Booted as a TemplateVM (no netvm, no clients) only 1, 2 and 4 happen: it answers and idles.
 */

import type { QrexecAgent } from '@moat/qrexec';
import type { QubesDb } from '@moat/qubesdb';
import type { NetworkDevices } from './devices.ts';
import { consoleLog, type VmLog } from './log.ts';
import { FirewallNetwork } from './network.ts';
import { NETWORK_KEYS } from './network-config.ts';
import { PROFILE_SERVICE, profileService } from './profile-service.ts';
import { readSettings, VM_CONFIG_PREFIX, type VmSettings } from './settings.ts';
import { STATS_SERVICE, statsDocument } from './stats-service.ts';

export interface FirewallVmOptions {
  /** A synchronised replica (connectQubesDb resolves once synchronised). */
  db: QubesDb;
  /** Starts the qrexec agent with the built-ins; the root adds its own services before it listens. */
  startAgent(register: (agent: QrexecAgent) => void): Promise<QrexecAgent>;
  devices: NetworkDevices;
  log?: VmLog;
  /** Monotonic milliseconds. Default performance.now. */
  now?: () => number;
  wallClockSeconds?: () => number;
  /** The engine's timer period (conntrack expiry, DNS retries). Default 500 ms; 0: the caller ticks. */
  tickMs?: number;
}

export interface FirewallVm {
  readonly settings: VmSettings;
  readonly network: FirewallNetwork;
  readonly agent: QrexecAgent;
  /** Runs the timers once (tests with tickMs 0). */
  tick(): void;
  /** Stops everything; resolves when done. Safe to call twice. */
  shutdown(reason: string): Promise<void>;
  /** Resolves when shut down. */
  readonly finished: Promise<string>;
}

export async function startFirewallVm(o: FirewallVmOptions): Promise<FirewallVm> {
  const started = performance.now();
  const { db } = o;
  const log = o.log ?? consoleLog();
  const vmConfig = () =>
    new Map([...db.multiread(VM_CONFIG_PREFIX)].filter(([p]) => p.startsWith(VM_CONFIG_PREFIX)));
  const { settings, problems } = readSettings(vmConfig());
  log.level = settings.logLevel;
  for (const p of problems) log.warn(p);
  log.info(`QubesDB synchronised: ${db.read('/name') ?? '(no /name)'}, ${db.read('/type') ?? '?'}`);

  const network = new FirewallNetwork({
    read: (path) => db.read(path),
    trees: db,
    uplink: o.devices.uplink,
    clients: o.devices.clients,
    settings,
    log,
    now: o.now ?? (() => performance.now()),
    ...(o.wallClockSeconds ? { wallClockSeconds: o.wallClockSeconds } : {}),
  });

  const agent = await o.startAgent((a) => {
    a.handle(STATS_SERVICE, async (call) => {
      const doc = statsDocument({
        uptimeMs: Math.round(performance.now() - started),
        settings,
        network: network.stats(),
        qubesdb: { ...db.stats },
      });
      call.stdout.write(`${JSON.stringify(doc)}\n`);
      return 0;
    });
    a.handle(PROFILE_SERVICE, profileService);
  });
  log.info('qrexec agent listening');

  const unwatch: (() => void)[] = [];
  for (const key of NETWORK_KEYS) unwatch.push(db.watch(key, () => network.reconfigure()));
  for (const key of ['/connected-ips', '/connected-ips6'])
    unwatch.push(db.watch(key, () => network.connectedIpsChanged()));
  // Only the log level follows at run time; table sizes and reject/drop are the engine's at boot.
  unwatch.push(
    db.watch(`${VM_CONFIG_PREFIX}log-level`, () => {
      const next = readSettings(vmConfig()).settings.logLevel;
      if (next !== log.level) log.info(`log level ${log.level} -> ${next}`);
      log.level = next;
      network.followLogLevel();
    }),
  );
  await network.start();

  const tickMs = o.tickMs ?? 500;
  const timer = tickMs > 0 ? setInterval(() => network.tick(), tickMs) : undefined;
  timer?.unref?.();

  let resolveFinished: (reason: string) => void = () => {};
  const finished = new Promise<string>((resolve) => {
    resolveFinished = resolve;
  });
  let stopping: Promise<void> | undefined;
  const shutdown = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      log.info(`shutting down: ${reason}`);
      if (timer) clearInterval(timer);
      for (const off of unwatch) off();
      await network.stop();
      await agent.stop().catch((e: Error) => log.warn(`qrexec agent stop: ${e.message}`));
      db.close();
      log.info('stopped');
      resolveFinished(reason);
    })();
    return stopping;
  };
  db.onEnd((error) => {
    if (error) void shutdown(`QubesDB link lost for good: ${error.message}`);
  });
  log.info(`up in ${Math.round(performance.now() - started)} ms; role: ${network.stats().role}`);
  return { settings, network, agent, tick: () => network.tick(), shutdown, finished };
}
