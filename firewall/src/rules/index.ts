/**
 * Qubes firewall rules: the QubesDB grammar (grammar.ts), their meaning as the
 * Linux sys-firewall applies them (semantics.ts, the linear reference), the
 * compiled index the engine evaluates per new flow (compile.ts), one client's
 * rules over time with dsthost names resolved (client-rules.ts). The 1,000-rule
 * benchmark fixtures (bench-fixtures.ts) are exported from `@moat/firewall/bench`.
 */
export {
  formatIp,
  formatIpv4,
  formatIpv6,
  parseIpText,
  parseIpv4Text,
  parseIpv6Text,
} from '../wire/address.ts';
export { bytesEqual, maskPrefix, prefixContains } from './address.ts';
export {
  compileRuleEntries,
  dnsInfoEntries,
  type HostAnswer,
  type HostResolver,
  MAX_QUBESDB_PATH,
  type RuleEntries,
  SourceRules,
  type SourceRulesOptions,
} from './client-rules.ts';
export { type CompiledRuleSet, compileRuleSet, dropAllRuleSet } from './compile.ts';
export { combineRuleSets, type DualFamilyRuleSet } from './dual.ts';
export {
  MAX_RULE_LENGTH,
  MAX_RULES,
  type ParsedRules,
  type ParseResult,
  parseRuleEntries,
  parseRuleLine,
  type QubesRule,
  type RuleDestination,
  type RuleProto,
  reloadSource,
  ruleEntriesFor,
  sourceFamily,
} from './grammar.ts';
export {
  evaluateLinear,
  icmpProtoFor,
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_TCP,
  PROTO_UDP,
  protoNumber,
  type RuleEnvironment,
  ruleMatches,
  unresolvedHosts,
} from './semantics.ts';
export { type FlowQuery, RULE_NO_TREE, type RuleAction, type RuleDecision, type RuleSet } from './types.ts';
