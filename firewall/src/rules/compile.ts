/**
 * Compiles a parsed rule list into an index whose evaluate() is allocation-free
 * and sub-linear in the number of rules, with exactly the first-match-wins
 * meaning of semantics.ts.
 *
 * Each live rule becomes one or more "atoms" (a rule with no proto but dstports
 * becomes a TCP and a UDP atom; a dsthost rule one atom per address; a
 * specialtarget=dns rule one atom per DNS server), each carrying the rule's
 * position in evaluation order. Atoms go into buckets by (family, protocol
 * class: TCP, UDP, ICMP of that family, anything else); a wildcard-protocol atom
 * goes into all four of its family. Within a bucket a binary trie over the
 * destination address holds each atom at the node of its prefix. Per node, atoms
 * without a key constraint reduce to one number (the smallest position), atoms
 * with a port range / ICMP type to a piecewise-constant table "key → smallest
 * position" (sorted interval table, binary-searched). A lookup walks the trie
 * along the destination (≤ 32 or 128 steps), taking the minimum position seen,
 * and stops as soon as no atom below can beat the best found (subtree minimum).
 * The smallest position is the first matching rule, so the order semantics are
 * exactly those of the linear scan.
 */
import type { QubesRule } from './grammar.ts';
import {
  icmpProtoFor,
  PROTO_TCP,
  PROTO_UDP,
  protoNumber,
  type RuleEnvironment,
  ruleIsLive,
  unresolvedHosts,
} from './semantics.ts';
import type { FlowQuery, RuleAction, RuleDecision, RuleSet } from './types.ts';

const NONE = 0x7fffffff;

/**
 * Bounds on one index: a rule list expands into atoms (dsthost names × their
 * addresses, DNS servers, TCP+UDP), and each atom costs up to 32/128 trie nodes.
 * Upstream DNS answers feed the expansion, so it is bounded; a set beyond the
 * bounds fails closed instead of exhausting memory.
 */
export const MAX_INDEX_ATOMS = 200_000;
export const MAX_TRIE_NODES = 1_000_000;

class IndexTooLarge extends Error {}

/** The compiled set: the RuleSet contract plus what the owner needs to manage it. */
export interface CompiledRuleSet extends RuleSet {
  /** The source family the set belongs to (queries of the other family are dropped), if fixed. */
  readonly family: 4 | 6 | undefined;
  readonly policy: RuleAction;
  /** The earliest future `expire` (UNIX seconds) among the rules, when the set must be rebuilt. */
  readonly nextExpiry: number | undefined;
  /** How many atoms (index entries) the rules expanded to. */
  readonly atomCount: number;
}

interface Atom {
  order: number;
  address: Uint8Array | undefined; // undefined: any destination
  length: number;
  proto: number; // -1: any protocol
  low: number; // key range (port or ICMP type); -1: no key constraint
  high: number;
}

interface Keyed {
  low: number;
  high: number;
  order: number;
}

/**
 * Builds one bucket's trie straight into growable typed arrays (a rebuild on
 * every DNS refresh must not churn the heap). A child is always created after
 * its parent, so a reverse scan visits children before parents.
 */
class TrieBuilder {
  child0 = new Int32Array(256).fill(-1);
  child1 = new Int32Array(256).fill(-1);
  wild = new Int32Array(256).fill(NONE);
  count = 1;
  readonly keyed = new Map<number, Keyed[]>();
  /** Shared by the builders of one set: the node bound is for the whole index. */
  constructor(private readonly budget: { nodes: number }) {}

  private grow(): void {
    const size = this.child0.length * 2;
    const g = (a: Int32Array, fill: number) => {
      const b = new Int32Array(size).fill(fill);
      b.set(a);
      return b;
    };
    this.child0 = g(this.child0, -1);
    this.child1 = g(this.child1, -1);
    this.wild = g(this.wild, NONE);
  }

  insert(atom: Atom): void {
    let node = 0;
    for (let depth = 0; depth < atom.length; depth++) {
      const bit = (atom.address![depth >> 3]! >> (7 - (depth & 7))) & 1;
      const children = bit === 1 ? this.child1 : this.child0;
      let child = children[node]!;
      if (child < 0) {
        if (++this.budget.nodes > MAX_TRIE_NODES)
          throw new IndexTooLarge(`more than ${MAX_TRIE_NODES} trie nodes`);
        if (this.count === this.child0.length) this.grow();
        child = this.count++;
        (bit === 1 ? this.child1 : this.child0)[node] = child;
      }
      node = child;
    }
    if (atom.low < 0) {
      if (atom.order < this.wild[node]!) this.wild[node] = atom.order;
    } else {
      let list = this.keyed.get(node);
      if (!list) {
        list = [];
        this.keyed.set(node, list);
      }
      list.push({ low: atom.low, high: atom.high, order: atom.order });
    }
  }
}

