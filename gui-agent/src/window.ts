/**
 * One window of the agent: its pixel buffer shared with the GUI domain through grant refs,
 * and the queue of input events an application reads. The protocol messages it causes go
 * out through `WindowLink`, which the agent implements.
 */
import type { SharedPages } from '@moat/xen';
import { GuiError } from './errors.ts';
import { EventQueue } from './event-queue.ts';
import { encodeClassField, encodeTitle } from './strings.ts';
import {
  BYTES_PER_PIXEL,
  DUMP_BPP,
  type GuiMessage,
  MAX_WINDOW_HEIGHT,
  MAX_WINDOW_WIDTH,
  MIN_BIDIRECTIONAL_MSG_DESTROY,
  MIN_MSG_WINDOW_DUMP_ACK,
  PAGE_SIZE,
  type Rect,
  SizeHint,
  WINDOW_DUMP_TYPE_GRANT_REFS,
} from './wire.ts';

/** What an application receives from a window. Coordinates are window-relative. */
export type GuiInputEvent =
  | {
      type: 'key';
      pressed: boolean;
      /** X keycode (evdev code + 8) and X modifier state, as the daemon sent them. */
      keycode: number;
      state: number;
      /** X keysym name in the VM's keyboard layout (`q`, `plus`, `Left`), undefined for unknown keys. */
      keysym: string | undefined;
      /** The character the key makes ('' for none). */
      text: string;
    }
  | { type: 'button'; pressed: boolean; button: number; x: number; y: number; state: number }
  /** A wheel step (X buttons 4–7): dy −1 up, +1 down; dx −1 left, +1 right. */
  | { type: 'wheel'; dx: number; dy: number; x: number; y: number; state: number }
  | { type: 'motion'; x: number; y: number; state: number }
  | { type: 'enter' | 'leave'; x: number; y: number; state: number }
  | { type: 'focus'; focused: boolean }
  /** The user resized the window in dom0; the buffer already has the new size: draw it. */
  | { type: 'resize'; width: number; height: number }
  | { type: 'move'; x: number; y: number }
  /** The user asked to close the window (its close button); call `close()` to do it. */
  | { type: 'close-request' };

export interface OpenWindowOptions {
  title: string;
  width: number;
  height: number;
  x?: number;
  y?: number;
  /** WM_CLASS (class, name); default ('moat', 'moat'). */
  className?: string;
  instanceName?: string;
  /** For popups and menus: the daemon draws it without decorations, in a coloured frame. */
  overrideRedirect?: boolean;
  /** The window this one belongs to (dialogs). */
  transientFor?: GuiWindow;
  minWidth?: number;
  minHeight?: number;
  maxWidth?: number;
  maxHeight?: number;
}

/** What a window needs from its agent. */
export interface WindowLink {
  readonly version: number;
  send(message: GuiMessage): void;
  share(pageCount: number): SharedPages;
  /** A daemon-driven resize found no pages; counted and logged by the agent. */
  shareFailed(error: unknown): void;
  forget(window: GuiWindow): void;
}

/** One shared buffer and the image size it was announced with. */
interface Buffer {
  pages: SharedPages;
  width: number;
  height: number;
}

/** Replaced buffers kept per window before 1.7 (see #reshare). */
const MAX_RETIRED = 4;

export function checkSize(operation: string, width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new GuiError(operation, 'EINVAL', `window size ${width}x${height} (needs whole numbers ≥ 1)`);
  }
  if (width > MAX_WINDOW_WIDTH || height > MAX_WINDOW_HEIGHT) {
    throw new GuiError(
      operation,
      'EINVAL',
      `window size ${width}x${height} above the daemon's ${MAX_WINDOW_WIDTH}x${MAX_WINDOW_HEIGHT}`,
    );
  }
}

