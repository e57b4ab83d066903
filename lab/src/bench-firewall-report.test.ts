import { describe, expect, it } from 'vitest';
import {
  type FirewallBenchSide,
  firewallBenchFigures,
  firewallRatios,
  formatFirewallBench,
  median,
  meetsAim,
  moatOverLinux,
  penaltyCorrection,
} from './bench-firewall-report.ts';
import type { PenaltyFigures } from './penalty.ts';

/** JS 4x slower in the domU, C 1x: correction 4. */
const PENALTY: PenaltyFigures = {
  iterations: 10_000_000,
  host: { cMs: 20, jsMs: 25 },
  guest: { cMs: 20, jsMs: 100 },
  slowdown: { c: 1, js: 4 },
  jsOverC: { host: 1.25, guest: 5 },
  hashesAgree: true,
};

const MOAT: FirewallBenchSide = {
  kind: 'moat',
  ok: true,
  firstForwardMs: 60_000,
  pingMs: 4,
  pingMinMs: 3,
  pingMaxMs: 6,
  upMbitPerS: 20,
  downMbitPerS: 30,
  upRoundsMbitPerS: [18, 20, 25],
  downRoundsMbitPerS: [31, 30, 28],
  coldUpMbitPerS: 4,
  coldDownMbitPerS: 25,
  clients: 20,
  clientsPinged: 20,
  memory: {
    memoryMb: 192,
    inUseMiB: 60,
    memTotalMiB: 160,
    slabMiB: 15,
    node: { rssMiB: 50, heapUsedMiB: 8, externalMiB: 12 },
  },
};

const LINUX: FirewallBenchSide = {
  kind: 'linux',
  ok: true,
  firstForwardMs: 40_000,
  pingMs: 2,
  pingMinMs: 1,
  pingMaxMs: 3,
  upMbitPerS: 100,
  downMbitPerS: 100,
  upRoundsMbitPerS: [100, 90, 110],
  downRoundsMbitPerS: [100, 100, 100],
  coldUpMbitPerS: 80,
  coldDownMbitPerS: 100,
  clients: 20,
  clientsPinged: 20,
  memory: { memoryMb: 192, inUseMiB: 40, memTotalMiB: 160, slabMiB: 20 },
};

describe('bench firewall: ratios and correction', () => {
  it('takes the median of the rounds', () => {
    expect(median([25, 18, 20])).toBe(20);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeUndefined();
  });

  it('is sys-moat / Linux, undefined when a side is missing or not positive', () => {
    expect(moatOverLinux(20, 100)).toBe(0.2);
    expect(moatOverLinux(undefined, 100)).toBeUndefined();
    expect(moatOverLinux(20, 0)).toBeUndefined();
    expect(moatOverLinux(Number.NaN, 1)).toBeUndefined();
  });

  it('takes the correction from the fastest times: JS slowdown / C slowdown', () => {
    expect(penaltyCorrection(PENALTY)).toBe(4);
    // a C slowdown under 1 (the host slowed by its load) raises the factor; rounded slowdowns are not used
    expect(penaltyCorrection({ ...PENALTY, host: { cMs: 40, jsMs: 25 }, slowdown: { c: 0.5, js: 4 } })).toBe(
      8,
    );
    expect(penaltyCorrection({ ...PENALTY, hashesAgree: false })).toBeUndefined();
    expect(penaltyCorrection({ ...PENALTY, guest: { cMs: 0, jsMs: 100 } })).toBeUndefined();
  });

  it('multiplies throughput ratios by the correction and divides time ratios by it; memory stays raw', () => {
    const r = firewallRatios(MOAT, LINUX, 4);
    expect(r.up).toEqual({ raw: 0.2, corrected: 0.8 });
    expect(r.down).toEqual({ raw: 0.3, corrected: 1.2 });
    expect(r.coldUp).toEqual({ raw: 0.05, corrected: 0.2 });
    expect(r.coldDown).toEqual({ raw: 0.25, corrected: 1 });
    expect(r.ping).toEqual({ raw: 2, corrected: 0.5 });
    expect(r.pingMin).toEqual({ raw: 3, corrected: 0.75 });
    expect(r.firstForward).toEqual({ raw: 1.5, corrected: 0.375 });
    expect(r.memory).toEqual({ raw: 1.5 });
  });

  it('leaves the corrected ratio out without a usable penalty, and both out without a side', () => {
    expect(firewallRatios(MOAT, LINUX, undefined).up).toEqual({ raw: 0.2 });
    const missing = firewallRatios(MOAT, { kind: 'linux', ok: false, error: 'x' }, 4);
    expect(missing.up).toEqual({});
    expect(missing.memory).toEqual({});
  });

  it('meets the aim only when both corrected throughputs are at least 0.5', () => {
    expect(meetsAim(firewallRatios(MOAT, LINUX, 4))).toBe(true);
    expect(meetsAim(firewallRatios(MOAT, LINUX, 2))).toBe(false); // up 0.4
    expect(meetsAim(firewallRatios(MOAT, LINUX, undefined))).toBeUndefined();
  });
});

