import { decodeBmp } from './bmp.ts';
import { DecodeBudget, Refusal } from './budget.ts';
import { decodeGif } from './gif.ts';
import { decodeJpeg } from './jpeg.ts';
import { decodePng } from './png.ts';
import { describeUnknown, sniffFormat } from './sniff.ts';
import {
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
      return decodePng(bytes, budget);
    case 'gif':
      return decodeGif(bytes, budget);
    case 'jpeg':
      return decodeJpeg(bytes, budget, options);
    case 'bmp':
      return decodeBmp(bytes, budget);
    case 'webp':
      return decodeWebp(bytes, budget);
    default:
      throw new Refusal('unknown-format', describeUnknown(bytes));
  }
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
