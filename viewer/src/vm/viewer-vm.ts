/**
 * moat-viewer's VM: QubesDB, the GUI agent and the qrexec agent with `qubes.OpenInVM` and
 * `qubes.GetImageRGBA`, over whatever transport and grants it is given (Xen in `main.ts`,
 * unix sockets and sim grants in the host test). Booted as a template or as a disposable it
 * is the same: the agents come up, dom0's calls are answered, and it idles until one comes.
 */
import { freemem, totalmem } from 'node:os';
import type { GuiAgent } from '@moat/gui-agent';
import { SET_MONITOR_LAYOUT_SERVICE, setMonitorLayoutService, startGuiAgent } from '@moat/gui-agent';
import { type QrexecAgent, type ServiceCall, startAgent } from '@moat/qrexec';
import { connectQubesDb, type QubesDb } from '@moat/qubesdb';
import type { VchanTransport } from '@moat/vchan';
import type { GrantSharer } from '@moat/xen';
import { decodeBudget, RUNTIME_RESERVE_BYTES } from '../app/budget.ts';
import { FrameCompositor } from '../decoders/compose.ts';
import { decodeInWorker } from '../decoders/in-worker.ts';
import type { DecodeLimits } from '../decoders/types.ts';
import { readImageRgbaRequest, rgbaHeader } from './get-image-rgba.ts';
import { readOpenInVmRequest } from './open-in-vm.ts';
import { showFile } from './session.ts';

export type VmLog = (line: string) => void;

export interface ViewerVmOptions {
  readonly transport: VchanTransport;
  readonly grants: GrantSharer;
  /** The VM's RAM in bytes (`os.totalmem()`): the decode budget follows from it. */
  readonly memoryBytes: number;
  /** The bundled decode worker (`/mnt/app/decode-worker.js`); the package's own from sources. */
  readonly workerUrl?: URL;
  /**
   * Per-decode deadline; default QubesDB `/vm-config/moat-viewer-deadline-ms`
   * (`qvm-features <vm> vm-config.moat-viewer-deadline-ms N`), else 30 s.
   */
  readonly deadlineMs?: number;
  readonly log?: VmLog;
  readonly connectTimeoutMs?: number;
}

export interface ViewerVm {
  readonly qubesdb: QubesDb;
  readonly qrexec: QrexecAgent;
  /** Resolves once the GUI daemon has connected (the session qubes.OpenInVM waits for). */
  readonly gui: Promise<GuiAgent>;
  readonly limits: DecodeLimits;
  /** Calls served so far, by service, with their outcome, for logs and tests. */
  readonly served: { service: string; name?: string; shown: boolean; reason?: string; exitCode: number }[];
  stop(): Promise<void>;
}

/**
 * The largest file accepted: it is held while it decodes, so a quarter of what the VM has
 * beyond its runtime (the decode budget is then computed with the file's size taken off).
 */
export function maxFileBytes(memoryBytes: number): number {
  return Math.max(2 ** 20, Math.floor((memoryBytes - RUNTIME_RESERVE_BYTES) / 4));
}

/** QubesDB `/vm-config/` key of the per-decode deadline (ms). */
export const DEADLINE_CONFIG = 'moat-viewer-deadline-ms';
const DEFAULT_DEADLINE_MS = 30_000;

/** The deadline from `/vm-config/`: a whole number of ms from 1 s to 1 h, else the default. */
export function deadlineFrom(value: string | undefined): number {
  const ms = value !== undefined && /^[0-9]{4,7}$/.test(value) ? Number(value) : Number.NaN;
  return ms >= 1000 && ms <= 3_600_000 ? ms : DEFAULT_DEADLINE_MS;
}

