/**
 * moat-viewer's main, run by the image's init as `/mnt/app/main.js`: the Xen addon and the
 * decode worker sit beside it on the read-only disk. It brings up the agents and idles; each
 * `qubes.OpenInVM` shows one image until its window closes, and dom0 then destroys the
 * disposable.
 */
import { existsSync } from 'node:fs';
import { totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { xenVchanTransport } from '@moat/vchan';
import { openNativeDomain } from '@moat/xen';
import { startViewerVm } from './viewer-vm.ts';

const appDir = dirname(process.argv[1] ?? '/mnt/app/main.js');
const addon = join(appDir, 'moat_xen.node');
if (!process.env.MOAT_XEN_ADDON && existsSync(addon)) process.env.MOAT_XEN_ADDON = addon;
const worker = join(appDir, 'decode-worker.js');

const log = (line: string) => console.log(`moat-viewer: ${line}`);
const domain = openNativeDomain();
startViewerVm({
  transport: xenVchanTransport(domain),
  grants: domain.grantSharer,
  memoryBytes: totalmem(),
  log,
  ...(existsSync(worker) ? { workerUrl: pathToFileURL(worker) } : {}),
}).catch((error: unknown) => {
  log(`failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exit(1);
});
