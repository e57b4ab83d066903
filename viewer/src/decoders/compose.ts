/**
 * Plays an animation from its layers: one canvas, composited in order, so a viewer holds the
 * file's decoded sub-images plus a single canvas instead of every frame at canvas size. Going
 * forward one frame costs that frame's layers; going back starts again from frame 0.
 */
import type { DecodedImage, Frame, Layer } from './types.ts';

const littleEndian = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

export class FrameCompositor {
  readonly width: number;
  readonly height: number;
  readonly frameCount: number;
  private readonly frames: readonly Frame[];
  private canvas: Uint8Array | undefined;
  private canvas32: Uint32Array | undefined;
  /** The rectangle a `previous` layer covered, as it was before that layer was drawn. */
  private saved: Uint8Array = new Uint8Array(0);
  /** The frame the canvas shows (-1: blank). */
  private shown = -1;
  /** The layer drawn last, whose disposal is due before the next one is drawn. */
  private pending: Layer | undefined;

  constructor(image: DecodedImage) {
    this.width = image.width;
    this.height = image.height;
    this.frames = image.frames;
    this.frameCount = image.frames.length;
  }

  /**
   * The composed canvas of frame `index` (width × height RGBA). The array is the
   * compositor's own (or, for a still image, the layer's): valid until the next call, not to
   * be written. Copy it to keep it.
   */
  frame(index: number): Uint8Array {
    if (!Number.isInteger(index) || index < 0 || index >= this.frameCount)
      throw new RangeError(`frame ${index} does not exist (${this.frameCount} frames)`);
    const still = this.stillPixels();
    if (still) return still;
    const canvas = this.ensureCanvas();
    if (index < this.shown) {
      canvas.fill(0);
      this.shown = -1;
      this.pending = undefined;
    }
    while (this.shown < index) {
      this.shown++;
      for (const layer of (this.frames[this.shown] as Frame).layers) this.drawLayer(layer);
    }
    return canvas;
  }

  /** A single frame of one opaque-source layer covering the canvas is its own canvas. */
  private stillPixels(): Uint8Array | undefined {
    if (this.frameCount !== 1) return undefined;
    const layers = (this.frames[0] as Frame).layers;
    const only = layers[0];
    if (layers.length !== 1 || !only || only.palette || only.blend !== 'source') return undefined;
    if (only.x !== 0 || only.y !== 0 || only.width !== this.width || only.height !== this.height)
      return undefined;
    return only.pixels.length === this.width * this.height * 4 ? only.pixels : undefined;
  }

  private ensureCanvas(): Uint8Array {
    if (!this.canvas) {
      this.canvas = new Uint8Array(this.width * this.height * 4);
      this.canvas32 = littleEndian ? new Uint32Array(this.canvas.buffer) : undefined;
    }
    return this.canvas;
  }

  private drawLayer(layer: Layer): void {
    const canvas = this.canvas as Uint8Array;
    const W = this.width;
    if (this.pending) this.dispose(this.pending);
    // Clipped again here: layers come from decoders, but the canvas is ours to protect.
    const x0 = Math.min(layer.x, W);
    const y0 = Math.min(layer.y, this.height);
    const w = Math.max(0, Math.min(layer.width, W - x0));
    const h = Math.max(0, Math.min(layer.height, this.height - y0));
    const bpp = layer.palette ? 1 : 4;
    if (layer.pixels.length < layer.width * layer.height * bpp)
      throw new RangeError('layer pixels are shorter than its size');
    if (layer.dispose === 'previous') {
      if (this.saved.length < w * h * 4) this.saved = new Uint8Array(w * h * 4);
      for (let y = 0; y < h; y++) {
        const row = ((y0 + y) * W + x0) * 4;
        this.saved.set(canvas.subarray(row, row + w * 4), y * w * 4);
      }
    }
    this.pending = layer;
    if (w === 0 || h === 0) return;
    if (layer.palette) this.drawIndexed(layer, x0, y0, w, h);
    else this.drawRgba(layer, x0, y0, w, h);
  }

