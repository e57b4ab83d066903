import { Worker } from 'node:worker_threads';
import { type DecodeLimits, type DecodeOptions, type DecodeResult, resolveLimits } from './types.ts';
import type { DecodeRequest } from './worker.ts';

export interface WorkerOptions extends DecodeOptions {
  /** The worker script; defaults to this package's decode worker. Tests pass others. */
  workerUrl?: URL;
}

const ownWorker = new URL(`./worker.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url);

/**
 * Running from TypeScript sources (tests, `./moat`), a `.ts` worker is started through a
 * small entry that registers tsx first. A bundled build points `workerUrl` at its
 * bundled worker instead.
 */
const tsEntry = new URL('./ts-worker-entry.mjs', import.meta.url);

/**
 * Decodes in a fresh worker thread under `limits.deadlineMs`. When the deadline passes the
 * worker is terminated and the result is a `deadline` refusal; a worker that dies (e.g.
 * out of heap) gives a refusal too. Never rejects.
 */
export function decodeInWorker(
  bytes: Uint8Array,
  limits?: Partial<DecodeLimits>,
  options: WorkerOptions = {},
): Promise<DecodeResult> {
  const resolved = resolveLimits(limits);
  const url = options.workerUrl ?? ownWorker;
  return new Promise((resolve) => {
    let settled = false;
    const viaTsx = url.pathname.endsWith('.ts');
    const worker = new Worker(viaTsx ? tsEntry : url, {
      workerData: viaTsx ? { tsEntry: url.href } : undefined,
      // The JS heap is bounded here; pixel buffers are bounded by the decode budget.
      resourceLimits: { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 32 },
      stdout: false,
      stderr: false,
    });
    const finish = (result: DecodeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      resolve(result);
    };
    const timer = setTimeout(
      () =>
        finish({
          ok: false,
          kind: 'deadline',
          reason: `decoding took longer than ${resolved.deadlineMs} ms`,
        }),
      resolved.deadlineMs,
    );
    worker.on('message', (result: DecodeResult) => finish(result));
    worker.on('error', (error: Error & { code?: string }) =>
      finish(
        error.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? { ok: false, kind: 'limit', reason: 'the decoder ran out of memory' }
          : { ok: false, kind: 'corrupt', reason: `the decoder failed: ${error.message}` },
      ),
    );
    worker.on('exit', (code) =>
      finish({ ok: false, kind: 'corrupt', reason: `the decoder stopped unexpectedly (exit code ${code})` }),
    );
    const { workerUrl: _, ...decodeOptions } = options;
    const request: DecodeRequest = { bytes: bytes.slice(), limits: resolved, options: decodeOptions };
    worker.postMessage(request, [request.bytes.buffer as ArrayBuffer]);
  });
}
