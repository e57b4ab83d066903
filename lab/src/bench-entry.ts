/** `@moat/lab/bench`: the lab's benches (`./moat bench vchan`, `./moat bench penalty`). */
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