/** The frozen trie of one bucket, in typed arrays. */
class BucketTrie {
  readonly child0: Int32Array;
  readonly child1: Int32Array;
  readonly subMin: Int32Array;
  readonly wild: Int32Array;
  readonly tableStart: Int32Array;
  readonly tableEnd: Int32Array;
  readonly bounds: Int32Array;
  readonly values: Int32Array;
  readonly empty: boolean;

  constructor(b: TrieBuilder) {
    const count = b.count;
    this.child0 = b.child0.slice(0, count);
    this.child1 = b.child1.slice(0, count);
    this.wild = b.wild.slice(0, count);
    this.subMin = new Int32Array(count);
    this.tableStart = new Int32Array(count);
    this.tableEnd = new Int32Array(count);
    const bounds: number[] = [];
    const values: number[] = [];
    for (const node of [...b.keyed.keys()].sort((x, y) => x - y)) {
      this.tableStart[node] = bounds.length;
      buildTable(b.keyed.get(node)!, bounds, values);
      this.tableEnd[node] = bounds.length;
    }
    this.bounds = Int32Array.from(bounds);
    this.values = Int32Array.from(values);
    for (let i = count - 1; i >= 0; i--) {
      let m = this.wild[i]!;
      for (let t = this.tableStart[i]!; t < this.tableEnd[i]!; t++)
        if (this.values[t]! < m) m = this.values[t]!;
      const c0 = this.child0[i]!;
      const c1 = this.child1[i]!;
      if (c0 >= 0 && this.subMin[c0]! < m) m = this.subMin[c0]!;
      if (c1 >= 0 && this.subMin[c1]! < m) m = this.subMin[c1]!;
      this.subMin[i] = m;
    }
    this.empty = this.subMin[0] === NONE;
  }

  /** Smallest matching order, or NONE. Allocation-free. */
  lookup(dst: Uint8Array, bits: number, key: number): number {
    let best = NONE;
    let node = 0;
    let depth = 0;
    const { child0, child1, subMin, wild, tableStart, tableEnd, bounds, values } = this;
    while (node >= 0) {
      if (subMin[node]! >= best) break;
      const w = wild[node]!;
      if (w < best) best = w;
      if (key >= 0) {
        let lo = tableStart[node]!;
        let hi = tableEnd[node]! - 1;
        if (hi >= lo && key >= bounds[lo]!) {
          // largest t with bounds[t] <= key
          while (lo < hi) {
            const mid = (lo + hi + 1) >> 1;
            if (bounds[mid]! <= key) lo = mid;
            else hi = mid - 1;
          }
          const v = values[lo]!;
          if (v < best) best = v;
        }
      }
      if (depth === bits) break;
      const bit = (dst[depth >> 3]! >> (7 - (depth & 7))) & 1;
      node = bit === 1 ? child1[node]! : child0[node]!;
      depth++;
    }
    return best;
  }
}

/**
 * Builds the sorted interval table of one node: segment starts in `bounds`, the
 * smallest order covering each segment in `values` (NONE for gaps). Atoms are
 * painted in order, each segment taken by the first atom that covers it.
 */
function buildTable(
  keyed: { low: number; high: number; order: number }[],
  bounds: number[],
  values: number[],
): void {
  const points = new Set<number>();
  for (const k of keyed) {
    points.add(k.low);
    points.add(k.high + 1);
  }
  const starts = [...points].sort((a, b) => a - b);
  const segValue = new Array<number>(starts.length).fill(NONE);
  // next unpainted segment at or after i (path-compressed), so painting is near-linear
  const next = Array.from({ length: starts.length + 1 }, (_, i) => i);
  const find = (i: number): number => {
    let r = i;
    while (next[r] !== r) r = next[r]!;
    while (next[i] !== r) {
      const n = next[i]!;
      next[i] = r;
      i = n;
    }
    return r;
  };
  const segOf = (key: number): number => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= key) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  const sorted = [...keyed].sort((a, b) => a.order - b.order);
  for (const k of sorted) {
    const first = segOf(k.low);
    const last = segOf(k.high); // the segment containing high (high+1 starts the next one)
    for (let s = find(first); s <= last; s = find(s)) {
      segValue[s] = k.order;
      next[s] = s + 1;
    }
  }
  let prev = -2;
  for (let s = 0; s < starts.length; s++) {
    const v = segValue[s]!;
    if (v === prev) continue;
    bounds.push(starts[s]!);
    values.push(v);
    prev = v;
  }
}

