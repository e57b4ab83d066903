/**
 * The 1:1 stand-in for the viewer core: the image at its own size (EXIF orientation and the
 * user's quarter turns applied) from the top-left corner, panned with the arrow keys, over a
 * checkerboard where it is transparent, animation played with its frame delays. No scaling:
 * the window is the image's size, up to `maxWindow`.
 */
import type { GuiInputEvent } from '@moat/gui-agent';
import { FrameCompositor } from '../decoders/compose.ts';
import type { DecodedImage } from '../decoders/types.ts';
import { type DisplayMap, displayMap } from './orientation.ts';
import type { ViewSession } from './view.ts';

/** Checkerboard squares (pixels) and their two greys, behind transparent pixels. */
export const CHECKER = { size: 8, light: 0x99, dark: 0x66 } as const;
const PAN_STEP = 32;

/** The checkerboard grey at window pixel (x, y). */
export function checkerGrey(x: number, y: number): number {
  return ((x >> 3) + (y >> 3)) & 1 ? CHECKER.dark : CHECKER.light;
}

/** `value` over `grey` with straight alpha `a`, rounded: (v·a + g·(255 − a) + 127) / 255. */
export function over(value: number, a: number, grey: number): number {
  return Math.floor((value * a + grey * (255 - a) + 127) / 255);
}

/** Title text: ASCII only (other characters become `?`), as `name - WxH - zoom%`. */
export function viewTitle(name: string, width: number, height: number, zoomPercent: number): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, '?');
  return `${ascii} - ${width}x${height} - ${Math.round(zoomPercent)}%`;
}

export class StandInView implements ViewSession {
  readonly #name: string;
  readonly #image: DecodedImage;
  readonly #frames: FrameCompositor;
  #frame = 0;
  #paused = false;
  #turns = 0;
  #map: DisplayMap;
  #panX = 0;
  #panY = 0;
  #width: number;
  #height: number;
  #playsLeft: number;

  constructor(name: string, image: DecodedImage, maxWindow: { width: number; height: number }) {
    this.#name = name;
    this.#image = image;
    this.#frames = new FrameCompositor(image);
    this.#map = displayMap(image.width, image.height, image.orientation, 0);
    this.#width = Math.max(1, Math.min(this.#map.width, maxWindow.width));
    this.#height = Math.max(1, Math.min(this.#map.height, maxWindow.height));
    this.#playsLeft = image.loopCount === 0 ? Number.POSITIVE_INFINITY : image.loopCount;
  }

  get width(): number {
    return this.#width;
  }
  get height(): number {
    return this.#height;
  }

  title(): string {
    // A still decoded at 1/n to fit the memory budget is shown at 100/n % of its stored size.
    const n = this.#image.scaled?.denominator ?? 1;
    const turned = this.#map.width !== this.#image.width;
    const stored = this.#image.scaled
      ? { width: this.#image.scaled.storedWidth, height: this.#image.scaled.storedHeight }
      : { width: this.#image.width, height: this.#image.height };
    return turned
      ? viewTitle(this.#name, stored.height, stored.width, 100 / n)
      : viewTitle(this.#name, stored.width, stored.height, 100 / n);
  }

  resize(width: number, height: number): void {
    this.#width = width;
    this.#height = height;
    this.#clampPan();
  }

  #clampPan(): void {
    this.#panX = Math.max(0, Math.min(this.#panX, this.#map.width - this.#width));
    this.#panY = Math.max(0, Math.min(this.#panY, this.#map.height - this.#height));
  }

  render(): Uint8Array {
    const canvas = this.#frames.frame(this.#frame);
    const W = this.#image.width;
    const { x0, xx, xy, y0, yx, yy, width: dw, height: dh } = this.#map;
    const out = new Uint8Array(this.#width * this.#height * 4);
    for (let wy = 0; wy < this.#height; wy++) {
      for (let wx = 0; wx < this.#width; wx++) {
        const o = (wy * this.#width + wx) * 4;
        const dx = wx + this.#panX;
        const dy = wy + this.#panY;
        const grey = checkerGrey(wx, wy);
        if (dx >= dw || dy >= dh) {
          out[o] = out[o + 1] = out[o + 2] = grey;
          out[o + 3] = 255;
          continue;
        }
        const s = ((y0 + yx * dx + yy * dy) * W + (x0 + xx * dx + xy * dy)) * 4;
        const a = canvas[s + 3]!;
        if (a === 255) {
          out[o] = canvas[s]!;
          out[o + 1] = canvas[s + 1]!;
          out[o + 2] = canvas[s + 2]!;
        } else {
          out[o] = over(canvas[s]!, a, grey);
          out[o + 1] = over(canvas[s + 1]!, a, grey);
          out[o + 2] = over(canvas[s + 2]!, a, grey);
        }
        out[o + 3] = 255;
      }
    }
    return out;
  }

  handle(event: GuiInputEvent): boolean {
    if (event.type !== 'key' || !event.pressed) return false;
    switch (event.keysym) {
      case 'Left':
        this.#panX -= PAN_STEP;
        break;
      case 'Right':
        this.#panX += PAN_STEP;
        break;
      case 'Up':
        this.#panY -= PAN_STEP;
        break;
      case 'Down':
        this.#panY += PAN_STEP;
        break;
      case 'r':
      case 'R':
        this.#turns += event.keysym === 'r' ? 1 : 3;
        this.#map = displayMap(this.#image.width, this.#image.height, this.#image.orientation, this.#turns);
        break;
      case 'space':
        this.#paused = !this.#paused;
        return false;
      case 'period':
        this.#paused = true;
        this.#step();
        break;
      default:
        return false;
    }
    this.#clampPan();
    return true;
  }

  nextFrameInMs(): number | undefined {
    if (this.#paused || this.#image.frames.length < 2) return undefined;
    if (this.#frame === this.#image.frames.length - 1 && this.#playsLeft <= 1) return undefined;
    // Browsers and libraries treat very short delays as 100 ms (GIFs written for 0 or 10 ms).
    const delay = this.#image.frames[this.#frame]!.delayMs;
    return delay <= 10 ? 100 : delay;
  }

  advanceFrame(): void {
    if (this.#frame === this.#image.frames.length - 1) this.#playsLeft--;
    this.#step();
  }

  #step(): void {
    this.#frame = (this.#frame + 1) % this.#image.frames.length;
  }
}

/** A window that says why a file was not shown (the title carries the reason). */
export class MessageView implements ViewSession {
  readonly #title: string;
  #width = 480;
  #height = 96;

  constructor(name: string, reason: string) {
    this.#title = `${name.replace(/[^\x20-\x7e]/g, '?')} - not shown: ${reason.replace(/[^\x20-\x7e]/g, '?')}`;
  }
  get width(): number {
    return this.#width;
  }
  get height(): number {
    return this.#height;
  }
  title(): string {
    return this.#title;
  }
  render(): Uint8Array {
    const out = new Uint8Array(this.#width * this.#height * 4);
    for (let i = 0; i < out.length; i += 4) {
      out[i] = 0x80;
      out[i + 1] = 0x20;
      out[i + 2] = 0x20;
      out[i + 3] = 255;
    }
    return out;
  }
  resize(width: number, height: number): void {
    this.#width = width;
    this.#height = height;
  }
  handle(): boolean {
    return false;
  }
  nextFrameInMs(): undefined {
    return undefined;
  }
  advanceFrame(): void {}
}
