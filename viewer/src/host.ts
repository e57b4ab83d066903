/**
 * Host-side tools for the decoders (benchmark against sharp, fuzzing). Not for the VM:
 * this entry imports sharp (native) and node:fs.
 */

export { type OpenedAtMemory, openedAtMemory } from './app/memory-table.ts';
export {
  type BenchCase,
  type BenchRow,
  benchCases,
  benchDecoders,
  benchScaled,
  type ScaledBenchRow,
} from './decoders/bench.ts';
export { type FuzzOptions, type FuzzReport, fuzzFormat } from './decoders/fuzz/run.ts';
export {
  type AnimationFixture,
  type AnimationFormat,
  animationFixture,
  animationFrames,
  writeApng,
} from './decoders/testing/animations.ts';

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** viewer/fixtures: the decoder corpora (see its README). */
export const viewerFixtures: string = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