/** Bucket numbers within a family. */
const B_TCP = 0;
const B_UDP = 1;
const B_ICMP = 2;
const B_OTHER = 3;

function bucketsForProto(proto: number, family: 4 | 6): number[] {
  if (proto < 0) return [B_TCP, B_UDP, B_ICMP, B_OTHER];
  if (proto === PROTO_TCP) return [B_TCP];
  if (proto === PROTO_UDP) return [B_UDP];
  if (proto === icmpProtoFor(family)) return [B_ICMP];
  return [B_OTHER];
}

function full(addr: Uint8Array): { address: Uint8Array; length: number } {
  return { address: addr, length: addr.length * 8 };
}

/** Expands one live rule into atoms for one family. */
function atomsOf(rule: QubesRule, order: number, family: 4 | 6, env: RuleEnvironment): Atom[] {
  const size = family === 4 ? 4 : 16;
  let dsts: { address: Uint8Array | undefined; length: number }[];
  const dst = rule.dst;
  if (dst === undefined) dsts = [{ address: undefined, length: 0 }];
  else if (dst.kind === 'prefix')
    dsts = dst.family === family ? [{ address: dst.address, length: dst.length }] : [];
  else dsts = (env.hostAddresses?.get(dst.name) ?? []).filter((a) => a.length === size).map(full);

  let protos: number[];
  let low = -1;
  let high = -1;
  if (rule.specialTarget === 'dns') {
    const servers = (env.dnsServers ?? []).filter((a) => a.length === size);
    // the destination must be one of the servers and match the rule's own dst too
    dsts = servers
      .filter((s) => dsts.some((d) => d.address === undefined || prefixMatch(d.address, d.length, s)))
      .map(full);
    protos = rule.proto ? [protoNumber(rule.proto, family)] : [PROTO_TCP, PROTO_UDP];
    low = 53;
    high = 53;
  } else if (rule.proto) {
    protos = [protoNumber(rule.proto, family)];
  } else if (rule.dstPorts) {
    protos = [PROTO_TCP, PROTO_UDP];
  } else if (rule.icmpType !== undefined) {
    protos = [icmpProtoFor(family)];
  } else {
    protos = [-1];
  }
  if (rule.dstPorts) {
    low = rule.dstPorts.low;
    high = rule.dstPorts.high;
  } else if (rule.icmpType !== undefined) {
    low = rule.icmpType;
    high = rule.icmpType;
  }
  const atoms: Atom[] = [];
  for (const d of dsts)
    for (const proto of protos) atoms.push({ order, address: d.address, length: d.length, proto, low, high });
  return atoms;
}

function prefixMatch(prefix: Uint8Array, length: number, addr: Uint8Array): boolean {
  for (let bit = 0; bit < length; bit++) {
    const m = 0x80 >> (bit & 7);
    if ((prefix[bit >> 3]! & m) !== (addr[bit >> 3]! & m)) return false;
  }
  return true;
}

class IndexedRuleSet implements CompiledRuleSet {
  readonly failClosedReason = undefined;
  readonly ruleNumbers: readonly number[];
  readonly family: 4 | 6 | undefined;
  readonly policy: RuleAction;
  readonly nextExpiry: number | undefined;
  readonly atomCount: number;
  private readonly orderAccept: Uint8Array;
  private readonly orderNumber: Int32Array;
  /** [family 4 buckets..., family 6 buckets...] */
  private readonly tries: BucketTrie[];
  private readonly policyAccept: boolean;