export class GuiWindow implements AsyncIterable<GuiInputEvent> {
  readonly events = new EventQueue<GuiInputEvent>();
  #x: number;
  #y: number;
  #width: number;
  #height: number;
  #title: string;
  #buffer: Buffer;
  /** The dump the daemon last acknowledged, which it keeps mapped until it processes the next one. */
  #daemonHolds: SharedPages | undefined;
  /** Dumps sent and not yet acknowledged, oldest first. */
  readonly #unacked: SharedPages[] = [];
  /** Before 1.7: replaced buffers, kept until the window goes (the daemon never says when it let go). */
  readonly #retired: SharedPages[] = [];
  #state: 'open' | 'closing' | 'closed' = 'open';
  #shown = true;
  readonly #transientFor: number;
  readonly #overrideRedirect: number;
  readonly #hints: ReturnType<typeof hintsFor>;
  readonly #resClass: Uint8Array;
  readonly #resName: Uint8Array;
  #closed: { promise: Promise<void>; resolve: () => void };

  constructor(
    readonly id: number,
    readonly link: WindowLink,
    options: OpenWindowOptions,
  ) {
    checkSize('openWindow', options.width, options.height);
    this.#x = clampPosition(options.x ?? 0, MAX_WINDOW_WIDTH);
    this.#y = clampPosition(options.y ?? 0, MAX_WINDOW_HEIGHT);
    this.#width = options.width;
    this.#height = options.height;
    this.#title = options.title;
    let resolve = () => {};
    this.#closed = { promise: new Promise<void>((r) => (resolve = r)), resolve: () => resolve() };
    this.#buffer = this.#allocate(options.width, options.height);
    this.#overrideRedirect = options.overrideRedirect ? 1 : 0;
    this.#transientFor = options.transientFor?.id ?? 0;
    this.#hints = hintsFor(options);
    this.#resClass = encodeClassField(options.className ?? 'moat');
    this.#resName = encodeClassField(options.instanceName ?? options.className ?? 'moat');
    this.#announce();
  }

