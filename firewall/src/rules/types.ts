/**
 * The contract between the packet engine and the rules: the engine fills one
 * FlowQuery per new flow (reused, never allocated per packet) and asks the
 * client's current RuleSet for a decision.
 */

/** The facts about a packet that Qubes rules can match on. */
export interface FlowQuery {
  family: 4 | 6;
  /** IP protocol number: 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, others as they are. */
  proto: number;
  /** Destination address: bytes 0..4 for IPv4, 0..16 for IPv6 (the buffer may be longer). */
  dst: Uint8Array;
  /** TCP/UDP destination port, or -1. */
  dstPort: number;
  /** ICMP/ICMPv6 type, or -1. */
  icmpType: number;
  /** ICMP/ICMPv6 code, or -1. */
  icmpCode: number;
}

export type RuleAction = 'accept' | 'drop';

/** Written by RuleSet.evaluate into a caller-owned object (no allocation on the hot path). */
export interface RuleDecision {
  action: RuleAction;
  /**
   * The rule number (the NNNN of `/qubes-firewall/<ip>/NNNN`) that matched, -1 when the
   * policy decided, or RULE_NO_TREE.
   */
  rule: number;
}

/**
 * A drop because the client has no tree for the packet's family: Linux has no chain for
 * that source, and its forward chain's `policy drop` drops silently (no reject).
 */
export const RULE_NO_TREE = -2;

/** A compiled, immutable rule set for one client; swapped atomically as a whole. */
export interface RuleSet {
  /** First matching rule wins, then the policy. Must not allocate. */
  evaluate(query: FlowQuery, out: RuleDecision): RuleDecision;
  /** Why this set drops everything (fail closed), or undefined for a set that parsed and resolved. */
  readonly failClosedReason: string | undefined;
  /** The rule numbers in evaluation order (for per-rule counters and logs). */
  readonly ruleNumbers: readonly number[];
}
