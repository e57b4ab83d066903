/**
 * The decoding memory budget of the viewer VM, from its memory size: a file whose decode would
 * not fit is refused by the decoders' own accounting (checked from headers, before pixel
 * memory exists) with a message in the window, rather than the VM being killed for lack of
 * memory.
 */
import { type DecodeLimits, defaultDecodeLimits } from '../decoders/types.ts';

const MiB = 1024 * 1024;

/**
 * What the VM uses besides the image: the kernel and JS engine with the viewer's code, the
 * Qubes agents (qrexec, QubesDB, GUI) and their rings, the received file's bytes queued in
 * qrexec, the JS heap's headroom.
 */
export const RUNTIME_RESERVE_BYTES = 96 * MiB;

/** Default window for the estimate: 1920×1080 BGRX. */
const DEFAULT_WINDOW_PIXELS = 1920 * 1080;

export interface DecodeBudgetOptions {
  /** The largest window the viewer may draw (pixels); default 1920×1080. */
  readonly windowPixels?: number;
  /** Bytes of the received file, held while it is decoded; default 0 (counted in the reserve). */
  readonly fileBytes?: number;
  /** Deadline per decode; default that of `defaultDecodeLimits`. */
  readonly deadlineMs?: number;
}

/**
 * Decoder limits for a VM of `totalMemoryBytes`. From the memory left after
 * RUNTIME_RESERVE_BYTES, the file, and the window's buffers (the shared BGRX buffer, the
 * rendered frame and one resampled region of up to four windows: 6 × 4 bytes per window
 * pixel), 40% goes to one decode: while a zoom change re-decodes a JPEG at another scale the
 * old decode is still shown (2 × 40%), and the renderer's box-reduced copy of the image is at
 * most a quarter of it (10%); the last 10% is slack for the JS engine's fragmentation. Never
 * above the defaults (512 MiB, 8192 × 5120 pixels, the cap of Qubes' own image converter).
 */
export function decodeBudget(totalMemoryBytes: number, options: DecodeBudgetOptions = {}): DecodeLimits {
  if (!Number.isFinite(totalMemoryBytes) || totalMemoryBytes < 0)
    throw new RangeError(`memory size ${totalMemoryBytes} is not a byte count`);
  const windowBytes = (options.windowPixels ?? DEFAULT_WINDOW_PIXELS) * 4 * 6;
  const left = totalMemoryBytes - RUNTIME_RESERVE_BYTES - windowBytes - (options.fileBytes ?? 0);
  const forDecode = Math.max(0, Math.floor(left * 0.4));
  return {
    ...defaultDecodeLimits,
    maxTotalBytes: Math.min(defaultDecodeLimits.maxTotalBytes, forDecode),
    deadlineMs: options.deadlineMs ?? defaultDecodeLimits.deadlineMs,
  };
}
