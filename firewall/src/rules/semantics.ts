/**
 * What a rule means, written as plainly as possible: the linear first-match
 * evaluator. It is the specification the compiled index (compile.ts) is tested
 * against, and it is fine for slow paths (logs, explaining a decision).
 *
 * Linux sys-firewall semantics (qubes-core-agent-linux qubesagent/firewall.py prepare_rules, commit a37fac9):
 * - `proto=icmp` means ICMPv6 (58) for IPv6 traffic;
 * - `dstports` without `proto` matches TCP and UDP;
 * - `icmptype` without `proto` implies ICMP (nft's `icmp type` does);
 * - `specialtarget=dns`: destination is one of the firewall's DNS servers and
 *   port 53, TCP and UDP unless `proto` narrows it; with `dstports` other than
 *   exactly 53 the rule is left out (never matches);
 * - `dsthost`: the destination is one of the addresses the name resolved to.
 */
import { prefixContains } from './address.ts';
import type { QubesRule } from './grammar.ts';
import type { FlowQuery, RuleAction, RuleDecision } from './types.ts';

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;

/** Everything besides the rules that decides a match. */
export interface RuleEnvironment {
  /** The family of the source address this set belongs to; queries of the other family are dropped. */
  family?: 4 | 6;
  /** The firewall's DNS servers (`/qubes-primary-dns`, `/qubes-secondary-dns`), 4 or 16 bytes each. */
  dnsServers?: readonly Uint8Array[];
  /** Resolved `dsthost` addresses (4 or 16 bytes each), by lowercase name. */
  hostAddresses?: ReadonlyMap<string, readonly Uint8Array[]>;
  /** Rules with `expire` at or before this (UNIX seconds) are absent. Default: no rule expires. */
  nowEpochSeconds?: number;
}

export function icmpProtoFor(family: 4 | 6): number {
  return family === 4 ? PROTO_ICMP : PROTO_ICMPV6;
}

export function protoNumber(proto: 'tcp' | 'udp' | 'icmp', family: 4 | 6): number {
  return proto === 'tcp' ? PROTO_TCP : proto === 'udp' ? PROTO_UDP : icmpProtoFor(family);
}

/** Whether a rule takes part at all (not expired, not a specialtarget rule Linux leaves out). */
export function ruleIsLive(rule: QubesRule, env: RuleEnvironment): boolean {
  if (ruleExpired(rule, env)) return false;
  if (
    rule.specialTarget === 'dns' &&
    rule.dstPorts &&
    !(rule.dstPorts.low === 53 && rule.dstPorts.high === 53)
  )
    return false;
  return true;
}

function ruleExpired(rule: QubesRule, env: RuleEnvironment): boolean {
  return rule.expire !== undefined && env.nowEpochSeconds !== undefined && rule.expire <= env.nowEpochSeconds;
}

/**
 * Whether the rule's `dsthost` must resolve for the tree to apply. firewall.py's
 * prepare_rules resolves a rule's name before it skips a `specialtarget=dns` rule with other
 * `dstports`, so such a rule's failing name blocks the client all the same (the rule itself
 * matches nothing). Expired rules are never written by dom0; here they need no name.
 */
export function ruleNeedsName(rule: QubesRule, env: RuleEnvironment): boolean {
  return rule.dst?.kind === 'host' && !ruleExpired(rule, env);
}

function addressOf(query: FlowQuery, addr: Uint8Array): boolean {
  const len = query.family === 4 ? 4 : 16;
  if (addr.length !== len) return false;
  for (let i = 0; i < len; i++) if (addr[i] !== query.dst[i]) return false;
  return true;
}

export function ruleMatches(rule: QubesRule, query: FlowQuery, env: RuleEnvironment): boolean {
  if (!ruleIsLive(rule, env)) return false;
  const tcpOrUdp = query.proto === PROTO_TCP || query.proto === PROTO_UDP;
  const icmp = query.proto === icmpProtoFor(query.family);
  if (rule.proto !== undefined) {
    if (query.proto !== protoNumber(rule.proto, query.family)) return false;
  } else if (rule.dstPorts || rule.specialTarget) {
    if (!tcpOrUdp) return false;
  } else if (rule.icmpType !== undefined) {
    if (!icmp) return false;
  }
  const dst = rule.dst;
  if (dst?.kind === 'prefix') {
    if (dst.family !== query.family || !prefixContains(dst.address, dst.length, query.dst)) return false;
  } else if (dst?.kind === 'host') {
    const addrs = env.hostAddresses?.get(dst.name) ?? [];
    if (!addrs.some((a) => addressOf(query, a))) return false;
  }
  if (rule.specialTarget === 'dns') {
    if (query.dstPort !== 53) return false;
    if (!(env.dnsServers ?? []).some((a) => addressOf(query, a))) return false;
  }
  if (rule.dstPorts) {
    if (query.dstPort < rule.dstPorts.low || query.dstPort > rule.dstPorts.high) return false;
  }
  if (rule.icmpType !== undefined && query.icmpType !== rule.icmpType) return false;
  return true;
}

/** The linear first-match evaluation: the reference the index must agree with. */
export function evaluateLinear(
  rules: readonly QubesRule[],
  policy: RuleAction,
  query: FlowQuery,
  env: RuleEnvironment,
  out: RuleDecision,
): RuleDecision {
  if (env.family !== undefined && query.family !== env.family) {
    out.action = 'drop';
    out.rule = -1;
    return out;
  }
  for (const rule of rules) {
    if (ruleMatches(rule, query, env)) {
      out.action = rule.action;
      out.rule = rule.number;
      return out;
    }
  }
  out.action = policy;
  out.rule = -1;
  return out;
}

/** Which `dsthost` names a rule list needs, and whether `env` has usable addresses for each. */
export function unresolvedHosts(rules: readonly QubesRule[], env: RuleEnvironment): string[] {
  const missing: string[] = [];
  for (const rule of rules) {
    if (rule.dst?.kind !== 'host' || !ruleNeedsName(rule, env)) continue;
    const addrs = env.hostAddresses?.get(rule.dst.name) ?? [];
    const usable = addrs.some((a) =>
      env.family === undefined ? a.length === 4 || a.length === 16 : a.length === (env.family === 4 ? 4 : 16),
    );
    if (!usable && !missing.includes(rule.dst.name)) missing.push(rule.dst.name);
  }
  return missing;
}
