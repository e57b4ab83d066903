/**
 * `@moat/firewall/bench` (not the main entry): the engine benchmark and the rule fixtures.
 *
 * `./moat bench engine`: packets per second through FirewallEngine on one core, each case
 * beside the same run's floor (copying the frame bytes into the work buffer and handing
 * them to a sink, with no engine) and the ratio to it. Also reports how many garbage
 * collections ran during the measured loops: an allocation-free hot path runs none.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { benchFlowQueries, realisticRuleSet } from '../rules/bench-fixtures.ts';

export {
  type BenchRuleFixture,
  type BenchRuleTree,
  benchFlowQueries,
  benchRuleSet,
  benchRuleTree,
  measureRuleEvaluation,
  type RuleBenchFigures,
  realisticRuleSet,
  seededRandom,
  staticHostResolver,
} from '../rules/bench-fixtures.ts';

import { ClientRules } from '../client-rules.ts';
import {
  type BenchRuleTree,
  benchRuleSet,
  benchRuleTree,
  staticHostResolver,
} from '../rules/bench-fixtures.ts';
import type { RuleSet } from '../rules/types.ts';
import { parseIpv4Text } from '../wire/address.ts';
import { type FrameMeta, type FrameSink, plainMeta, UPLINK } from './config.ts';
import { FirewallEngine, V_FORWARDED } from './engine.ts';
import { acceptAll, frame4 } from './frames.ts';

export interface BenchCase {
  name: string;
  packets: number;
  /** Per second of this process's CPU time (one core's throughput on a shared machine). */
  packetsPerSecond: number;
  /** Per second of wall-clock time (lower when other work shares the cores). */
  wallClockPacketsPerSecond: number;
  /** The floor: copying the same frames with no engine. */
  floorPerSecond: number;
  /** packetsPerSecond / floorPerSecond. */
  ratioToFloor: number;
  /** Share of packets the engine forwarded (the rest were answered or dropped by rule). */
  forwardedShare: number;
  gcRuns: number;
  frameBytes: number;
}

export interface EngineBenchResult {
  node: string;
  rules: number;
  rulesFrom: string;
  conntrackMax: number;
  cases: BenchCase[];
  targets: { establishedPps: number; newFlowsPerSecond: number };
}

const ip = (s: string) => parseIpv4Text(s)!;
const UP4 = ip('10.137.0.5');
const C1 = ip('10.137.0.20');
const C_MAC = new Uint8Array([0, 0x16, 0x3e, 0x5e, 0x6c, 1]);
const UP_MAC = new Uint8Array([0, 0x16, 0x3e, 0x5e, 0x6c, 0]);
const NETVM_MAC = new Uint8Array([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]);

class CountingSink implements FrameSink {
  n = 0;
  send(_link: number, _buf: Uint8Array, _off: number, len: number, _meta: FrameMeta): void {
    this.n += len;
  }
}

interface Workload {
  links: Int32Array;
  frames: Uint8Array[];
}

const ACCEPT_ALL: BenchRuleTree = { source: '10.137.0.20', entries: [['policy', 'accept']], env: {} };

/**
 * An engine with one client whose rules come in as a firewall VM gives them: the QubesDB
 * tree through ClientRules (names from the fixture's static resolver), or a caller's set.
 */
function makeEngine(
  rules: BenchRuleTree | RuleSet,
  conntrackMax: number,
): { engine: FirewallEngine; client: number } {
  const engine = new FirewallEngine(
    {
      uplink: { mac: UP_MAC, ip4: UP4, gateway4: ip('10.137.0.1') },
      clientGateway4: UP4,
      dns: { virtual: [ip('10.139.1.1'), ip('10.139.1.2')], upstream: [ip('10.139.1.1'), ip('10.139.1.2')] },
      conntrackMax,
    },
    new CountingSink(),
  );
  const client = engine.addClient({ mac: C_MAC, ip4: C1 });
  if ('evaluate' in rules) engine.setRuleSet(client, rules);
  else {
    const hosts = rules.env.hostAddresses ?? new Map<string, readonly Uint8Array[]>();
    const entry = new ClientRules({ engine, resolver: staticHostResolver(hosts) });
    entry.update(rules.source, rules.entries);
    const reason = entry.status(rules.source)?.failClosedReason;
    if (reason !== undefined) throw new Error(`bench rules do not apply: ${reason}`);
    entry.close();
  }
  engine.tick(1);
  return { engine, client };
}