  constructor(rules: readonly QubesRule[], policy: RuleAction, env: RuleEnvironment) {
    this.family = env.family;
    this.policy = policy;
    this.policyAccept = policy === 'accept';
    const live = rules.filter((r) => ruleIsLive(r, env));
    // rules left out by Linux (specialtarget with other dstports) still count for logs: keep non-expired
    this.ruleNumbers = rules
      .filter(
        (r) => r.expire === undefined || env.nowEpochSeconds === undefined || r.expire > env.nowEpochSeconds,
      )
      .map((r) => r.number);
    let nextExpiry: number | undefined;
    for (const r of rules)
      if (r.expire !== undefined && (env.nowEpochSeconds === undefined || r.expire > env.nowEpochSeconds))
        nextExpiry = nextExpiry === undefined ? r.expire : Math.min(nextExpiry, r.expire);
    this.nextExpiry = env.nowEpochSeconds === undefined ? undefined : nextExpiry;
    this.orderAccept = new Uint8Array(live.length);
    this.orderNumber = new Int32Array(live.length);
    const budget = { nodes: 0 };
    const builders = Array.from({ length: 8 }, () => new TrieBuilder(budget));
    let atomCount = 0;
    live.forEach((rule, order) => {
      this.orderAccept[order] = rule.action === 'accept' ? 1 : 0;
      this.orderNumber[order] = rule.number;
      for (const family of [4, 6] as const) {
        if (env.family !== undefined && env.family !== family) continue;
        for (const atom of atomsOf(rule, order, family, env)) {
          for (const b of bucketsForProto(atom.proto, family)) {
            builders[(family === 4 ? 0 : 4) + b]!.insert(atom);
            if (++atomCount > MAX_INDEX_ATOMS)
              throw new IndexTooLarge(`more than ${MAX_INDEX_ATOMS} index entries`);
          }
        }
      }
    });
    this.atomCount = atomCount;
    this.tries = builders.map((b) => new BucketTrie(b));
  }

  evaluate(query: FlowQuery, out: RuleDecision): RuleDecision {
    const family = query.family;
    if (this.family !== undefined && family !== this.family) {
      out.action = 'drop';
      out.rule = -1;
      return out;
    }
    const proto = query.proto;
    let bucket: number;
    let key = -1;
    if (proto === PROTO_TCP) {
      bucket = B_TCP;
      key = query.dstPort;
    } else if (proto === PROTO_UDP) {
      bucket = B_UDP;
      key = query.dstPort;
    } else if (proto === (family === 4 ? 1 : 58)) {
      bucket = B_ICMP;
      key = query.icmpType;
    } else {
      bucket = B_OTHER;
    }
    const trie = this.tries[(family === 4 ? 0 : 4) + bucket]!;
    const order = trie.empty ? NONE : trie.lookup(query.dst, family === 4 ? 32 : 128, key);
    if (order === NONE) {
      out.action = this.policyAccept ? 'accept' : 'drop';
      out.rule = -1;
    } else {
      out.action = this.orderAccept[order] === 1 ? 'accept' : 'drop';
      out.rule = this.orderNumber[order]!;
    }
    return out;
  }
}

class DropAllRuleSet implements CompiledRuleSet {
  readonly ruleNumbers: readonly number[] = [];
  readonly policy: RuleAction = 'drop';
  readonly nextExpiry = undefined;
  readonly atomCount = 0;
  constructor(
    readonly failClosedReason: string,
    readonly family: 4 | 6 | undefined,
  ) {}
  evaluate(_query: FlowQuery, out: RuleDecision): RuleDecision {
    out.action = 'drop';
    out.rule = -1;
    return out;
  }
}

/** The fail-closed set: drops everything and says why (the reason is meant for a log line). */
export function dropAllRuleSet(reason: string, family?: 4 | 6): CompiledRuleSet {
  return new DropAllRuleSet(reason, family);
}

/**
 * Compiles parsed rules with their environment (DNS servers, resolved names,
 * time). A `dsthost` whose name has no address of the needed family in
 * `env.hostAddresses` makes the whole set drop-all (fail closed, as Linux).
 */
export function compileRuleSet(
  parsed: { readonly policy: RuleAction; readonly rules: readonly QubesRule[] },
  env: RuleEnvironment = {},
): CompiledRuleSet {
  const missing = unresolvedHosts(parsed.rules, env);
  if (missing.length > 0)
    return dropAllRuleSet(`dsthost could not be resolved: ${missing.join(', ')}`, env.family);
  try {
    return new IndexedRuleSet(parsed.rules, parsed.policy, env);
  } catch (error) {
    if (error instanceof IndexTooLarge)
      return dropAllRuleSet(`rule set too large to index (${error.message})`, env.family);
    throw error;
  }
}
