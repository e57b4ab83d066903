/**
 * The viewer's application core, sans-IO: input events and decode results in, a BGRX frame,
 * a title, a wanted window size, timer and decode requests out. The VM's main loop owns the
 * window, the clock and the decoding (in a worker); everything it does is driven by the
 * `ViewerUpdate` each call returns.
 *
 *   const viewer = new ImageViewer({ name, monitors: agent.monitors, limits: decodeBudget(memory) });
 *   let request = viewer.open(bytes);
 *   let update;
 *   do update = viewer.decoded(await decodeInWorker(bytes, request.limits, request.options), now());
 *   while ((request = update.decode) && viewer.state === 'loading');
 *   const win = agent.openWindow({ title: update.title, ...viewer.window });
 *   win.draw(viewer.render(), undefined, { format: 'bgrx' });
 *   // then: viewer.handle(event, now()) for each window event, viewer.tick(now()) at update.wakeAt,
 *   // viewer.decoded(...) for each update.decode; apply every update (see `ViewerUpdate`).
 */
import { FrameCompositor } from '../decoders/compose.ts';
import { readJpegHeader } from '../decoders/jpeg.ts';
import { sniffFormat } from '../decoders/sniff.ts';
import type {
  DecodedImage,
  DecodeLimits,
  DecodeOptions,
  DecodeResult,
  ImageFormat,
  ScaleDenominator,
} from '../decoders/types.ts';
import { pngExifOrientation } from './exif.ts';
import { commandForKey, HELP_LINES, type ViewerCommand } from './keys.ts';
import {
  type Box,
  chooseMonitor,
  clampOffset,
  fitZoom,
  jpegShrinkOnLoad,
  largestShrink,
  type Monitor,
  scaledSize,
  stepZoom,
  windowBox,
  windowFor,
} from './layout.ts';
import {
  displayedSize,
  IDENTITY,
  isIdentity,
  rotate,
  type Transform,
  transformForOrientation,
} from './orientation.ts';
import { BACKGROUND, ImageRenderer } from './render.ts';
import type { Pixels } from './resample.ts';
import {
  dimRect,
  drawText,
  fillRect,
  GLYPH_HEIGHT,
  GLYPH_WIDTH,
  rgb,
  type Surface,
  wrapText,
} from './text.ts';
import { imageTitle, sanitiseDisplayName } from './title.ts';

/**
 * The window events the viewer reads: the GUI agent's `GuiInputEvent` fits as it is (same
 * shapes; `keysym` is the X keysym name in the VM's layout).
 */
export type ViewerInputEvent =
  | { type: 'key'; pressed: boolean; keysym: string | undefined; state: number }
  | { type: 'button'; pressed: boolean; button: number; x: number; y: number; state: number }
  | { type: 'wheel'; dx: number; dy: number; x: number; y: number; state: number }
  | { type: 'motion'; x: number; y: number; state: number }
  | { type: 'enter' | 'leave'; x: number; y: number; state: number }
  | { type: 'focus'; focused: boolean }
  | { type: 'resize'; width: number; height: number }
  | { type: 'move'; x: number; y: number }
  | { type: 'close-request' };

/** A decode to run on the file's bytes (`decodeInWorker(bytes, limits, options)`), result to `decoded`. */
export interface DecodeRequest {
  readonly limits: DecodeLimits;
  readonly options: DecodeOptions;
}

/** What the host does after each call. */
export interface ViewerUpdate {
  /** The window's content changed: draw `render()` (BGRX, width × height). */
  readonly redraw: boolean;
  /** The title to show (set it when it differs from the window's). */
  readonly title: string;
  /** The window size the viewer draws for (resize the window when it differs). */
  readonly width: number;
  readonly height: number;
  /** Call `tick(now)` at this time of the injected clock (ms); undefined: no timer. */
  readonly wakeAt: number | undefined;
  /** Run this decode and pass its result to `decoded` (at most one is outstanding). */
  readonly decode: DecodeRequest | undefined;
  /** The user closed the viewer: close the window and end the call. */
  readonly close: boolean;
}