/** Established TCP flows: one frame each way per flow, with a payload. */
function establishedWorkload(
  engine: FirewallEngine,
  client: number,
  flows: number,
  payload: number,
): Workload {
  const frames: Uint8Array[] = [];
  const links: number[] = [];
  const meta = plainMeta();
  for (let i = 0; i < flows; i++) {
    const dst = Uint8Array.of(93, 184, (i >> 8) & 0xff, i & 0xff);
    const sport = 20000 + i;
    const send = (link: number, f: Uint8Array) => engine.receive(link, f, 0, f.length, meta);
    send(client, frame4({ src: C1, dst, proto: 6, sport, dport: 443, tcpFlags: 0x02, srcMac: C_MAC }));
    const up = (flags: number, n = 0) =>
      frame4({
        src: dst,
        dst: UP4,
        proto: 6,
        sport: 443,
        dport: sport,
        tcpFlags: flags,
        srcMac: NETVM_MAC,
        dstMac: UP_MAC,
        payload: new Uint8Array(n),
      });
    send(UPLINK, up(0x12));
    send(client, frame4({ src: C1, dst, proto: 6, sport, dport: 443, tcpFlags: 0x10, srcMac: C_MAC }));
    frames.push(
      frame4({
        src: C1,
        dst,
        proto: 6,
        sport,
        dport: 443,
        tcpFlags: 0x18,
        srcMac: C_MAC,
        payload: new Uint8Array(payload),
      }),
    );
    links.push(client);
    frames.push(up(0x18, payload));
    links.push(UPLINK);
  }
  return { frames, links: Int32Array.from(links) };
}

/** New flows: frames aimed by the rule fixture's query mix (rule prefixes, DNS, random). */
function newFlowWorkload(client: number, count: number): Workload {
  const fixture = realisticRuleSet(1000);
  const queries = benchFlowQueries(fixture, count, 2, 4);
  const frames: Uint8Array[] = [];
  queries.forEach((q, i) => {
    frames.push(
      frame4({
        src: C1,
        dst: q.dst,
        proto: q.proto,
        sport: 1024 + (i % 60000),
        dport: q.dstPort < 0 ? 80 : q.dstPort,
        icmpType: q.proto === 1 ? 8 : undefined,
        icmpId: i & 0xffff,
        tcpFlags: 0x02,
        srcMac: C_MAC,
      }),
    );
  });
  return { frames, links: new Int32Array(frames.length).fill(client) };
}

async function measure(
  engine: FirewallEngine | undefined,
  w: Workload,
  minMs: number,
  meta: FrameMeta = plainMeta(),
): Promise<{ pps: number; wallPps: number; packets: number; forwarded: number; gcRuns: number }> {
  const work = new Uint8Array(2048);
  const sink = new CountingSink();
  const n = w.frames.length;
  let gcRuns = 0;
  const obs = new PerformanceObserver((list) => {
    gcRuns += list.getEntries().length;
  });
  obs.observe({ entryTypes: ['gc'] });
  let packets = 0;
  let forwarded = 0;
  let now = 2;
  // CPU time, not wall time: the machine is shared, and the figure asked for is one core's
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let elapsed = 0;
  while (elapsed < minMs) {
    for (let i = 0; i < n; i++) {
      const f = w.frames[i]!;
      work.set(f);
      if (engine) {
        if (engine.receive(w.links[i]!, work, 0, f.length, meta) === V_FORWARDED) forwarded++;
      } else {
        sink.send(w.links[i]!, work, 0, f.length, meta);
      }
    }
    packets += n;
    const c = process.cpuUsage(c0);
    elapsed = (c.user + c.system) / 1000;
    // one tick per pass, as the VM ticks per batch of ring work
    now += 1;
    if (engine) engine.tick(now);
  }
  const wall = performance.now() - t0;
  // GC entries are delivered asynchronously: let them arrive before counting
  await new Promise((resolve) => setTimeout(resolve, 20));
  obs.disconnect();
  return { pps: (packets / elapsed) * 1000, wallPps: (packets / wall) * 1000, packets, forwarded, gcRuns };
}