describe('bench firewall: figures and report', () => {
  const figures = firewallBenchFigures({
    seconds: 10,
    rounds: 3,
    clients: 20,
    clientDomains: 4,
    moat: MOAT,
    linux: LINUX,
    penalty: PENALTY,
    load: { start: '1.00 2.00 3.00', end: '4.00 5.00 6.00' },
  });

  it('has the JSON shape `--json` prints', () => {
    const json = JSON.parse(JSON.stringify(figures));
    expect(Object.keys(json).sort()).toEqual(
      [
        'aim',
        'clientDomains',
        'clients',
        'correction',
        'linux',
        'load',
        'meetsAim',
        'moat',
        'note',
        'penalty',
        'ratios',
        'rounds',
        'seconds',
      ].sort(),
    );
    expect(json.note).toMatch(/emulated lab/);
    expect(json.correction).toBe(4);
    expect(json.meetsAim).toBe(true);
    expect(Object.keys(json.ratios).sort()).toEqual([
      'coldDown',
      'coldUp',
      'down',
      'firstForward',
      'memory',
      'ping',
      'pingMin',
      'up',
    ]);
    expect(json.moat).toEqual(MOAT);
    expect(json.linux.memory.node).toBeUndefined();
  });

  it('prints one row per figure with both sides, the ratio and the corrected ratio, labelled emulated', () => {
    const lines = formatFirewallBench(figures);
    expect(lines[0]).toMatch(/emulated lab/);
    expect(lines[1]).toMatch(/sys-moat\s+Linux\s+moat\/Linux\s+corrected\s+better/);
    const row = (label: string) => lines.find((l) => l.startsWith(label))?.split(/\s{2,}/);
    expect(row('TCP client -> netvm')?.slice(1)).toEqual(['20.0', '100.0', '0.200', '0.800', 'higher']);
    expect(row('TCP netvm -> client')?.slice(1)).toEqual(['30.0', '100.0', '0.300', '1.200', 'higher']);
    expect(row('TCP client -> netvm')?.[0]).toMatch(/median of 3/);
    expect(row('first TCP client -> netvm')?.slice(1)).toEqual(['4.0', '80.0', '0.050', '0.200', 'higher']);
    expect(row('first TCP netvm -> client')?.slice(1)).toEqual(['25.0', '100.0', '0.250', '1.000', 'higher']);
    expect(lines).toContain('  sys-moat rounds, Mbit/s: up 18, 20, 25; down 31, 30, 28');
    expect(lines).toContain('  Linux rounds, Mbit/s: up 100, 90, 110; down 100, 100, 100');
    expect(row('ping round trip, ms (avg')?.slice(1)).toEqual(['4.00', '2.00', '2.000', '0.500', 'lower']);
    expect(row('ping round trip, ms (fastest')?.slice(1)).toEqual([
      '3.00',
      '1.00',
      '3.000',
      '0.750',
      'lower',
    ]);
    expect(row('xl create -> first')?.slice(1)).toEqual(['60.0', '40.0', '1.500', '0.375', 'lower']);
    expect(row('memory in use, 20 clients')?.slice(1)).toEqual([
      '60.0',
      '40.0',
      '1.500',
      '(raw only)',
      'lower',
    ]);
    expect(row('client vifs pinging')?.slice(1)).toEqual(['20', '20']);
    // columns line up: every row as wide as the header up to its last cell
    const text = lines.join('\n');
    expect(text).toMatch(/C 20 ms here, 20 ms in a domU \(1x\); JS 25 ms here, 100 ms in a domU \(4x\)/);
    expect(text).toMatch(/moat\/Linux x 4 \(JS slowdown \/ C slowdown\)/);
    expect(text).toMatch(
      /sys-moat: memory = maxmem 192, MemTotal 160, in use 60, slab 15; node: RSS 50, JS heap used 8/,
    );
    expect(text).toMatch(/aim: .*: met/);
    expect(text).toMatch(/load average at start: 1.00 2.00 3.00/);
  });

  it('prints where sys-moat spent its time in the profiled run', () => {
    const profiled = firewallBenchFigures({
      seconds: 10,
      rounds: 3,
      clients: 20,
      clientDomains: 2,
      moat: {
        ...MOAT,
        profiled: {
          upMbitPerS: 18.5,
          profile: {
            ms: 15_000,
            samples: 15_000,
            idle: 0.6,
            gc: 0.05,
            program: 0.1,
            top: [{ fn: 'receive engine.ts:10', ms: 1200, busyShare: 0.2 }],
          },
        },
      },
      linux: LINUX,
      penalty: PENALTY,
    });
    const text = formatFirewallBench(profiled).join('\n');
    expect(text).toMatch(
      /sys-moat profiled \(one more iperf3 client -> netvm, 18.5 Mbit\/s, .* over 15.0 s\): idle 60%, GC 5%/,
    );
    expect(text).toMatch(/\n {2}receive engine.ts:10 {2}1200 ms {2}20%/);
  });

  it('says n/a, unknown and why a side failed', () => {
    const failed = firewallBenchFigures({
      seconds: 10,
      rounds: 3,
      clients: 20,
      clientDomains: 4,
      moat: MOAT,
      linux: { kind: 'linux', ok: false, error: 'start: boom', pingMs: 2 },
      penalty: PENALTY,
    });
    const lines = formatFirewallBench(failed);
    expect(lines.find((l) => l.startsWith('TCP client'))).toMatch(/20\.0\s+n\/a\s+n\/a\s+n\/a\s+higher/);
    expect(lines.find((l) => l.startsWith('ping'))).toMatch(/4\.00\s+2\.00\s+2\.000\s+0\.500/);
    expect(lines).toContain('Linux failed: start: boom');
    expect(lines.join('\n')).toMatch(/aim: .*: unknown/);
    expect(failed.meetsAim).toBeUndefined();
  });
});