  /** Everything the daemon needs to show the window, in the C agent's order on creation. */
  #announce(): void {
    const { id, link } = this;
    const overrideRedirect = this.#overrideRedirect;
    const rect = { x: this.#x, y: this.#y, width: this.#width, height: this.#height };
    link.send({ kind: 'create', window: id, ...rect, parent: 0, overrideRedirect });
    link.send({ kind: 'window-hints', window: id, ...this.#hints });
    link.send({ kind: 'wmname', window: id, data: encodeTitle(this.#title) });
    link.send({ kind: 'wmclass', window: id, resClass: this.#resClass, resName: this.#resName });
    link.send({ kind: 'configure', window: id, ...rect, overrideRedirect });
    this.#sendDump();
    if (!this.#shown) return;
    link.send({ kind: 'map', window: id, transientFor: this.#transientFor, overrideRedirect });
    this.#damage(rect);
  }

  /**
   * A new daemon connected after the old one went away (its mappings went with it): every
   * buffer but the current one is free, and the window is announced again as on creation.
   * A window whose destroy was never echoed is gone.
   */
  reannounce(): void {
    if (this.#state === 'closing') {
      this.destroyed();
      return;
    }
    if (this.#state !== 'open') return;
    this.#forgetDaemon();
    this.#announce();
  }

  /** The daemon is gone: only the current buffer stays shared. */
  #forgetDaemon(): void {
    const old = new Set([...this.#unacked, ...this.#retired]);
    if (this.#daemonHolds) old.add(this.#daemonHolds);
    old.delete(this.#buffer.pages);
    for (const pages of old) unshare(pages);
    this.#unacked.length = 0;
    this.#retired.length = 0;
    this.#daemonHolds = undefined;
  }

  get width(): number {
    return this.#width;
  }
  get height(): number {
    return this.#height;
  }
  get x(): number {
    return this.#x;
  }
  get y(): number {
    return this.#y;
  }
  get title(): string {
    return this.#title;
  }
  get isOpen(): boolean {
    return this.#state === 'open';
  }
  /** Pages this window has shared and not yet released (its buffers). */
  get sharedPages(): number {
    const all = new Set([this.#buffer.pages, ...this.#unacked, ...this.#retired]);
    if (this.#daemonHolds) all.add(this.#daemonHolds);
    let n = 0;
    for (const pages of all) n += pages.refs.length;
    return this.#state === 'closed' ? 0 : n;
  }
  /** Resolves once the window is gone on both sides (the daemon acknowledged the destroy). */
  get closed(): Promise<void> {
    return this.#closed.promise;
  }

  [Symbol.asyncIterator](): AsyncIterator<GuiInputEvent> {
    return this.events[Symbol.asyncIterator]();
  }

  /**
   * Draws `rgba` (rect.width × rect.height pixels, 4 bytes each, rows top to bottom, no
   * padding) at `rect` (default: the whole window) and tells the daemon that rectangle changed.
   * `format: 'bgrx'` takes pixels already in the daemon's byte order (B, G, R, unused), copied
   * row by row without conversion: the fast path for renderers that can produce it.
   */
  draw(
    rgba: Uint8Array,
    rect: Rect = { x: 0, y: 0, width: this.#width, height: this.#height },
    options: { format?: 'rgba' | 'bgrx' } = {},
  ): void {
    this.#checkOpen('draw');
    const { x, y, width, height } = rect;
    const inside =
      [x, y, width, height].every(Number.isInteger) &&
      x >= 0 &&
      y >= 0 &&
      width >= 0 &&
      height >= 0 &&
      x + width <= this.#width &&
      y + height <= this.#height;
    if (!inside) {
      throw new GuiError(
        'draw',
        'EINVAL',
        `rect ${x},${y} ${width}x${height} outside ${this.#width}x${this.#height}`,
      );
    }
    if (rgba.length !== width * height * BYTES_PER_PIXEL) {
      throw new GuiError(
        'draw',
        'EINVAL',
        `${rgba.length} bytes for ${width}x${height} pixels (needs ${width * height * 4})`,
      );
    }
    if (width === 0 || height === 0) return;
    const target = new Uint8Array(this.#buffer.pages.buffer);
    if (options.format === 'bgrx') copyRows(target, this.#width, rgba, rect);
    else writeBgrx(target, this.#width, rgba, rect);
    this.#damage(rect);
  }

  /** Unmaps the window (the daemon hides it and lets go of its buffer's mapping). */
  hide(): void {
    this.#checkOpen('hide');
    if (!this.#shown) return;
    this.#shown = false;
    this.link.send({ kind: 'unmap', window: this.id });
  }

  /** Maps it again: the buffer is announced again (the daemon released it on unmap) and redrawn. */
  show(): void {
    this.#checkOpen('show');
    if (this.#shown) return;
    this.#shown = true;
    this.#sendDump();
    this.link.send({
      kind: 'map',
      window: this.id,
      transientFor: this.#transientFor,
      overrideRedirect: this.#overrideRedirect,
    });
    this.#damage({ x: 0, y: 0, width: this.#width, height: this.#height });
  }

  get shown(): boolean {
    return this.#shown;
  }

  setTitle(title: string): void {
    this.#checkOpen('setTitle');
    this.#title = title;
    this.link.send({ kind: 'wmname', window: this.id, data: encodeTitle(title) });
  }

  /** Resizes from the VM side: a new buffer (old content kept where it overlaps) shared and announced. */
  resize(width: number, height: number): void {
    this.#checkOpen('resize');
    checkSize('resize', width, height);
    if (width === this.#width && height === this.#height) return;
    this.#reshare(width, height);
    this.link.send({
      kind: 'configure',
      window: this.id,
      x: this.#x,
      y: this.#y,
      width,
      height,
      overrideRedirect: 0,
    });
    this.#sendDump();
    this.#damage({ x: 0, y: 0, width, height });
  }

  /** Destroys the window; its grants are released once the daemon says it let go of them. */
  close(): Promise<void> {
    if (this.#state !== 'open') return this.closed;
    this.#state = 'closing';
    this.link.send({ kind: 'destroy', window: this.id });
    this.events.end();
    // Before 1.5 the daemon sends no destroy echo: it is done with the window as it reads ours.
    if (this.link.version < MIN_BIDIRECTIONAL_MSG_DESTROY) this.destroyed();
    return this.closed;
  }

  // ---- called by the agent for daemon messages ---------------------------------------------------

  /** The daemon's MSG_CONFIGURE (the user moved or resized it): apply, acknowledge with the same values. */
  configuredByDaemon(rect: Rect): void {
    if (this.#state !== 'open') return;
    let resized = rect.width !== this.#width || rect.height !== this.#height;
    const moved = rect.x !== this.#x || rect.y !== this.#y;
    if (resized) {
      try {
        this.#reshare(rect.width, rect.height);
      } catch (error) {
        // No pages for the new size (gntalloc's limit): keep the old image, which the daemon
        // clips to, and still acknowledge, or it would repeat the configure forever.
        this.link.shareFailed(error);
        resized = false;
      }
    }
    this.#x = rect.x;
    this.#y = rect.y;
    this.link.send({ kind: 'configure', window: this.id, ...rect, overrideRedirect: 0 });
    if (resized) {
      this.#sendDump();
      this.#damage({ x: 0, y: 0, width: rect.width, height: rect.height });
      this.events.push({ type: 'resize', width: rect.width, height: rect.height });
    }
    if (moved) this.events.push({ type: 'move', x: rect.x, y: rect.y });
  }

  /** MSG_WINDOW_DUMP_ACK: the daemon processed our oldest unacknowledged dump and let go of the one before. */
  dumpAcknowledged(): boolean {
    const acked = this.#unacked.shift();
    if (!acked) return false;
    this.#release(this.#daemonHolds);
    this.#daemonHolds = acked;
    return true;
  }

  /** The daemon's MSG_DESTROY echo (or, before 1.5, our own destroy): every buffer is free now. */
  destroyed(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    const all = new Set([this.#buffer.pages, ...this.#unacked, ...this.#retired]);
    if (this.#daemonHolds) all.add(this.#daemonHolds);
    for (const pages of all) unshare(pages);
    this.#retired.length = 0;
    this.#unacked.length = 0;
    this.#daemonHolds = undefined;
    this.events.end();
    this.link.forget(this);
    this.#closed.resolve();
  }

  /** The connection to the daemon is gone: nothing is mapped on the other side any more. */
  disconnected(): void {
    this.destroyed();
  }

  // ---- internals --------------------------------------------------------------------------------------

  #checkOpen(operation: string): void {
    if (this.#state !== 'open') throw new GuiError(operation, 'ECLOSED', `window ${this.id} is closed`);
  }

  #allocate(width: number, height: number): Buffer {
    const pageCount = Math.ceil((width * height * BYTES_PER_PIXEL) / PAGE_SIZE);
    return { pages: this.link.share(pageCount), width, height };
  }

  #reshare(width: number, height: number): void {
    const old = this.#buffer;
    const next = this.#allocate(width, height);
    copyOverlap(
      new Uint8Array(old.pages.buffer),
      old.width,
      old.height,
      new Uint8Array(next.pages.buffer),
      width,
      height,
    );
    this.#buffer = next;
    this.#width = width;
    this.#height = height;
    // Before 1.7 the daemon never says when it let go. The C X driver released at once, which
    // races the daemon's mapping (what 1.7's ack fixed); we keep the last few until the window
    // goes, and only a window resized more often than that drops its oldest.
    if (this.link.version < MIN_MSG_WINDOW_DUMP_ACK) {
      this.#retired.push(old.pages);
      if (this.#retired.length > MAX_RETIRED) unshare(this.#retired.shift()!);
    }
  }

  #sendDump(): void {
    const { pages, width, height } = this.#buffer;
    this.link.send({
      kind: 'window-dump',
      window: this.id,
      dumpType: WINDOW_DUMP_TYPE_GRANT_REFS,
      width,
      height,
      bpp: DUMP_BPP,
      refs: Uint32Array.from(pages.refs),
    });
    if (this.link.version >= MIN_MSG_WINDOW_DUMP_ACK) this.#unacked.push(pages);
  }

  #damage(rect: Rect): void {
    this.link.send({ kind: 'shmimage', window: this.id, ...rect });
  }

  #release(pages: SharedPages | undefined): void {
    if (!pages || pages === this.#buffer.pages) return;
    unshare(pages);
  }
}

function unshare(pages: SharedPages): void {
  try {
    pages.unshare();
  } catch {
    // Already unshared (the domain is going away): nothing is left to free.
  }
}

function clampPosition(value: number, limit: number): number {
  if (!Number.isInteger(value)) throw new GuiError('openWindow', 'EINVAL', `position ${value}`);
  return Math.max(-limit, Math.min(limit, value));
}

function hintsFor(options: OpenWindowOptions) {
  let flags = 0;
  const minWidth = options.minWidth ?? 0;
  const minHeight = options.minHeight ?? 0;
  const maxWidth = options.maxWidth ?? 0;
  const maxHeight = options.maxHeight ?? 0;
  if (options.minWidth !== undefined || options.minHeight !== undefined) flags |= SizeHint.PMinSize;
  if (options.maxWidth !== undefined || options.maxHeight !== undefined) flags |= SizeHint.PMaxSize;
  if (options.x !== undefined || options.y !== undefined) flags |= SizeHint.PPosition;
  for (const [w, h] of [
    [minWidth, minHeight],
    [maxWidth || 1, maxHeight || 1],
  ] as const) {
    if (w > MAX_WINDOW_WIDTH || h > MAX_WINDOW_HEIGHT || w < 0 || h < 0 || !Number.isInteger(w + h)) {
      throw new GuiError('openWindow', 'EINVAL', `size hint ${w}x${h}`);
    }
  }
  return {
    flags,
    minWidth,
    minHeight,
    maxWidth: maxWidth || MAX_WINDOW_WIDTH,
    maxHeight: maxHeight || MAX_WINDOW_HEIGHT,
    widthInc: 0,
    heightInc: 0,
    baseWidth: 0,
    baseHeight: 0,
  };
}

/**
 * RGBA rows into the shared X8R8G8B8 image (bytes B, G, R, X on little-endian x86), stride
 * width × 4, which the daemon puts with xcb_shm_put_image at depth 24.
 */
export function writeBgrx(target: Uint8Array, targetWidth: number, rgba: Uint8Array, rect: Rect): void {
  // Int32 views: pixel words stay small integers for the JIT (a Uint32Array read above 2^31 is a double).
  const target32 = new Int32Array(target.buffer, target.byteOffset, target.length >> 2);
  if (rgba.byteOffset % 4 !== 0) rgba = rgba.slice();
  const source32 = new Int32Array(rgba.buffer, rgba.byteOffset, rgba.length >> 2);
  const width = rect.width;
  for (let row = 0; row < rect.height; row++) {
    let from = row * width;
    let to = (rect.y + row) * targetWidth + rect.x;
    const end = from + width;
    while (from < end) {
      const p = source32[from++]!; // R G B A in memory: A<<24 | B<<16 | G<<8 | R
      // Swap the halves (B and R change places), keep B and R, add G: B G R 0 in memory.
      target32[to++] = (((p << 16) | (p >>> 16)) & 0xff00ff) | (p & 0xff00);
    }
  }
}

function copyRows(target: Uint8Array, targetWidth: number, bgrx: Uint8Array, rect: Rect): void {
  const rowBytes = rect.width * BYTES_PER_PIXEL;
  if (rect.x === 0 && rect.width === targetWidth) {
    target.set(bgrx, rect.y * rowBytes);
    return;
  }
  for (let row = 0; row < rect.height; row++) {
    target.set(
      bgrx.subarray(row * rowBytes, (row + 1) * rowBytes),
      ((rect.y + row) * targetWidth + rect.x) * 4,
    );
  }
}

function copyOverlap(
  from: Uint8Array,
  fromWidth: number,
  fromHeight: number,
  to: Uint8Array,
  toWidth: number,
  toHeight: number,
): void {
  const rowBytes = Math.min(fromWidth, toWidth) * BYTES_PER_PIXEL;
  for (let row = 0; row < Math.min(fromHeight, toHeight); row++) {
    const start = row * fromWidth * BYTES_PER_PIXEL;
    to.set(from.subarray(start, start + rowBytes), row * toWidth * BYTES_PER_PIXEL);
  }
}
