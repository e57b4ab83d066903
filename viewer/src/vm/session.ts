/**
 * One file shown in one window: the viewer core (@moat/viewer/app `ImageViewer`, sans-IO)
 * driven by the window's events, its timer requests and decodes in the decoders' worker.
 * Resolves when the user closed the window (its close button, q or Escape) or the call went
 * away.
 */
import type { GuiAgent, GuiInputEvent, GuiWindow } from '@moat/gui-agent';
import { type DecodeRequest, ImageViewer, type ViewerUpdate } from '../app/viewer.ts';
import type { DecodeLimits, DecodeResult } from '../decoders/types.ts';

export interface SessionOptions {
  readonly gui: GuiAgent;
  /** The file's name as received (`view-only-` taken off); the core makes it ASCII-safe. */
  readonly name: string;
  /** The file, or why it was not received (the window then says so). */
  readonly file: { readonly bytes: Uint8Array } | { readonly refused: string };
  readonly limits: DecodeLimits;
  readonly decode: (bytes: Uint8Array, request: DecodeRequest) => Promise<DecodeResult>;
  readonly signal?: AbortSignal;
  /** Once the first frame was handed to the GUI agent. */
  readonly onFirstFrame?: (viewer: ImageViewer) => void;
}

/**
 * The most pixels one window may have: its buffer is shared in one gntalloc request, and
 * @moat/xen's addon shares (and the lab daemon maps) at most 1024 pages per request
 * (xen/native/grants.cc kMaxPages), 4 MiB of BGRX. A larger window failed on real Xen
 * (`./moat bench viewer` on a 1920 × 1080 screen: 1728 × 972 needs 1640 pages).
 */
export const MAX_WINDOW_PIXELS = (1024 * 4096) / 4;

/**
 * The monitors the core lays the window out on (dom0's layout, else the GUI daemon's screen),
 * scaled down where 90% of one would make a window of more than MAX_WINDOW_PIXELS.
 */
export function monitorsFor(
  monitors: readonly { x: number; y: number; width: number; height: number }[],
  screen: { w: number; h: number },
): { x: number; y: number; width: number; height: number }[] {
  const list = monitors.length > 0 ? monitors : [{ x: 0, y: 0, width: screen.w, height: screen.h }];
  return list.map((m) => {
    const box = Math.floor(m.width * 0.9) * Math.floor(m.height * 0.9);
    if (box <= MAX_WINDOW_PIXELS) return { ...m };
    const f = Math.sqrt(MAX_WINDOW_PIXELS / box) * 0.999;
    return { ...m, width: Math.floor(m.width * f), height: Math.floor(m.height * f) };
  });
}

export async function showFile(options: SessionOptions): Promise<ImageViewer> {
  const { gui } = options;
  const viewer = new ImageViewer({
    name: options.name,
    monitors: monitorsFor(gui.monitors, gui.screen),
    limits: options.limits,
  });
  const now = () => performance.now();
  let update: ViewerUpdate;
  if ('refused' in options.file) update = viewer.failed(options.file.refused, now());
  else {
    const bytes = options.file.bytes;
    let request: DecodeRequest | undefined = viewer.open(bytes);
    do {
      update = viewer.decoded(await options.decode(bytes, request), now());
      request = update.decode;
    } while (request && viewer.state === 'loading');
  }
  const window: GuiWindow = gui.openWindow({
    title: update.title,
    ...viewer.window,
    className: 'moat-viewer',
    instanceName: 'moat-viewer',
  });
  let timer: NodeJS.Timeout | undefined;
  let decoding = false;
  let closed = false;
  const apply = (u: ViewerUpdate) => {
    if (!window.isOpen || closed) return;
    if (u.close) {
      closed = true;
      void window.close();
      return;
    }
    if (u.width !== window.width || u.height !== window.height) window.resize(u.width, u.height);
    // The title first, so a daemon sees it with the pixels it describes.
    if (u.title !== window.title) window.setTitle(u.title);
    if (u.redraw) window.draw(viewer.render(), undefined, { format: 'bgrx' });
    clearTimeout(timer);
    if (u.wakeAt !== undefined)
      timer = setTimeout(() => apply(viewer.tick(now())), Math.max(0, u.wakeAt - now()));
    const next = u.decode;
    if (next && !decoding && 'bytes' in options.file) {
      decoding = true;
      const bytes = options.file.bytes;
      void options.decode(bytes, next).then((result) => {
        decoding = false;
        apply(viewer.decoded(result, now()));
      });
    }
  };
  window.draw(viewer.render(), undefined, { format: 'bgrx' });
  options.onFirstFrame?.(viewer);
  apply({ ...update, redraw: false });
  const abort = () => {
    closed = true;
    void window.close().catch(() => {});
  };
  options.signal?.addEventListener('abort', abort, { once: true });
  try {
    for await (const event of window as AsyncIterable<GuiInputEvent>) {
      apply(viewer.handle(event, now()));
      if (closed) break;
    }
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', abort);
    if (window.isOpen) await window.close();
  }
  return viewer;
}
