/**
 * A realistic large rule set and flow mix for benchmarks (`./moat bench engine`
 * case (b), "new flows against 1,000 rules"), generated deterministically from a
 * seed. The full list is split into an IPv4 and an IPv6 tree the way dom0 does
 * (each omits the other family's dst rules, leaving gaps in the numbering).
 */
import { compileRuleEntries, type HostResolver } from './client-rules.ts';
import type { CompiledRuleSet } from './compile.ts';
import { parseRuleEntries } from './grammar.ts';
import { evaluateLinear, type RuleEnvironment } from './semantics.ts';
import type { FlowQuery, RuleDecision } from './types.ts';

/** xorshift32: small, deterministic, good enough for fixtures. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

export interface BenchRuleTree {
  source: string;
  entries: [string, string][];
  env: RuleEnvironment;
}

export interface BenchRuleFixture {
  ipv4: BenchRuleTree;
  ipv6: BenchRuleTree;
  /** The rule lines of the full list, in order (before the family split). */
  lines: string[];
}

const WELL_KNOWN = [
  22, 25, 53, 80, 110, 123, 143, 443, 465, 587, 853, 993, 995, 1194, 3389, 5222, 8080, 8443,
];

/** Generates `count` rules (default 1,000) like a heavy `qvm-firewall` user's list. */
export function realisticRuleSet(count = 1000, seed = 1): BenchRuleFixture {
  const rnd = seededRandom(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const hosts = Array.from({ length: 8 }, (_, i) => `host${i}.example.net`);
  const hostAddresses = new Map<string, Uint8Array[]>();
  for (const [i, h] of hosts.entries())
    hostAddresses.set(h, [
      Uint8Array.of(93, 184, 216, 10 + i),
      Uint8Array.of(93, 184, 217, 10 + i),
      Uint8Array.of(0x26, 0x06, 0x28, 0, 0x02, 0x20, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10 + i),
    ]);
  const lines: string[] = [];
  for (let i = 0; i < count - 3; i++) {
    const action = rnd() < 0.7 ? 'accept' : 'drop';
    const r = rnd();
    const parts = [`action=${action}`];
    if (r < 0.55) {
      const len = pick([8, 12, 16, 20, 24, 24, 28, 32, 32, 32]);
      parts.push(`dst4=${1 + int(223)}.${int(256)}.${int(256)}.${int(256)}/${len}`);
    } else if (r < 0.8) {
      const len = pick([32, 48, 56, 64, 64, 128]);
      const g = () => int(0x10000).toString(16);
      parts.push(`dst6=2${int(0x1000).toString(16).padStart(3, '0')}:${g()}:${g()}:${g()}::${g()}/${len}`);
    } else if (r < 0.84) {
      parts.push(`dsthost=${pick(hosts)}`);
    }
    const p = rnd();
    if (p < 0.45) {
      parts.push('proto=tcp');
      parts.push(
        rnd() < 0.7
          ? `dstports=${pick(WELL_KNOWN)}-${pick(WELL_KNOWN)}`.replace(
              /^dstports=(\d+)-(\d+)$/,
              (_m, a, b) => `dstports=${Math.min(+a, +b)}-${Math.max(+a, +b)}`,
            )
          : `dstports=${1024 + int(60000)}-${65000 + int(535)}`,
      );
    } else if (p < 0.7) {
      parts.push('proto=udp');
      if (rnd() < 0.6) {
        const port = pick(WELL_KNOWN);
        parts.push(`dstports=${port}-${port}`);
      }
    } else if (p < 0.78) {
      parts.push('proto=icmp');
      if (rnd() < 0.5) parts.push(`icmptype=${pick([0, 3, 8, 11, 128, 129])}`);
    }
    lines.push(parts.join(' '));
  }
  lines.push('action=accept specialtarget=dns', 'action=accept proto=icmp', 'action=drop');
  const dnsServers = [Uint8Array.of(10, 139, 1, 1), Uint8Array.of(10, 139, 1, 2)];
  const tree = (family: 4 | 6, source: string): BenchRuleTree => {
    const entries: [string, string][] = [['policy', 'drop']];
    lines.forEach((line, n) => {
      if (family === 4 && line.includes(' dst6=')) return;
      if (family === 6 && line.includes(' dst4=')) return;
      entries.push([String(n).padStart(4, '0'), line]);
    });
    return { source, entries, env: { family, dnsServers, hostAddresses } };
  };
  return { ipv4: tree(4, '10.137.0.20'), ipv6: tree(6, 'fd09:24ef:4179::a89:14'), lines };
}

/**
 * New-flow queries against a fixture: a mix of destinations inside rule prefixes
 * (the rules' own addresses), resolved hosts, DNS servers and random addresses
 * (which fall through to the policy: a linear scan's worst case).
 */
export function benchFlowQueries(
  fixture: BenchRuleFixture,
  count = 4096,
  seed = 2,
  family: 4 | 6 = 4,
): FlowQuery[] {
  const rnd = seededRandom(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const tree = family === 4 ? fixture.ipv4 : fixture.ipv6;
  // flows aimed at rules: a rule's own address, protocol and port
  const targets: { dst: Uint8Array; proto: number; port: number; icmpType: number }[] = [];
  for (const [, line] of tree.entries) {
    const m = /dst4=([0-9.]+)\//.exec(line);
    if (!m?.[1]) continue;
    const proto = line.includes('proto=udp') ? 17 : line.includes('proto=icmp') ? 1 : 6;
    const ports = /dstports=(\d+)-(\d+)/.exec(line);
    const icmp = /icmptype=(\d+)/.exec(line);
    targets.push({
      dst: Uint8Array.from(m[1].split('.').map(Number)),
      proto,
      port: ports ? Number(ports[1]) : 443,
      icmpType: icmp ? Number(icmp[1]) : 8,
    });
  }
  for (const addrs of tree.env.hostAddresses?.values() ?? [])
    for (const a of addrs) if (a.length === 4) targets.push({ dst: a, proto: 6, port: 443, icmpType: 8 });
  const queries: FlowQuery[] = [];
  for (let i = 0; i < count; i++) {
    const r = rnd();
    if (family === 4 && r < 0.5 && targets.length > 0) {
      const t = targets[int(targets.length)]!;
      queries.push({
        family,
        proto: t.proto,
        dst: Uint8Array.from(t.dst),
        dstPort: t.proto === 1 ? -1 : t.port,
        icmpType: t.proto === 1 ? t.icmpType : -1,
        icmpCode: t.proto === 1 ? 0 : -1,
      });
      continue;
    }
    let dst: Uint8Array;
    if (family === 4 && r < 0.55) dst = Uint8Array.of(10, 139, 1, 1 + int(2));
    else dst = Uint8Array.from({ length: family === 4 ? 4 : 16 }, () => int(256));
    const p = rnd();
    const proto = p < 0.6 ? 6 : p < 0.9 ? 17 : family === 4 ? 1 : 58;
    queries.push({
      family,
      proto,
      dst,
      dstPort:
        proto === 6 || proto === 17 ? (rnd() < 0.7 ? WELL_KNOWN[int(WELL_KNOWN.length)]! : int(65536)) : -1,
      icmpType: proto === 1 || proto === 58 ? int(12) : -1,
      icmpCode: proto === 1 || proto === 58 ? 0 : -1,
    });
  }
  return queries;
}

/**
 * An IPv4 tree of exactly `count` rules. The generated list mixes in dst6 rules, which an
 * IPv4 tree leaves out, so more lines are generated and the first `count - 3` IPv4 rules are
 * kept with the three final catch-alls.
 */
export function benchRuleTree(count = 1000, seed = 1): BenchRuleTree {
  let lines = count;
  let f = realisticRuleSet(lines, seed);
  while (f.ipv4.entries.length - 1 < count) {
    lines += count;
    f = realisticRuleSet(lines, seed);
  }
  const [policy, ...rules] = f.ipv4.entries;
  const kept = [...rules.slice(0, Math.max(0, count - 3)), ...rules.slice(-3)];
  return { ...f.ipv4, entries: [policy!, ...kept] };
}

/** The compiled `benchRuleTree`: what `./moat bench engine` (b) evaluates. */
export function benchRuleSet(count = 1000, seed = 1): CompiledRuleSet {
  const tree = benchRuleTree(count, seed);
  return compileRuleEntries(tree.entries, tree.source, tree.env);
}

/**
 * A HostResolver that knows the fixture's names and nothing else (no DNS traffic): the
 * engine benchmark's dsthost names resolve at once, each family to its own addresses.
 */
export function staticHostResolver(hosts: ReadonlyMap<string, readonly Uint8Array[]>): HostResolver {
  return {
    retain() {},
    release() {},
    answer(name, family) {
      const all = hosts.get(name);
      if (!all) return { state: 'failed', reason: 'NXDOMAIN' };
      return { state: 'resolved', addresses: all.filter((a) => a.length === (family === 4 ? 4 : 16)) };
    },
    subscribe: () => () => {},
  };
}

export interface RuleBenchFigures {
  rules: number;
  atoms: number;
  compileMs: number;
  /** Decisions per second through the compiled index. */
  indexedPerSecond: number;
  /** Decisions per second through the linear scan (the same run's baseline). */
  linearPerSecond: number;
  /** indexed / linear. */
  speedup: number;
}

/** Measures rule evaluation alone (no packet parsing): compiled index against the linear scan. */
export function measureRuleEvaluation(
  options: { rules?: number; queries?: number; minMs?: number; family?: 4 | 6 } = {},
): RuleBenchFigures {
  const fixture = realisticRuleSet(options.rules ?? 1000);
  const family = options.family ?? 4;
  const tree = family === 4 ? fixture.ipv4 : fixture.ipv6;
  const queries = benchFlowQueries(fixture, options.queries ?? 4096, 2, family);
  const t0 = performance.now();
  const set = compileRuleEntries(tree.entries, tree.source, tree.env);
  const compileMs = performance.now() - t0;
  const parsed = parseRuleEntries(tree.entries, tree.source);
  if (!parsed.ok || set.failClosedReason)
    throw new Error(`bench fixture does not compile: ${set.failClosedReason}`);
  const out: RuleDecision = { action: 'drop', rule: -1 };
  const minMs = options.minMs ?? 300;
  const rate = (fn: (q: FlowQuery) => void): number => {
    let n = 0;
    const start = performance.now();
    let elapsed = 0;
    do {
      for (const q of queries) fn(q);
      n += queries.length;
      elapsed = performance.now() - start;
    } while (elapsed < minMs);
    return (n / elapsed) * 1000;
  };
  const indexedPerSecond = rate((q) => set.evaluate(q, out));
  const { rules, policy } = parsed.value;
  const env = tree.env;
  const linearPerSecond = rate((q) => evaluateLinear(rules, policy, q, env, out));
  return {
    rules: parsed.value.rules.length,
    atoms: set.atomCount,
    compileMs,
    indexedPerSecond,
    linearPerSecond,
    speedup: indexedPerSecond / linearPerSecond,
  };
}
