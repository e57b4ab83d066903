import { decodeBmp } from './bmp.ts';
import { DecodeBudget, Refusal } from './budget.ts';
import { downscaleStill } from './downscale.ts';
import { decodeGif } from './gif.ts';
import { decodeJpeg } from './jpeg.ts';
import { decodePng } from './png.ts';
import { describeUnknown, sniffFormat } from './sniff.ts';
import {
  chooseScale,
  type DecodedImage,
  type DecodeLimits,
  type DecodeOptions,
  type DecodeResult,
  resolveLimits,
} from './types.ts';
import { decodeWebp } from './webp.ts';

/**
 * Decodes an untrusted image in the calling thread under `limits` (defaults:
 * `defaultDecodeLimits`). Never throws: a broken, unsupported or too large file gives
 * `{ok: false, kind, reason}`. `options` ask for a reduced size (stills only). The deadline is checked between rows and frames; use
 * `decodeInWorker` to also survive a decoder that would not come back.
 */
export function decodeImage(
  bytes: Uint8Array,
  limits?: Partial<DecodeLimits>,
  options: DecodeOptions = {},
): DecodeResult {
  const budget = new DecodeBudget(resolveLimits(limits));
  try {
    return { ok: true, image: decodeWith(bytes, budget, options) };
  } catch (error) {
    return refusalOf(error);
  }
}

function decodeWith(bytes: Uint8Array, budget: DecodeBudget, options: DecodeOptions): DecodedImage {
  const format = sniffFormat(bytes);
  switch (format) {
    case 'png':
      return decodePng(bytes, budget, options);
    case 'gif':
      return reduced(decodeGif(bytes, budget), options, budget);
    case 'jpeg':
      return decodeJpeg(bytes, budget, options);
    case 'bmp':
      return reduced(decodeBmp(bytes, budget), options, budget);
    case 'webp':
      return reduced(decodeWebp(bytes, budget), options, budget);
    default:
      throw new Refusal('unknown-format', describeUnknown(bytes));
  }
}

/**
 * GIF, BMP and WebP stills at a reduced size: decoded whole (a GIF at one byte per pixel), then
 * reduced row by row. PNG and JPEG reduce while decoding.
 */
function reduced(image: DecodedImage, options: DecodeOptions, budget: DecodeBudget): DecodedImage {
  return downscaleStill(image, chooseScale(image.width, image.height, options), budget);
}

/** Turns anything a decoder threw into a refusal a person can read. */
export function refusalOf(error: unknown): DecodeResult {
  if (error instanceof Refusal) return { ok: false, kind: error.kind, reason: error.message };
  // Not one of ours: a bug or a library's own error on a malformed file (e.g. an index
  // out of range). Reported as a damaged file, with the message for diagnosis.
  if (error instanceof RangeError && /allocation|Array buffer/i.test(error.message))
    return { ok: false, kind: 'limit', reason: `out of memory while decoding: ${error.message}` };
  const message = error instanceof Error ? error.message : String(error);
  return { ok: false, kind: 'corrupt', reason: `the file could not be decoded: ${message}` };
}