export async function startViewerVm(options: ViewerVmOptions): Promise<ViewerVm> {
  const log = options.log ?? (() => {});
  const qubesdb = await connectQubesDb({
    transport: options.transport,
    timeoutMs: options.connectTimeoutMs ?? 600_000,
    log: (line) => log(`qubesdb: ${line}`),
  });
  log(`qubesdb synchronised (${qubesdb.read('/name') ?? 'no name'})`);

  const deadlineMs = options.deadlineMs ?? deadlineFrom(qubesdb.read(`/vm-config/${DEADLINE_CONFIG}`));
  const limits = decodeBudget(options.memoryBytes, { deadlineMs });
  const fileLimit = maxFileBytes(options.memoryBytes);
  const mib = (bytes: number) => Math.round(bytes / 2 ** 20);
  log(
    `memory ${mib(options.memoryBytes)} MiB: decode budget ${mib(limits.maxTotalBytes)} MiB, files up to ${mib(fileLimit)} MiB, deadline ${deadlineMs} ms`,
  );

  let guiAgent: GuiAgent | undefined;
  const gui = startGuiAgent({
    transport: options.transport,
    grants: options.grants,
    qubesdb,
    log: (level, message) => log(`gui ${level}: ${message}`),
  }).then((agent) => {
    guiAgent = agent;
    log(
      `gui connected (protocol ${agent.version >> 16}.${agent.version & 0xffff}, screen ${agent.screen.w}x${agent.screen.h})`,
    );
    return agent;
  });
  gui.catch((error: unknown) => log(`gui agent failed: ${String(error)}`));

  const workerOptions = options.workerUrl ? { workerUrl: options.workerUrl } : {};

  const served: ViewerVm['served'] = [];
  const { agent: qrexec } = await startAgent({
    transport: options.transport,
    qubesdb,
    sessionReady: async () => {
      await gui;
    },
    log: (level, message) => log(`qrexec ${level}: ${message}`),
  });
  qrexec.handle(SET_MONITOR_LAYOUT_SERVICE, async (call) => setMonitorLayoutService(await gui)(call));

  qrexec.handle(
    'qubes.OpenInVM',
    async (call: ServiceCall) => {
      const started = performance.now();
      const request = await readOpenInVmRequest(call.stdin, fileLimit);
      const agent = guiAgent ?? (await gui);
      const name = request.file?.name ?? 'unnamed';
      const fileLimits = request.ok
        ? decodeBudget(options.memoryBytes, { deadlineMs, fileBytes: request.bytes.length })
        : limits;
      let refusal: string | undefined;
      await showFile({
        gui: agent,
        name,
        file: request.ok ? { bytes: request.bytes } : { refused: request.reason },
        limits: fileLimits,
        decode: (bytes, r) => decodeInWorker(bytes, r.limits, { ...r.options, ...workerOptions }),
        signal: call.signal,
        onFirstFrame: (v) => {
          refusal = v.errorText?.replace(/\s+/g, ' ');
          log(
            `${name}: ${v.state === 'error' ? `refused: ${(v.errorText ?? '').replace(/\s+/g, ' ')}` : `shown, decoded at 1/${v.decodedScale}`}; ` +
              `first frame after ${Math.round(performance.now() - started)} ms; ` +
              `rss ${mib(process.memoryUsage().rss)} MiB; VM used ${mib(totalmem() - freemem())} of ${mib(totalmem())} MiB`,
          );
        },
      });
      served.push({
        service: call.service,
        name,
        shown: refusal === undefined,
        ...(refusal ? { reason: refusal } : {}),
        exitCode: 0,
      });
      log(`${name}: window closed`);
      // Nothing goes back: the viewer never changes the file (vm-file-editor sends only a changed file).
      return 0;
    },
    { waitForSession: true },
  );

  qrexec.handle('qubes.GetImageRGBA', async (call: ServiceCall) => {
    const request = await readImageRgbaRequest(call.stdin, fileLimit);
    if (!request.ok) {
      call.stderr.write(`${request.reason}\n`);
      served.push({ service: call.service, shown: false, reason: request.reason, exitCode: 1 });
      return 1;
    }
    const result = await decodeInWorker(
      request.bytes,
      decodeBudget(options.memoryBytes, { deadlineMs, fileBytes: request.bytes.length }),
      workerOptions,
    );
    if (!result.ok) {
      call.stderr.write(`${result.reason}\n`);
      served.push({ service: call.service, shown: false, reason: result.reason, exitCode: 1 });
      return 1;
    }
    const { width, height } = result.image;
    const pixels = new FrameCompositor(result.image).frame(0);
    call.stdout.write(rgbaHeader(width, height));
    await new Promise<void>((resolve, reject) =>
      call.stdout.write(pixels, (e) => (e ? reject(e) : resolve())),
    );
    served.push({ service: call.service, shown: true, exitCode: 0 });
    return 0;
  });
  log(`qrexec agent listening (${qrexec.serviceNames().length} services)`);

  return {
    qubesdb,
    qrexec,
    gui,
    limits,
    served,
    async stop() {
      await qrexec.stop();
      guiAgent?.close();
      qubesdb.close();
    },
  };
}
