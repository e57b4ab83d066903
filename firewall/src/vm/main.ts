/**
 * sys-moat's entry point: the esbuild bundle node runs in the firewall VM image (`/app/main.js`).
 * Opens Xen (the native addon on the image's disk), connects QubesDB, starts the VM and waits for
 * a shutdown request. Exits 0 after an orderly shutdown (init then powers the VM off), 1 when the
 * VM cannot start (the reason is on the console).
 *
 * For a host run without Xen: MOAT_VCHAN_SOCKET_DIR and MOAT_DOMAIN use Qubes' vchan-socket layout
 * (QubesDB and qrexec only; no network devices).
 */
import { existsSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { connectQubesDb } from '@moat/qubesdb';
import { type VchanTransport, xenVchanTransport } from '@moat/vchan';
import { socketVchanTransport } from '@moat/vchan/socket';
import { openNativeDomain, openXenbusDevice } from '@moat/xen';
import { xenstoreOverXenbus } from '@moat/xenstore';
import { agentStarter } from './agent.ts';
import type { NetworkDevices } from './devices.ts';
import { startFirewallVm } from './firewall-vm.ts';
import { consoleLog, type VmLog } from './log.ts';
import { netifDevices } from './netif-adapter.ts';
import { devicesWithoutNetif } from './no-netif.ts';

/** Where the image puts the addon (the disk is mounted on /mnt). */
const IMAGE_ADDON = '/mnt/app/moat_xen.node';
const QUBESDB_TIMEOUT_MS = 120_000;

/** Real Xen (vchan, netif over /dev/xen/*), or vchan-socket on a host (no network devices then). */
function platform(log: VmLog): { transport: VchanTransport; devices: NetworkDevices } {
  const directory = process.env.MOAT_VCHAN_SOCKET_DIR;
  if (directory) {
    const transport = socketVchanTransport({ directory, localDomain: Number(process.env.MOAT_DOMAIN ?? 0) });
    return { transport, devices: devicesWithoutNetif(log) };
  }
  if (!process.env.MOAT_XEN_ADDON && existsSync(IMAGE_ADDON)) process.env.MOAT_XEN_ADDON = IMAGE_ADDON;
  const xen = openNativeDomain();
  const xenstore = xenstoreOverXenbus(openXenbusDevice());
  log.info(`Xen opened: domain ${xen.domid}`);
  return { transport: xenVchanTransport(xen), devices: netifDevices(xen, xenstore, log) };
}

async function main(): Promise<number> {
  const log = consoleLog();
  // From the image's own /app/env (node.env), before any packet: V8 tiers up our hot path sooner.
  const v8Flags = process.env.MOAT_V8_FLAGS;
  if (v8Flags) setFlagsFromString(v8Flags);
  log.info(`starting (node ${process.version})${v8Flags ? ` V8 flags ${v8Flags}` : ''}`);
  const shutdownRequested = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('shutdown requested (SIGTERM: dom0 control/shutdown via init)'));
    process.once('SIGINT', () => resolve('shutdown requested (SIGINT)'));
  });
  const { transport, devices } = platform(log);
  log.info('connecting to QubesDB');
  const db = await connectQubesDb({
    transport,
    timeoutMs: QUBESDB_TIMEOUT_MS,
    log: (l) => log.warn(`qubesdb: ${l}`),
  });
  const vm = await startFirewallVm({
    db,
    devices,
    log,
    startAgent: agentStarter(transport, db, log),
  });
  const reason = await Promise.race([shutdownRequested, vm.finished]);
  await vm.shutdown(reason);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`sys-moat error: cannot start: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