export interface ImageViewerOptions {
  /** The file's name as received (`view-only-` already taken off); made ASCII-safe here. */
  readonly name: string;
  /** The monitor layout the GUI agent reports (`GuiAgent.monitors`). */
  readonly monitors: readonly Monitor[];
  /** Decoder limits, normally `decodeBudget(the VM's memory)`. */
  readonly limits: DecodeLimits;
}

export type ViewerState = 'loading' | 'showing' | 'error' | 'closed';

const MOD_SHIFT = 1;
/** Frame delays up to this many ms are shown as 100 ms, as Firefox and Chromium do for GIFs. */
const MIN_FRAME_DELAY = 10;
const DEFAULT_FRAME_DELAY = 100;
const TEXT_COLOUR = rgb(0xe8, 0xe8, 0xe8);
const ERROR_COLOUR = rgb(0xff, 0x80, 0x80);
const ERROR_COLUMNS = 72;
const MARGIN = 16;
const LINE_HEIGHT = GLYPH_HEIGHT + 3;
const HELP_MARGIN = 10;
const HELP_LINE_HEIGHT = GLYPH_HEIGHT + 2;

interface Probe {
  width: number;
  height: number;
}

export class ImageViewer {
  readonly name: string;
  readonly #limits: DecodeLimits;
  readonly #monitor: Monitor;
  readonly #box: Box;
  #state: ViewerState = 'loading';
  #format: ImageFormat | undefined;
  #probe: Probe | undefined;
  /** Orientation read from the bytes when the decoder does not report it (PNG eXIf). */
  #fileOrientation = 1;

  #image: DecodedImage | undefined;
  #compositor: FrameCompositor | undefined;
  #decodedScale: ScaleDenominator = 1;
  /** The finest reduction that may be asked for (raised when a finer decode was refused). */
  #finestScale: ScaleDenominator = 1;
  /** Reductions a re-decode was refused at (any reason): never asked for again. */
  readonly #refusedScales = new Set<ScaleDenominator>();
  #inFlight: ScaleDenominator | 'fit' | undefined;
  #pending: DecodeRequest | undefined;
  #storedWidth = 1;
  #storedHeight = 1;
  #transform: Transform = IDENTITY;
  /** Quarter turns the user made (mod 4). */
  #turns = 0;
  #zoom = 1;
  #fitMode = true;
  #left = 0;
  #top = 0;
  #winX = 0;
  #winY = 0;
  #winW: number;
  #winH: number;
  #pointer: { x: number; y: number } | undefined;
  #drag: { x: number; y: number } | undefined;

  #frame = 0;
  #playing = false;
  #nextAt = 0;
  #loopsDone = 0;
  #source: Pixels | undefined;
  #sourceVersion = 0;

  #help = false;
  #errorLines: string[] = [];
  #dirty = true;
  #close = false;
  #surface: Surface | undefined;
  readonly #renderer = new ImageRenderer();

  constructor(options: ImageViewerOptions) {
    this.name = sanitiseDisplayName(options.name);
    this.#limits = options.limits;
    this.#monitor = chooseMonitor(options.monitors);
    this.#box = windowBox(this.#monitor);
    this.#winW = Math.min(this.#box.width, 480);
    this.#winH = Math.min(this.#box.height, 200);
    this.#place();
  }

  get state(): ViewerState {
    return this.#state;
  }

