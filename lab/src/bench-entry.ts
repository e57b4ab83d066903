/** `@moat/lab/bench`: the lab's benches (`./moat bench vchan`, `./moat bench penalty`, `./moat bench gui`). */
export { type GuiBenchFigures, runGuiBench } from './bench-gui.ts';
export {
  runVchanBench,
  type VchanBenchDirection,
  type VchanBenchFigures,
  vchanBenchPlan,
} from './bench-vchan.ts';
export {
  measureHostPenalty,
  PENALTY_ITERATIONS,
  type PenaltyFigures,
  type PenaltyRun,
  penaltyFigures,
  runPenaltyBench,
} from './penalty.ts';
