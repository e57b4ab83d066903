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

/** The monitors the core lays the window out on: dom0's layout, else the GUI daemon's screen. */
function monitorsOf(gui: GuiAgent) {
  return gui.monitors.length > 0 ? gui.monitors : [{ x: 0, y: 0, width: gui.screen.w, height: gui.screen.h }];
}

export async function showFile(options: SessionOptions): Promise<ImageViewer> {
  const { gui } = options;
  const viewer = new ImageViewer({ name: options.name, monitors: monitorsOf(gui), limits: options.limits });
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
