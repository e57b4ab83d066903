/**
 * One fuzzing campaign, sans-IO: given seeds, a PRNG seed and a stop condition, decodes
 * mutated inputs and classifies what happened. Runs inside a worker (see fuzz-worker.ts)
 * so that the parent can kill it when one input hangs.
 */
import { Refusal } from '../budget.ts';
import { FrameCompositor, imageBuffers } from '../compose.ts';
import { decodeImage } from '../decode.ts';
import type { DecodeLimits, RefusalKind, ScaleDenominator } from '../types.ts';
import { mutate, Prng } from './mutate.ts';

/** Limits for fuzzing: small enough that many iterations run, large enough for the seeds. */
export const fuzzLimits: DecodeLimits = {
  maxWidth: 16384,
  maxHeight: 16384,
  maxPixels: 4_000_000,
  maxFrames: 100,
  maxTotalBytes: 64 << 20,
  deadlineMs: 2000,
};

const scales: readonly ScaleDenominator[] = [1, 2, 4, 8];

export interface CampaignCounts {
  executions: number;
  decoded: number;
  refused: Partial<Record<RefusalKind, number>>;
  /** Inputs that made a decoder throw something other than a refusal. */
  crashes: number;
  /** Decodes whose frames add up to more bytes than the budget allows. */
  overruns: number;
  /** Slowest single decode, milliseconds. */
  slowestMs: number;
}

export interface Finding {
  kind: 'crash' | 'overrun' | 'hang';
  iteration: number;
  detail: string;
}

/** Decodes iteration `i` of the campaign; returns its finding, if any. */
export function runIteration(
  seeds: readonly Uint8Array[],
  seed: number,
  iteration: number,
  counts: CampaignCounts,
): Finding | undefined {
  const input = inputFor(seeds, seed, iteration);
  const start = performance.now();
  let finding: Finding | undefined;
  try {
    // A quarter of the inputs each at full size, 1/2, 1/4 and 1/8 (the reduced paths).
    const result = decodeImage(input, fuzzLimits, { scale: scales[iteration & 3] as ScaleDenominator });
    if (result.ok) {
      counts.decoded++;
      // What a viewer holds to show it: the layers' buffers, and one canvas unless the image
      // is a single RGBA layer (which is its own canvas).
      const { image } = result;
      const first = image.frames[0]?.layers;
      const single = image.frames.length === 1 && first?.length === 1 && !first[0]?.palette;
      let bytes = single ? 0 : image.width * image.height * 4;
      for (const buffer of imageBuffers(image)) bytes += buffer.byteLength;
      if (bytes > fuzzLimits.maxTotalBytes) {
        counts.overruns++;
        finding = { kind: 'overrun', iteration, detail: `${bytes} bytes of layers and canvas` };
      }
      // Playing it must not fail either (the compositor clips and checks what decoders give).
      const compositor = new FrameCompositor(image);
      for (let f = 0; f < image.frames.length; f++) compositor.frame(f);
    } else {
      counts.refused[result.kind] = (counts.refused[result.kind] ?? 0) + 1;
      // decodeImage reports errors that are not our refusals as "could not be decoded":
      // that is a decoder bug (an index out of range, a TypeError...), i.e. a crash.
      if (result.reason.startsWith('the file could not be decoded:')) {
        counts.crashes++;
        finding = { kind: 'crash', iteration, detail: result.reason };
      }
    }
  } catch (error) {
    counts.crashes++;
    finding = { kind: 'crash', iteration, detail: error instanceof Refusal ? error.message : String(error) };
  }
  counts.executions++;
  counts.slowestMs = Math.max(counts.slowestMs, performance.now() - start);
  return finding;
}

export function inputFor(seeds: readonly Uint8Array[], seed: number, iteration: number): Uint8Array {
  // Each iteration has its own PRNG stream, so any one input can be rebuilt alone.
  return mutate(seeds, new Prng((seed * 0x9e3779b1) ^ (iteration * 0x85ebca6b)));
}

export function emptyCounts(): CampaignCounts {
  return { executions: 0, decoded: 0, refused: {}, crashes: 0, overruns: 0, slowestMs: 0 };
}
