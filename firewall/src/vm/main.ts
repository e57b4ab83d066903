/**
 * sys-moat's entry point: the esbuild bundle node runs in the firewall VM image (`/app/main.js`).
 * Opens Xen (the native addon on the image's disk), connects QubesDB, starts the VM and waits for
 * a shutdown request. Exits 0 after an orderly shutdown (init then powers the VM off), 1 when the
 * VM cannot start (the reason is on the console).
 *
 * For a host run without Xen: MOAT_VCHAN_SOCKET_DIR and MOAT_DOMAIN use Qubes' vchan-socket layout.
 */
import { existsSync } from 'node:fs';
import { connectQubesDb } from '@moat/qubesdb';
import { type VchanTransport, xenVchanTransport } from '@moat/vchan';
import { socketVchanTransport } from '@moat/vchan/socket';
import { openNativeDomain } from '@moat/xen';
import { agentStarter } from './agent.ts';
import { startFirewallVm } from './firewall-vm.ts';
import { consoleLog } from './log.ts';
import { devicesWithoutNetif } from './no-netif.ts';

/** Where the image puts the addon (the disk is mounted on /mnt). */
const IMAGE_ADDON = '/mnt/app/moat_xen.node';
const QUBESDB_TIMEOUT_MS = 120_000;

function vchanTransport(): VchanTransport {
  const directory = process.env.MOAT_VCHAN_SOCKET_DIR;
  if (directory)
    return socketVchanTransport({ directory, localDomain: Number(process.env.MOAT_DOMAIN ?? 0) });
  if (!process.env.MOAT_XEN_ADDON && existsSync(IMAGE_ADDON)) process.env.MOAT_XEN_ADDON = IMAGE_ADDON;
  return xenVchanTransport(openNativeDomain());
}

async function main(): Promise<number> {
  const log = consoleLog();
  const shutdownRequested = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('shutdown requested (SIGTERM: dom0 control/shutdown via init)'));
    process.once('SIGINT', () => resolve('shutdown requested (SIGINT)'));
  });
  const transport = vchanTransport();
  log.info('connecting to QubesDB');
  const db = await connectQubesDb({
    transport,
    timeoutMs: QUBESDB_TIMEOUT_MS,
    log: (l) => log.warn(`qubesdb: ${l}`),
  });
  const vm = await startFirewallVm({
    db,
    devices: devicesWithoutNetif(log),
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
