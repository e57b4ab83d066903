/**
 * Animated test files for the viewer's host and lab tests: the same three frames as a GIF and a
 * WebP (written by sharp) and an APNG (written here: libvips writes no APNG), with the reference
 * pixels of each frame. sharp decodes every frame of a GIF or WebP (`page`), so those are the
 * references; it reads only an APNG's default image, so the APNG's reference is the RGBA it was
 * written from, and its first frame is checked against sharp.
 */
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { pngSignature } from '../png.ts';
import { pngChunk } from './png-chunk.ts';

export type AnimationFormat = 'gif' | 'apng' | 'webp';

export interface AnimationFixture {
  readonly file: Buffer;
  readonly width: number;
  readonly height: number;
  /** Each frame as shown (canvas composed), RGBA, width × height × 4 bytes. */
  readonly frames: Uint8Array[];
}

/** Different frames: a pattern moved and recoloured per frame, with alpha. */
export function animationFrames(width: number, height: number, count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, f) => {
    const out = new Uint8Array(width * height * 4);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = (y * width + x) * 4;
        out[i] = (x * 13 + f * 85) & 0xff;
        out[i + 1] = ((y + f * 7) * 29) & 0xff;
        out[i + 2] = (x * y + f * 60) & 0xff;
        out[i + 3] = (x * 5 + y * 3 + f * 40) & 0xff;
      }
    }
    return out;
  });
}

/** An APNG of full-canvas RGBA frames (dispose none, blend source), the first being the default image. */
export function writeApng(
  frames: readonly Uint8Array[],
  width: number,
  height: number,
  delayMs: number,
  loops = 0,
): Buffer {
  const be32 = (...values: number[]) => {
    const out = Buffer.alloc(values.length * 4);
    values.forEach((v, i) => {
      out.writeUInt32BE(v, i * 4);
    });
    return out;
  };
  const rows = (rgba: Uint8Array) => {
    const raw = Buffer.alloc((width * 4 + 1) * height);
    for (let y = 0; y < height; y++)
      raw.set(rgba.subarray(y * width * 4, (y + 1) * width * 4), y * (width * 4 + 1) + 1);
    return deflateSync(raw);
  };
  const parts: Uint8Array[] = [pngSignature];
  parts.push(pngChunk('IHDR', Buffer.concat([be32(width, height), Buffer.from([8, 6, 0, 0, 0])])));
  parts.push(pngChunk('acTL', be32(frames.length, loops)));
  let sequence = 0;
  frames.forEach((rgba, f) => {
    const delay = Buffer.alloc(4);
    delay.writeUInt16BE(delayMs, 0);
    delay.writeUInt16BE(1000, 2);
    // fcTL: sequence, size, offset 0,0, delay delayMs/1000 s, dispose 0 (none), blend 0 (source).
    parts.push(
      pngChunk('fcTL', Buffer.concat([be32(sequence++, width, height, 0, 0), delay, Buffer.from([0, 0])])),
    );
    const data = rows(rgba);
    parts.push(f === 0 ? pngChunk('IDAT', data) : pngChunk('fdAT', Buffer.concat([be32(sequence++), data])));
  });
  parts.push(pngChunk('IEND', []));
  return Buffer.concat(parts);
}

/** sharp's RGBA of every frame of an animated GIF or WebP. */
async function sharpPages(file: Buffer, count: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (let page = 0; page < count; page++) {
    out.push(new Uint8Array(await sharp(file, { page }).ensureAlpha().raw().toBuffer()));
  }
  return out;
}

/**
 * The animation in `format`, looping, `delayMs` per frame. GIF keeps 1-bit alpha and a palette
 * and WebP is lossy, so their references are sharp's decode of each frame, not the source.
 */
export async function animationFixture(
  format: AnimationFormat,
  options: { width: number; height: number; delayMs: number; frames: number },
): Promise<AnimationFixture> {
  const { width, height, delayMs } = options;
  const source = animationFrames(width, height, options.frames);
  if (format === 'apng') {
    const file = writeApng(source, width, height, delayMs);
    const first = await sharp(file).ensureAlpha().raw().toBuffer();
    if (!first.equals(Buffer.from(source[0]!)))
      throw new Error('the APNG writer: sharp reads a default image other than frame 0');
    return { file, width, height, frames: source };
  }
  const stacked = Buffer.concat(source.map((f) => Buffer.from(f)));
  const raw = sharp(stacked, {
    raw: { width, height: height * source.length, channels: 4, pageHeight: height } as never,
  });
  const delay = source.map(() => delayMs);
  const file =
    format === 'gif'
      ? await raw.gif({ delay, loop: 0 }).toBuffer()
      : await raw.webp({ quality: 80, delay, loop: 0 }).toBuffer();
  return { file, width, height, frames: await sharpPages(file, source.length) };
}
