/**
 * The decoders' limits for a VM of a given memory. The budget comes from the VM's memory so a
 * file that does not fit is refused with a message before any pixel buffer exists, never an
 * out-of-memory kill (the decoders reserve every buffer in their budget first).
 */
import { type DecodeLimits, defaultDecodeLimits } from '../decoders/types.ts';

const MiB = 1024 * 1024;

/**
 * What the VM needs besides the decode: the kernel, node with its heap and the agents, the
 * file as received, and the window buffers the renderer draws (measured in the lab: see the
 * README's viewer VM section).
 */
export const RESERVED_BYTES = 112 * MiB;

/**
 * The share of what is left that one decode may use. The decoded image stays alive while it
 * is shown, and the renderer composes frames and scaled views from it (a canvas of the image's
 * size at most, plus window buffers), so the decode gets a little under two thirds.
 */
export const DECODE_SHARE = 0.6;

/** The decoders' limits for a VM with `memoryBytes` of RAM (`os.totalmem()`), deadline as given. */
export function decodeLimitsForMemory(memoryBytes: number, deadlineMs: number): DecodeLimits {
  const usable = Math.max(0, memoryBytes - RESERVED_BYTES);
  const maxTotalBytes = Math.min(defaultDecodeLimits.maxTotalBytes, Math.floor(usable * DECODE_SHARE));
  return { ...defaultDecodeLimits, maxTotalBytes, deadlineMs };
}

/** The largest file the VM accepts: the file is held while it decodes, so a quarter of the budget. */
export function maxFileBytesForLimits(limits: DecodeLimits): number {
  return Math.max(1 * MiB, Math.floor(limits.maxTotalBytes / 4));
}
