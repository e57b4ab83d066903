/**
 * Worker entry: decodes one image per message. Run by `decodeInWorker`, which terminates
 * the whole worker when the deadline passes, so even a decoder stuck in a loop that never
 * reaches a deadline check cannot hold the viewer.
 */
import { parentPort } from 'node:worker_threads';
import { imageBuffers } from './compose.ts';
import { decodeImage } from './decode.ts';
import type { DecodeLimits, DecodeOptions } from './types.ts';

export interface DecodeRequest {
  bytes: Uint8Array;
  limits: DecodeLimits;
  options: DecodeOptions;
}

parentPort?.on('message', (request: DecodeRequest) => {
  const result = decodeImage(request.bytes, request.limits, request.options);
  // Each buffer once (layers may share a palette): a transfer list naming the same buffer
  // twice is an error.
  const transfer = result.ok ? imageBuffers(result.image) : [];
  parentPort?.postMessage(result, transfer);
});
