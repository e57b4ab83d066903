/** `@moat/lab/bench`: the lab's benches (`./moat bench vchan`, `penalty`, `gui`, `netif`, `firewall`). */
export { BENCH_RULES, type FirewallBenchOptions, runFirewallBench } from './bench-firewall.ts';
export {
  FIREWALL_BENCH_AIM,
  FIREWALL_BENCH_NOTE,
  type FirewallBenchFigures,
  type FirewallBenchRatio,
  type FirewallBenchRow,
  type FirewallBenchSide,
  type FirewallKind,
  type FirewallMemoryFigures,
  firewallBenchFigures,
  formatFirewallBench,
} from './bench-firewall-report.ts';
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
