import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatIpv4, formatIpv6 } from '../wire/address.ts';
import { compileRuleSet } from './compile.ts';
import { parseRuleEntries } from './grammar.ts';
import { evaluateLinear, type RuleEnvironment } from './semantics.ts';
import type { FlowQuery, RuleDecision } from './types.ts';

// Small pools so random rules and queries collide often (prefixes nest, ports overlap).
const v4Pool = [
  [10, 0, 0, 1],
  [10, 0, 1, 7],
  [10, 139, 1, 1],
  [10, 139, 1, 2],
  [192, 168, 1, 200],
  [8, 8, 8, 8],
].map((a) => Uint8Array.from(a));
const v6Pool = [
  [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
  [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
  [0x2a, 0x00, 0x14, 0x50, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0e],
  [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53],
].map((a) => Uint8Array.from(a));
const hosts = new Map<string, Uint8Array[]>([
  ['a.example', [v4Pool[0]!, v6Pool[0]!]],
  ['b.example', [v4Pool[4]!, v4Pool[5]!]],
  ['c.example', [v6Pool[2]!]],
]);
const dnsServers = [v4Pool[2]!, v4Pool[3]!, v6Pool[3]!];
const ports = [0, 22, 53, 80, 443, 8080, 65535];

const portRange = fc
  .tuple(fc.constantFrom(...ports), fc.integer({ min: 0, max: 500 }))
  .map(([lo, span]) => `${lo}-${Math.min(65535, lo + span)}`);

const dstOption = fc.oneof(
  fc.constant(''),
  fc
    .tuple(fc.constantFrom(...v4Pool), fc.integer({ min: 0, max: 32 }))
    .map(([a, l]) => `dst4=${formatIpv4(a)}/${l}`),
  fc
    .tuple(fc.constantFrom(...v6Pool), fc.integer({ min: 0, max: 128 }))
    .map(([a, l]) => `dst6=${formatIpv6(a)}/${l}`),
  fc.constantFrom(...hosts.keys()).map((h) => `dsthost=${h}`),
);

const ruleLine = fc
  .record({
    action: fc.constantFrom('accept', 'drop'),
    dst: dstOption,
    proto: fc.constantFrom('', 'tcp', 'udp', 'icmp'),
    special: fc.boolean(),
    ports: fc.option(portRange, { nil: undefined }),
    icmp: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
  })
  .map(({ action, dst, proto, special, ports: p, icmp }) => {
    const parts = [`action=${action}`];
    if (dst) parts.push(dst);
    if (proto) parts.push(`proto=${proto}`);
    const isIcmp = proto === 'icmp';
    if (special && !isIcmp) parts.push('specialtarget=dns');
    if (p !== undefined && !isIcmp)
      parts.push(`dstports=${special ? (p.startsWith('53') ? '53-53' : p) : p}`);
    else if (icmp !== undefined && (proto === 'icmp' || (proto === '' && !special)))
      parts.push(`icmptype=${icmp}`);
    return parts.join(' ');
  });

const ruleTree = fc
  .tuple(
    fc.array(ruleLine, { maxLength: 40 }),
    fc.constantFrom('accept', 'drop'),
    fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 40, maxLength: 40 }),
  )
  .map(([lines, policy, gaps]) => {
    const entries: [string, string][] = [['policy', policy]];
    let n = 0;
    lines.forEach((line, i) => {
      entries.push([String(n).padStart(4, '0'), line]);
      n += gaps[i]!; // gaps in numbering, as dom0 leaves them
    });
    return entries.reverse(); // QubesDB imposes no order
  });

function mutate(addr: Uint8Array, bit: number | undefined): Uint8Array {
  const out = Uint8Array.from(addr);
  if (bit !== undefined) out[(bit >> 3) % out.length]! ^= 0x80 >> (bit & 7);
  return out;
}

const query: fc.Arbitrary<FlowQuery> = fc
  .record({
    family: fc.constantFrom(4 as const, 6 as const),
    proto: fc.constantFrom(1, 6, 17, 58, 47),
    v4: fc.constantFrom(...v4Pool),
    v6: fc.constantFrom(...v6Pool),
    flip: fc.option(fc.integer({ min: 0, max: 127 }), { nil: undefined }),
    port: fc.oneof(fc.constantFrom(...ports, -1, 54, 52), fc.integer({ min: 0, max: 65535 })),
    icmpType: fc.integer({ min: -1, max: 6 }),
  })
  .map(({ family, proto, v4, v6, flip, port, icmpType }) => ({
    family,
    proto,
    dst: mutate(family === 4 ? v4 : v6, flip === undefined ? undefined : flip % (family === 4 ? 32 : 128)),
    dstPort: proto === 6 || proto === 17 ? port : -1,
    icmpType: proto === 1 || proto === 58 ? icmpType : -1,
    icmpCode: -1,
  }));

describe('compiled rule index', () => {
  it('agrees with the linear first-match evaluator on random rule sets and queries', () => {
    fc.assert(
      fc.property(
        ruleTree,
        fc.constantFrom(undefined, 4 as const, 6 as const),
        fc.array(query, { minLength: 1, maxLength: 30 }),
        (entries, family, queries) => {
          const source = family === 6 ? 'fd09:24ef:4179::a89:7' : family === 4 ? '10.137.0.7' : undefined;
          const parsed = parseRuleEntries(
            entries.filter(
              ([, v]) => !(family === 4 && v.includes('dst6=')) && !(family === 6 && v.includes('dst4=')),
            ),
            source,
          );
          if (!parsed.ok) throw new Error(parsed.reason);
          const env: RuleEnvironment = { family, dnsServers, hostAddresses: hosts };
          const set = compileRuleSet(parsed.value, env);
          const a: RuleDecision = { action: 'drop', rule: -2 };
          const b: RuleDecision = { action: 'drop', rule: -2 };
          for (const q of queries) {
            if (set.failClosedReason !== undefined) {
              expect(set.evaluate(q, a)).toEqual({ action: 'drop', rule: -1 });
              continue;
            }
            set.evaluate(q, a);
            evaluateLinear(parsed.value.rules, parsed.value.policy, q, env, b);
            expect(a).toEqual(b);
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});
