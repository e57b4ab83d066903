/** `@moat/lab/bench`: the lab's benches (`./moat bench vchan`, `penalty`, `gui`, `netif`, `firewall`). */
export {
  BENCH_RULES,
  type FirewallBenchFigures,
  type FirewallBenchRatio,
  type FirewallBenchSide,
  type FirewallKind,
  runFirewallBench,
} from './bench-firewall.ts';
export { type GuiBenchFigures, runGuiBench } from './bench-gui.ts';
export { type NetifBenchFigures, runNetifBench } from './bench-netif.ts';
export {
  NETIF_AIM,
  NETIF_DIRECTIONS,
  type NetifBenchRound,
  type NetifBenchSummary,
  netifReportRows,
  summarizeNetifRounds,
} from './bench-netif-figures.ts';
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