  /** Where and how big to open the window (valid for the state the viewer is in). */
  get window(): { x: number; y: number; width: number; height: number } {
    return { x: this.#winX, y: this.#winY, width: this.#winW, height: this.#winH };
  }

  get title(): string {
    if (this.#state === 'loading') return `${this.name} - loading`;
    if (this.#state === 'error') return `${this.name} - cannot open`;
    const [w, h] = displayedSize(this.#transform, this.#storedWidth, this.#storedHeight);
    return imageTitle(this.name, w, h, this.#zoom);
  }

  /** The zoom (screen pixels per file pixel), the rotation and the image's place in the window. */
  get view(): {
    zoom: number;
    fit: boolean;
    transform: Transform;
    left: number;
    top: number;
    frame: number;
    playing: boolean;
    help: boolean;
  } {
    return {
      zoom: this.#zoom,
      fit: this.#fitMode,
      transform: this.#transform,
      left: this.#left,
      top: this.#top,
      frame: this.#frame,
      playing: this.#playing,
      help: this.#help,
    };
  }

  /**
   * Where the image is in the window and its size on screen (it may reach past the window's
   * edges), undefined unless showing: the area a screenshot compares with a reference.
   */
  get imageArea(): { left: number; top: number; width: number; height: number } | undefined {
    if (this.#state !== 'showing') return undefined;
    const [width, height] = this.#displayed();
    return { left: this.#left, top: this.#top, width, height };
  }

  /** What the error window says (undefined unless the state is 'error'), for logs and tests. */
  get errorText(): string | undefined {
    return this.#state === 'error' ? this.#errorLines.join('\n') : undefined;
  }

  /** The scale the shown image was decoded at (1, 2, 4, 8). */
  get decodedScale(): ScaleDenominator {
    return this.#decodedScale;
  }

  /**
   * Starts with the file's bytes: the first decode to run. A JPEG is decoded directly at the
   * reduction its fitted view allows (its size is read from the header first).
   */
  open(bytes: Uint8Array): DecodeRequest {
    this.#format = sniffFormat(bytes);
    this.#probe = probeSize(bytes, this.#format);
    if (this.#format === 'png') this.#fileOrientation = pngExifOrientation(bytes);
    let scale: ScaleDenominator = 1;
    if (this.#format === 'jpeg' && this.#probe) {
      const transform = transformForOrientation(jpegOrientation(bytes));
      const ratio = this.#fitRatio(this.#probe.width, this.#probe.height, transform);
      scale = jpegShrinkOnLoad(ratio, !isIdentity(transform));
    }
    this.#inFlight = scale;
    return { limits: this.#limits, options: { scale } };
  }

  /** The result of the last `DecodeRequest`. */
  decoded(result: DecodeResult, now: number): ViewerUpdate {
    const requested = this.#inFlight;
    this.#inFlight = undefined;
    if (this.#state === 'loading') {
      if (result.ok) this.#show(result.image, now);
      else if (result.kind === 'limit') this.#fallback(result.reason, requested);
      else this.#fail(describeRefusal(result.kind, result.reason));
    } else if (this.#state === 'showing') {
      if (result.ok && result.image.frames.length === 1) {
        this.#setImage(result.image);
        this.#dirty = true;
      } else if (requested !== undefined && requested !== 'fit') {
        this.#refusedScales.add(requested);
        // Finer did not fit: stay at this scale.
        if (requested < this.#decodedScale) this.#finestScale = this.#decodedScale;
      }
      this.#wantScale();
    }
    return this.#update();
  }

  /** The host could not decode or receive the file (a worker died, the transfer broke). */
  failed(reason: string, _now: number): ViewerUpdate {
    if (this.#state === 'loading' || this.#state === 'showing') this.#fail(reason);
    return this.#update();
  }

  handle(event: ViewerInputEvent, now: number): ViewerUpdate {
    if (this.#state === 'closed') return this.#update();
    switch (event.type) {
      case 'key':
        if (event.pressed) this.#command(commandForKey(event.keysym), (event.state & MOD_SHIFT) !== 0, now);
        break;
      case 'button':
        this.#pointer = { x: event.x, y: event.y };
        if (event.button === 1) this.#drag = event.pressed ? { x: event.x, y: event.y } : undefined;
        break;
      case 'motion':
        this.#pointer = { x: event.x, y: event.y };
        if (this.#drag) {
          this.#panBy(event.x - this.#drag.x, event.y - this.#drag.y);
          this.#drag = { x: event.x, y: event.y };
        }
        break;
      case 'wheel':
        this.#pointer = { x: event.x, y: event.y };
        if (this.#state !== 'showing') break;
        if (event.dy !== 0 && (event.state & MOD_SHIFT) === 0)
          this.#zoomAt(stepZoom(this.#zoom, event.dy < 0 ? 1 : -1, this.#fitForWindow()), event.x, event.y);
        else this.#panBy(-(event.dx || event.dy) * this.#panStep(this.#winW, false), 0);
        break;
      case 'enter':
        this.#pointer = { x: event.x, y: event.y };
        break;
      case 'leave':
        this.#pointer = undefined;
        this.#drag = undefined;
        break;
      case 'resize':
        this.#resized(event.width, event.height);
        break;
      case 'close-request':
        this.#closeNow();
        break;
      default:
        break;
    }
    return this.#update();
  }

  /** The timer the last update asked for ran out (or any time: early calls do nothing). */
  tick(now: number): ViewerUpdate {
    if (this.#playing && now >= this.#nextAt) this.#advance(now);
    return this.#update();
  }

  /** The whole window as BGRX (width × height × 4 bytes); the array is reused by the next call. */
  render(): Uint8Array {
    const surface = this.#surfaceFor(this.#winW, this.#winH);
    if (this.#state === 'showing') this.#renderImage(surface);
    else {
      surface.pixels.fill(BACKGROUND);
      if (this.#state === 'error') this.#renderError(surface);
      if (this.#state === 'loading') drawText(surface, MARGIN, MARGIN, `Loading ${this.name}`, TEXT_COLOUR);
    }
    if (this.#help) this.#renderHelp(surface);
    return new Uint8Array(surface.pixels.buffer, 0, this.#winW * this.#winH * 4);
  }

  // ---- opening ------------------------------------------------------------------------------------

  #show(image: DecodedImage, now: number): void {
    this.#storedWidth = image.scaled?.storedWidth ?? image.width;
    this.#storedHeight = image.scaled?.storedHeight ?? image.height;
    this.#transform = transformForOrientation(
      image.orientation !== 1 ? image.orientation : this.#fileOrientation,
    );
    this.#setImage(image);
    const [ow, oh] = this.#oriented();
    this.#zoom = fitZoom(ow, oh, this.#box);
    this.#fitMode = true;
    const [dw, dh] = this.#displayed();
    const size = windowFor(dw, dh, this.#box);
    this.#winW = size.width;
    this.#winH = size.height;
    this.#place();
    this.#centre();
    this.#state = 'showing';
    if (image.frames.length > 1) {
      this.#playing = true;
      this.#nextAt = now + frameDelay(image, 0);
    }
    this.#dirty = true;
  }

  #setImage(image: DecodedImage): void {
    this.#image = image;
    this.#decodedScale = image.scaled?.denominator ?? 1;
    this.#compositor = new FrameCompositor(image);
    this.#renderer.forget();
    this.#source = undefined;
    if (this.#frame >= image.frames.length) this.#frame = 0;
  }

  /**
   * A decode did not fit the memory budget: try the next reduction (stills only; the decoders
   * refuse animations again), as long as the fitted view stays a downscale of it, so memory
   * decides how sharp the view is rather than whether there is one. Without a size from the
   * header, one try at the reduction that fits the window.
   */
  #fallback(reason: string, requested: ScaleDenominator | 'fit' | undefined): void {
    if (this.#probe && requested !== 'fit') {
      const limit = Math.max(
        2,
        largestShrink(this.#fitRatio(this.#probe.width, this.#probe.height, IDENTITY)),
      );
      const next = ((requested ?? 1) * 2) as ScaleDenominator;
      if (next <= limit) {
        this.#request(next);
        this.#finestScale = next;
        return;
      }
    } else if (!this.#probe && requested !== 'fit') {
      this.#inFlight = 'fit';
      this.#pending = { limits: this.#limits, options: { fit: { ...this.#box } } };
      return;
    }
    this.#fail(describeRefusal('limit', reason));
  }

  #fail(reason: string): void {
    this.#state = 'error';
    this.#image = undefined;
    this.#compositor = undefined;
    this.#source = undefined;
    this.#renderer.forget();
    this.#playing = false;
    const lines = [
      'This file cannot be shown:',
      '',
      this.name,
      '',
      ...wrapText(reason, ERROR_COLUMNS),
      '',
      'Press q or Escape to close.',
    ];
    this.#errorLines = lines;
    const textWidth = Math.max(...lines.map((l) => l.length)) * GLYPH_WIDTH;
    const size = windowFor(textWidth + 2 * MARGIN, lines.length * LINE_HEIGHT + 2 * MARGIN, this.#box);
    this.#winW = size.width;
    this.#winH = size.height;
    this.#place();
    this.#dirty = true;
  }

  #request(scale: ScaleDenominator): void {
    this.#inFlight = scale;
    this.#pending = { limits: this.#limits, options: { scale } };
  }

  /** For a still JPEG: ask for a decode at the reduction the current zoom wants, if it differs. */
  #wantScale(): void {
    if (this.#state !== 'showing' || this.#format !== 'jpeg' || this.#inFlight !== undefined) return;
    if (this.#image?.frames.length !== 1) return;
    const [sw, sh] = this.#scaledStored();
    const ratio = Math.min(this.#storedWidth / sw, this.#storedHeight / sh);
    const want = Math.max(
      this.#finestScale,
      jpegShrinkOnLoad(ratio, !isIdentity(this.#transform)),
    ) as ScaleDenominator;
    if (want !== this.#decodedScale && !this.#refusedScales.has(want)) this.#request(want);
  }

  // ---- commands -----------------------------------------------------------------------------------

  #command(command: ViewerCommand | undefined, shift: boolean, now: number): void {
    if (command === undefined) return;
    if (command === 'help') {
      this.#help = !this.#help;
      this.#dirty = true;
      return;
    }
    if (command === 'close') {
      if (this.#help) {
        this.#help = false;
        this.#dirty = true;
      } else this.#closeNow();
      return;
    }
    if (this.#state !== 'showing') return;
    const anchor = this.#pointer ?? { x: this.#winW / 2, y: this.#winH / 2 };
    switch (command) {
      case 'zoom-in':
      case 'zoom-out':
        this.#zoomAt(
          stepZoom(this.#zoom, command === 'zoom-in' ? 1 : -1, this.#fitForWindow()),
          anchor.x,
          anchor.y,
        );
        break;
      case 'actual-size':
        this.#zoomAt(1, anchor.x, anchor.y);
        break;
      case 'fit':
        this.#zoom = this.#fitForWindow();
        this.#fitMode = true;
        this.#centre();
        this.#wantScale();
        break;
      case 'pan-left':
        this.#panBy(this.#panStep(this.#winW, shift), 0);
        return; // redrawn only if it moved
      case 'pan-right':
        this.#panBy(-this.#panStep(this.#winW, shift), 0);
        return; // redrawn only if it moved
      case 'pan-up':
        this.#panBy(0, this.#panStep(this.#winH, shift));
        return; // redrawn only if it moved
      case 'pan-down':
        this.#panBy(0, -this.#panStep(this.#winH, shift));
        return; // redrawn only if it moved
      case 'rotate-clockwise':
      case 'rotate-anticlockwise':
        this.#transform = rotate(this.#transform, command === 'rotate-clockwise' ? 1 : -1);
        this.#turns = (this.#turns + (command === 'rotate-clockwise' ? 1 : 3)) % 4;
        if (this.#fitMode) this.#zoom = this.#fitForWindow();
        this.#centre();
        this.#wantScale();
        break;
      case 'play-pause':
        if (!this.#compositor || this.#compositor.frameCount < 2) break;
        this.#playing = !this.#playing;
        if (this.#playing) {
          this.#loopsDone = 0;
          this.#nextAt = now + frameDelay(this.#image as DecodedImage, this.#frame);
        }
        break;
      case 'next-frame':
      case 'previous-frame': {
        const count = this.#compositor?.frameCount ?? 1;
        if (count < 2) break;
        this.#playing = false;
        this.#frame = (this.#frame + (command === 'next-frame' ? 1 : count - 1)) % count;
        this.#frameChanged();
        break;
      }
    }
    this.#dirty = true;
  }

  #zoomAt(zoom: number, x: number, y: number): void {
    if (this.#state !== 'showing') return;
    const [dw, dh] = this.#displayed();
    const fx = (x - this.#left) / dw;
    const fy = (y - this.#top) / dh;
    this.#zoom = zoom;
    this.#fitMode = zoom === this.#fitForWindow();
    const [nw, nh] = this.#displayed();
    this.#left = clampOffset(Math.round(x - fx * nw), nw, this.#winW);
    this.#top = clampOffset(Math.round(y - fy * nh), nh, this.#winH);
    this.#dirty = true;
    this.#wantScale();
  }

  #panBy(dx: number, dy: number): void {
    if (this.#state !== 'showing') return;
    const [dw, dh] = this.#displayed();
    const left = clampOffset(this.#left + dx, dw, this.#winW);
    const top = clampOffset(this.#top + dy, dh, this.#winH);
    if (left !== this.#left || top !== this.#top) this.#dirty = true;
    this.#left = left;
    this.#top = top;
  }

  #panStep(size: number, page: boolean): number {
    return page ? Math.max(1, Math.round(size * 0.9)) : Math.max(16, Math.round(size / 8));
  }

  #resized(width: number, height: number): void {
    if (width === this.#winW && height === this.#winH) return;
    this.#winW = width;
    this.#winH = height;
    if (this.#state === 'showing') {
      if (this.#fitMode) {
        this.#zoom = this.#fitForWindow();
        this.#centre();
        this.#wantScale();
      } else this.#panBy(0, 0);
    }
    this.#dirty = true;
  }

  #closeNow(): void {
    this.#state = 'closed';
    this.#close = true;
    this.#playing = false;
    this.#image = undefined;
    this.#compositor = undefined;
    this.#source = undefined;
    this.#renderer.forget();
  }

  // ---- animation ----------------------------------------------------------------------------------

  #advance(now: number): void {
    const image = this.#image as DecodedImage;
    const count = image.frames.length;
    let next = this.#frame + 1;
    if (next >= count) {
      this.#loopsDone++;
      if (image.loopCount !== 0 && this.#loopsDone >= image.loopCount) {
        this.#playing = false; // played as often as the file asks: stays on its last frame
        return;
      }
      next = 0;
    }
    this.#frame = next;
    // Keep to the file's timing, but start afresh after a stall (the VM was paused).
    const due = this.#nextAt + frameDelay(image, next);
    this.#nextAt = due < now - 1000 ? now + frameDelay(image, next) : due;
    this.#frameChanged();
    this.#dirty = true;
  }

  #frameChanged(): void {
    this.#source = undefined;
    this.#dirty = true;
  }

  // ---- geometry -----------------------------------------------------------------------------------

  #oriented(): [number, number] {
    return displayedSize(this.#transform, this.#storedWidth, this.#storedHeight);
  }

  /** The whole image's size at the current zoom, in stored orientation. */
  #scaledStored(): [number, number] {
    return [scaledSize(this.#storedWidth, this.#zoom), scaledSize(this.#storedHeight, this.#zoom)];
  }

  #displayed(): [number, number] {
    const [sw, sh] = this.#scaledStored();
    return displayedSize(this.#transform, sw, sh);
  }

  #fitForWindow(): number {
    const [ow, oh] = this.#oriented();
    return fitZoom(ow, oh, { width: this.#winW, height: this.#winH });
  }

  /** How many times smaller than stored the fitted view of a width × height image is. */
  #fitRatio(width: number, height: number, transform: Transform): number {
    const [ow, oh] = displayedSize(transform, width, height);
    const zoom = fitZoom(ow, oh, this.#box);
    return Math.min(width / scaledSize(width, zoom), height / scaledSize(height, zoom));
  }

  #centre(): void {
    const [dw, dh] = this.#displayed();
    this.#left = clampOffset(0, dw, this.#winW);
    this.#top = clampOffset(0, dh, this.#winH);
    if (dw > this.#winW) this.#left = Math.round((this.#winW - dw) / 2);
    if (dh > this.#winH) this.#top = Math.round((this.#winH - dh) / 2);
  }

  /** Centres the window on the monitor. */
  #place(): void {
    const m = this.#monitor;
    this.#winX = m.x + Math.max(0, Math.floor((m.width - this.#winW) / 2));
    this.#winY = m.y + Math.max(0, Math.floor((m.height - this.#winH) / 2));
  }

  // ---- drawing ------------------------------------------------------------------------------------

  #surfaceFor(width: number, height: number): Surface {
    const s = this.#surface;
    if (s && s.width === width && s.height === height) return s;
    this.#surface = undefined;
    const surface = { pixels: new Int32Array(width * height), width, height };
    this.#surface = surface;
    return surface;
  }

  #renderImage(surface: Surface): void {
    const image = this.#image as DecodedImage;
    if (!this.#source) {
      const frame = (this.#compositor as FrameCompositor).frame(this.#frame);
      // The renderer reads pixels as 32-bit words: copy once here rather than on every draw.
      const data = frame.byteOffset % 4 === 0 ? frame : frame.slice();
      this.#source = { data, width: image.width, height: image.height };
      this.#sourceVersion++;
    }
    const [sw, sh] = this.#scaledStored();
    this.#renderer.render(surface, {
      source: this.#source,
      sourceVersion: this.#sourceVersion,
      transform: this.#transform,
      turnedQuarter: this.#turns % 2 === 1,
      scaledWidth: sw,
      scaledHeight: sh,
      left: this.#left,
      top: this.#top,
    });
  }

  #renderError(surface: Surface): void {
    this.#errorLines.forEach((line, i) => {
      drawText(surface, MARGIN, MARGIN + i * LINE_HEIGHT, line, i === 0 ? ERROR_COLOUR : TEXT_COLOUR);
    });
  }

  /** The key help, centred: 48 columns × 14 lines fit the smallest window (320 × 240). */
  #renderHelp(surface: Surface): void {
    const width = Math.max(...HELP_LINES.map((l) => l.length)) * GLYPH_WIDTH + 2 * HELP_MARGIN;
    const height = HELP_LINES.length * HELP_LINE_HEIGHT + 2 * HELP_MARGIN;
    const x = Math.floor((surface.width - width) / 2);
    const y = Math.floor((surface.height - height) / 2);
    dimRect(surface, x, y, width, height);
    fillRect(surface, x, y, width, 1, TEXT_COLOUR);
    fillRect(surface, x, y + height - 1, width, 1, TEXT_COLOUR);
    HELP_LINES.forEach((line, i) => {
      drawText(surface, x + HELP_MARGIN, y + HELP_MARGIN + i * HELP_LINE_HEIGHT, line, TEXT_COLOUR);
    });
  }

  #update(): ViewerUpdate {
    const decode = this.#pending;
    this.#pending = undefined;
    const redraw = this.#dirty && this.#state !== 'closed';
    this.#dirty = false;
    return {
      redraw,
      title: this.title,
      width: this.#winW,
      height: this.#winH,
      wakeAt: this.#playing ? this.#nextAt : undefined,
      decode,
      close: this.#close,
    };
  }
}

function frameDelay(image: DecodedImage, index: number): number {
  const delay = image.frames[index]?.delayMs ?? DEFAULT_FRAME_DELAY;
  return delay <= MIN_FRAME_DELAY ? DEFAULT_FRAME_DELAY : delay;
}

/** Stored size from the header, where it is cheap to read; undefined otherwise. */
function probeSize(bytes: Uint8Array, format: ImageFormat | undefined): Probe | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (format === 'png' && bytes.length >= 24)
    return sane(view.getUint32(16, false), view.getUint32(20, false));
  if (format === 'gif' && bytes.length >= 10) return sane(view.getUint16(6, true), view.getUint16(8, true));
  if (format === 'jpeg') {
    try {
      const header = readJpegHeader(bytes);
      return sane(header.frame.width, header.dnlHeight ?? header.frame.height);
    } catch {
      return undefined; // the decode itself will say what is wrong
    }
  }
  return undefined;
}

function jpegOrientation(bytes: Uint8Array): number {
  try {
    return readJpegHeader(bytes).orientation;
  } catch {
    return 1;
  }
}

function sane(width: number, height: number): Probe | undefined {
  return width > 0 && height > 0 ? { width, height } : undefined;
}

function describeRefusal(kind: string, reason: string): string {
  switch (kind) {
    case 'limit':
      return `It is too large for this viewer's memory: ${reason}.`;
    case 'deadline':
      return `Decoding it took too long: ${reason}.`;
    case 'unknown-format':
      return `It is not an image this viewer reads (PNG, JPEG, GIF, WebP, BMP): ${reason}.`;
    case 'unsupported':
      return `It uses a feature this viewer does not support: ${reason}.`;
    case 'truncated':
      return `The file is incomplete: ${reason}.`;
    default:
      return `The file is damaged: ${reason}.`;
  }
}
