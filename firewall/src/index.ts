/**
 * @moat/firewall: sys-moat's packet engine (sans-IO), its wire formats, and the contracts
 * with the rule compiler and the DNS resolver. Test tools are on subpaths, not here:
 * `@moat/firewall/testing` (frame builders, fixed rule sets, a scripted DNS server) and
 * `@moat/firewall/bench` (the engine benchmark and the 1,000-rule fixtures).
 */
export {
  ClientRules,
  type ClientRulesOptions,
  type ClientRulesStatus,
  type RulesClock,
  systemClock,
} from './client-rules.ts';
export * from './dns/index.ts';
export {
  type ClientConfig,
  type DecisionLogEntry,
  type DnsConfig,
  type DropLogEntry,
  type EngineConfig,
  type FrameMeta,
  type FrameSink,
  ICMP_RATE,
  plainMeta,
  QUBES_GATEWAY_MAC,
  TIMEOUTS_MS,
  UPLINK,
  type UplinkConfig,
} from './engine/config.ts';
export { Conntrack } from './engine/conntrack.ts';
export {
  type EngineStats,
  FirewallEngine,
  type LinkStats,
  V_DROPPED,
  V_FORWARDED,
  V_LOCAL,
  V_REJECTED,
  type Verdict,
} from './engine/engine.ts';
export { FragmentTable } from './engine/fragment-table.ts';
export { parseVifAddresses } from './engine/links.ts';
export { DROP_REASONS, type DropReasonName } from './engine/reasons.ts';
export * from './rules/index.ts';
export * as wire from './wire/index.ts';