async function runCase(
  name: string,
  engine: FirewallEngine,
  w: Workload,
  minMs: number,
  meta?: FrameMeta,
): Promise<BenchCase> {
  // warm up the JIT on a copy of the work, then measure floor and engine back to back
  await measure(engine, w, Math.min(200, minMs), meta);
  await measure(undefined, w, Math.min(200, minMs), meta);
  const floor = await measure(undefined, w, minMs, meta);
  const r = await measure(engine, w, minMs, meta);
  return {
    name,
    packets: r.packets,
    packetsPerSecond: Math.round(r.pps),
    wallClockPacketsPerSecond: Math.round(r.wallPps),
    floorPerSecond: Math.round(floor.pps),
    ratioToFloor: Number((r.pps / floor.pps).toFixed(4)),
    forwardedShare: Number((r.forwarded / r.packets).toFixed(3)),
    gcRuns: r.gcRuns,
    frameBytes: Math.round(w.frames.reduce((s, f) => s + f.length, 0) / w.frames.length),
  };
}

export interface EngineBenchOptions {
  minMs?: number;
  /** The rule set of cases (b) and (c), given to the engine as it is (default: benchRuleTree(1000)). */
  ruleSet?: RuleSet;
  conntrackMax?: number;
  /**
   * How the default rules reach the engine: 'client-rules' (default) as a firewall VM gives
   * them, QubesDB trees through ClientRules (one more call per new flow: the two-family
   * wrapper); 'rule-set' as benches before ClientRules did, the compiled benchRuleSet(1000)
   * and for (a) a function that accepts everything, set on the engine directly. An A/B
   * against an older tree asks for 'rule-set', the only way the older bench has.
   */
  rulesThrough?: 'client-rules' | 'rule-set';
}

export async function runEngineBench(options: EngineBenchOptions = {}): Promise<EngineBenchResult> {
  const minMs = options.minMs ?? 1000;
  const conntrackMax = options.conntrackMax ?? 16384;
  const direct = options.rulesThrough === 'rule-set';
  const rules = options.ruleSet ?? (direct ? benchRuleSet(1000) : benchRuleTree(1000));
  const cases: BenchCase[] = [];

  // (a) established fast path with NAT: 1,024 TCP flows, both directions, 64-byte payloads
  {
    const { engine, client } = makeEngine(direct ? acceptAll : ACCEPT_ALL, conntrackMax);
    const w = establishedWorkload(engine, client, 1024, 64);
    cases.push(await runCase('established-nat', engine, w, minMs));
    // the same frames flagged as Linux netfront sends them with checksum offload on
    // (NETTXF_csum_blank | NETTXF_data_validated): no software checksum verification
    const offloaded = { csumBlank: false, dataValidated: true, gsoType: 0, gsoSize: 0 };
    cases.push(await runCase('established-nat-checksum-offloaded', engine, w, minMs, offloaded));
  }
  // (b) every packet a new flow against 1,000 rules (a small table, so revisits are new again)
  {
    const { engine, client } = makeEngine(rules, 1024);
    const w = newFlowWorkload(client, 8192);
    cases.push(await runCase('new-flows-1000-rules', engine, w, minMs));
  }
  // (c) a mix: 80 % established (both directions), 20 % new flows
  {
    const { engine, client } = makeEngine(rules, conntrackMax);
    // the established flows must be admitted by the rules: aim them at an accepted query
    const est = establishedWorkload(engine, client, 1024, 64);
    const fresh = newFlowWorkload(client, 2048);
    const frames: Uint8Array[] = [];
    const links: number[] = [];
    for (let i = 0, j = 0; i < est.frames.length; i++) {
      frames.push(est.frames[i]!);
      links.push(est.links[i]!);
      if (i % 4 === 3) {
        frames.push(fresh.frames[j % fresh.frames.length]!);
        links.push(client);
        j++;
      }
    }
    cases.push(
      await runCase('mix-80-established-20-new', engine, { frames, links: Int32Array.from(links) }, minMs),
    );
  }
  return {
    node: process.version,
    rules: 'evaluate' in rules ? rules.ruleNumbers.length : rules.entries.length - 1,
    rulesFrom: options.ruleSet
      ? 'caller'
      : direct
        ? 'rules/bench-fixtures benchRuleSet(1000), set on the engine directly (compiled index)'
        : 'rules/bench-fixtures benchRuleTree(1000), given to ClientRules as QubesDB entries (compiled index)',
    conntrackMax,
    cases,
    targets: { establishedPps: 2_000_000, newFlowsPerSecond: 200_000 },
  };
}
