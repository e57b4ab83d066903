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
import { FrameCompositor } from '../decoders/compose.ts';
import { decodeInWorker } from '../decoders/in-worker.ts';
import type { DecodeLimits, DecodeResult } from '../decoders/types.ts';
import { readImageRgbaRequest, rgbaHeader } from './get-image-rgba.ts';
import { decodeLimitsForMemory, maxFileBytesForLimits } from './limits.ts';
import { readOpenInVmRequest } from './open-in-vm.ts';
import { MessageView, StandInView } from './stand-in-view.ts';
import type { ViewSession } from './view.ts';
import { runWindow } from './window-loop.ts';

export type VmLog = (line: string) => void;

export interface ViewerVmOptions {
  readonly transport: VchanTransport;
  readonly grants: GrantSharer;
  /** The VM's RAM in bytes (`os.totalmem()`): the decode budget follows from it. */
  readonly memoryBytes: number;
  /** The bundled decode worker (`/mnt/app/decode-worker.js`); the package's own from sources. */
  readonly workerUrl?: URL;
  /** Per-decode deadline (default 30 s: a real VM needs far less; emulation does not). */
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

/** Most of one monitor, so the window has room for its frame and the panel. */
function maxWindowFor(gui: GuiAgent): { width: number; height: number } {
  const monitor = gui.monitors[0] ?? { width: gui.screen.w, height: gui.screen.h };
  return {
    width: Math.max(64, Math.floor(monitor.width * 0.9)),
    height: Math.max(64, Math.floor(monitor.height * 0.9)),
  };
}

export async function startViewerVm(options: ViewerVmOptions): Promise<ViewerVm> {
  const log = options.log ?? (() => {});
  const limits = decodeLimitsForMemory(options.memoryBytes, options.deadlineMs ?? 30_000);
  const maxFileBytes = maxFileBytesForLimits(limits);
  log(
    `memory ${Math.round(options.memoryBytes / 2 ** 20)} MiB: decode budget ${Math.round(limits.maxTotalBytes / 2 ** 20)} MiB, files up to ${Math.round(maxFileBytes / 2 ** 20)} MiB`,
  );

  const qubesdb = await connectQubesDb({
    transport: options.transport,
    timeoutMs: options.connectTimeoutMs ?? 600_000,
    log: (line) => log(`qubesdb: ${line}`),
  });
  log(`qubesdb synchronised (${qubesdb.read('/name') ?? 'no name'})`);

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

  const decode = (bytes: Uint8Array, fit?: { width: number; height: number }): Promise<DecodeResult> =>
    decodeInWorker(bytes, limits, {
      ...(options.workerUrl ? { workerUrl: options.workerUrl } : {}),
      ...(fit ? { fit } : {}),
    });

  /** Full size first (1:1 needs it); a still too big for the budget is decoded reduced to the window. */
  const decodeForView = async (bytes: Uint8Array, agent: GuiAgent): Promise<DecodeResult> => {
    const full = await decode(bytes);
    if (full.ok || full.kind !== 'limit') return full;
    const reduced = await decode(bytes, maxWindowFor(agent));
    if (reduced.ok) log(`decoded at 1/${reduced.image.scaled?.denominator ?? 1}: ${full.reason}`);
    return reduced.ok ? reduced : full;
  };

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
      const request = await readOpenInVmRequest(call.stdin, maxFileBytes);
      const agent = guiAgent ?? (await gui);
      const name = request.file?.name ?? 'unnamed';
      const started = performance.now();
      let view: ViewSession;
      if (request.ok) {
        const result = await decodeForView(request.bytes, agent);
        view = result.ok
          ? new StandInView(name, result.image, maxWindowFor(agent))
          : new MessageView(name, result.reason);
        served.push({
          service: call.service,
          name,
          shown: result.ok,
          ...(result.ok ? {} : { reason: result.reason }),
          exitCode: 0,
        });
        log(
          `${name}: ${result.ok ? `${result.image.format} ${result.image.width}x${result.image.height}, ${result.image.frames.length} frame(s)` : `refused: ${result.reason}`}`,
        );
      } else {
        view = new MessageView(name, request.reason);
        served.push({ service: call.service, name, shown: false, reason: request.reason, exitCode: 0 });
        log(`${name}: refused: ${request.reason}`);
      }
      await runWindow(agent, view, {
        signal: call.signal,
        onFirstFrame: () => {
          const mib = (bytes: number) => Math.round(bytes / 2 ** 20);
          log(
            `${name}: first frame after ${Math.round(performance.now() - started)} ms; ` +
              `rss ${mib(process.memoryUsage().rss)} MiB; VM used ${mib(totalmem() - freemem())} of ${mib(totalmem())} MiB`,
          );
        },
      });
      log(`${name}: window closed`);
      // Nothing goes back: the viewer never changes the file (vm-file-editor sends only a changed file).
      return 0;
    },
    { waitForSession: true },
  );

  qrexec.handle('qubes.GetImageRGBA', async (call: ServiceCall) => {
    const request = await readImageRgbaRequest(call.stdin, maxFileBytes);
    if (!request.ok) {
      call.stderr.write(`${request.reason}\n`);
      served.push({ service: call.service, shown: false, reason: request.reason, exitCode: 1 });
      return 1;
    }
    const result = await decode(request.bytes);
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
