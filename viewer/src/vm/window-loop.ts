/**
 * One window for one view: opened at the view's size, drawn, redrawn on input, resize and
 * animation timer, until the user closes it (or the call goes away). Resolves when the
 * window is gone.
 */
import type { GuiAgent, GuiInputEvent, GuiWindow } from '@moat/gui-agent';
import type { ViewSession } from './view.ts';

export interface WindowLoopOptions {
  /** Aborted when the qrexec call failed: the window closes. */
  readonly signal?: AbortSignal;
  /** Called once the first frame was handed to the GUI agent. */
  readonly onFirstFrame?: (window: GuiWindow) => void;
}

export async function runWindow(
  gui: GuiAgent,
  view: ViewSession,
  options: WindowLoopOptions = {},
): Promise<void> {
  const window = gui.openWindow({
    title: view.title(),
    width: view.width,
    height: view.height,
    className: 'moat-viewer',
    instanceName: 'moat-viewer',
  });
  let title = view.title();
  const draw = () => {
    // The title first, so a daemon sees it with the pixels it describes.
    const next = view.title();
    if (next !== title) {
      title = next;
      window.setTitle(title);
    }
    window.draw(view.render());
  };
  draw();
  options.onFirstFrame?.(window);
  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    clearTimeout(timer);
    const ms = view.nextFrameInMs();
    if (ms === undefined) return;
    timer = setTimeout(() => {
      if (!window.isOpen) return;
      view.advanceFrame();
      draw();
      schedule();
    }, ms);
  };
  schedule();
  const abort = () => void window.close().catch(() => {});
  options.signal?.addEventListener('abort', abort, { once: true });
  try {
    for await (const event of window as AsyncIterable<GuiInputEvent>) {
      if (event.type === 'close-request') break;
      if (event.type === 'resize') {
        view.resize(event.width, event.height);
        draw();
      } else if (view.handle(event)) {
        draw();
        schedule();
      }
    }
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', abort);
    if (window.isOpen) await window.close();
  }
}