  private dispose(layer: Layer): void {
    const canvas = this.canvas as Uint8Array;
    const W = this.width;
    const x0 = Math.min(layer.x, W);
    const y0 = Math.min(layer.y, this.height);
    const w = Math.max(0, Math.min(layer.width, W - x0));
    const h = Math.max(0, Math.min(layer.height, this.height - y0));
    if (layer.dispose === 'background') {
      for (let y = 0; y < h; y++) {
        const row = ((y0 + y) * W + x0) * 4;
        canvas.fill(0, row, row + w * 4);
      }
    } else if (layer.dispose === 'previous') {
      for (let y = 0; y < h; y++) {
        const row = ((y0 + y) * W + x0) * 4;
        canvas.set(this.saved.subarray(y * w * 4, (y + 1) * w * 4), row);
      }
    }
    this.pending = undefined;
  }

  private drawRgba(layer: Layer, x0: number, y0: number, w: number, h: number): void {
    const canvas = this.canvas as Uint8Array;
    const src = layer.pixels;
    const W = this.width;
    for (let y = 0; y < h; y++) {
      const s0 = y * layer.width * 4;
      const d0 = ((y0 + y) * W + x0) * 4;
      if (layer.blend === 'source') {
        canvas.set(src.subarray(s0, s0 + w * 4), d0);
        continue;
      }
      for (let x = 0; x < w; x++) {
        const s = s0 + x * 4;
        over(
          canvas,
          d0 + x * 4,
          src[s] as number,
          src[s + 1] as number,
          src[s + 2] as number,
          src[s + 3] as number,
        );
      }
    }
  }

  private drawIndexed(layer: Layer, x0: number, y0: number, w: number, h: number): void {
    const canvas = this.canvas as Uint8Array;
    const pal = layer.palette as Uint8Array;
    const src = layer.pixels;
    const W = this.width;
    const c32 = this.canvas32;
    const pal32 =
      c32 && pal.byteOffset % 4 === 0 ? new Uint32Array(pal.buffer, pal.byteOffset, 256) : undefined;
    for (let y = 0; y < h; y++) {
      const s0 = y * layer.width;
      const d0 = (y0 + y) * W + x0;
      if (c32 && pal32) {
        // Little-endian RGBA words: alpha is the top byte.
        for (let x = 0; x < w; x++) {
          const v = pal32[src[s0 + x] as number] as number;
          const a = v >>> 24;
          if (a === 255 || layer.blend === 'source') c32[d0 + x] = v;
          else if (a !== 0) {
            const q = (src[s0 + x] as number) * 4;
            over(canvas, (d0 + x) * 4, pal[q] as number, pal[q + 1] as number, pal[q + 2] as number, a);
          }
        }
        continue;
      }
      for (let x = 0; x < w; x++) {
        const q = (src[s0 + x] as number) * 4;
        const d = (d0 + x) * 4;
        if (layer.blend === 'source') canvas.set(pal.subarray(q, q + 4), d);
        else
          over(canvas, d, pal[q] as number, pal[q + 1] as number, pal[q + 2] as number, pal[q + 3] as number);
      }
    }
  }
}

/** Porter-Duff "over" of one straight-alpha pixel onto the canvas at byte `d` (APNG spec). */
function over(canvas: Uint8Array, d: number, r: number, g: number, b: number, sa: number): void {
  if (sa === 255) {
    canvas[d] = r;
    canvas[d + 1] = g;
    canvas[d + 2] = b;
    canvas[d + 3] = 255;
    return;
  }
  if (sa === 0) return;
  const da = canvas[d + 3] as number;
  const oa = sa + (da * (255 - sa)) / 255;
  canvas[d] = Math.round((r * sa + ((canvas[d] as number) * da * (255 - sa)) / 255) / oa);
  canvas[d + 1] = Math.round((g * sa + ((canvas[d + 1] as number) * da * (255 - sa)) / 255) / oa);
  canvas[d + 2] = Math.round((b * sa + ((canvas[d + 2] as number) * da * (255 - sa)) / 255) / oa);
  canvas[d + 3] = Math.round(oa);
}

/** The one frame of a still image: `rgba` covers the whole canvas. */
export function stillFrames(width: number, height: number, rgba: Uint8Array): Frame[] {
  return [
    { delayMs: 0, layers: [{ x: 0, y: 0, width, height, pixels: rgba, blend: 'source', dispose: 'none' }] },
  ];
}

/** Every distinct buffer an image's layers hold (for transfer lists and memory accounting). */
export function imageBuffers(image: DecodedImage): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const frame of image.frames)
    for (const layer of frame.layers) {
      buffers.add(layer.pixels.buffer as ArrayBuffer);
      if (layer.palette) buffers.add(layer.palette.buffer as ArrayBuffer);
    }
  return [...buffers];
}
