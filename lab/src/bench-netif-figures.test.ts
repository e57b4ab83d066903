import { describe, expect, it } from 'vitest';
import {
  correctRatio,
  EMULATED_NOTE,
  median,
  type NetifBenchRound,
  netifReportRows,
  roundRatio,
  summarizeNetifRounds,
} from './bench-netif-figures.ts';

const penalty = { slowdown: { js: 12, c: 3 }, hashesAgree: true };
const r = (direction: 'up' | 'down', linux: number, ours: number): NetifBenchRound => ({
  direction,
  linuxMbitPerS: linux,
  oursMbitPerS: ours,
  ratio: roundRatio(ours, linux),
});

describe("bench netif's figures", () => {
  it('takes the median of the finite ratios', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(median([Number.NaN, 5])).toBe(5);
    expect(median([])).toBeNaN();
  });

  it('gives no ratio for a failed or zero run', () => {
    expect(roundRatio(10, 40)).toBe(0.25);
    expect(roundRatio(Number.NaN, 40)).toBeNaN();
    expect(roundRatio(10, 0)).toBeNaN();
  });

  it('corrects a ratio by JS slowdown over C slowdown', () => {
    // Our JS runs 12x slower under emulation, the kernel's C 3x: 0.1 emulated is 0.4 unemulated.
    expect(correctRatio(0.1, penalty)).toBe(0.4);
    expect(correctRatio(0.1, { slowdown: { js: 12, c: 0 } })).toBeNaN();
  });

  it('sums each direction up: best rates, median ratio, corrected ratio, the aim on the lower one', () => {
    const rounds = [
      r('up', 100, 10),
      r('down', 100, 20),
      r('up', 80, 16),
      r('down', 120, 24),
      r('up', 90, 9),
      r('down', Number.NaN, 30),
    ];
    const s = summarizeNetifRounds(rounds, penalty);
    expect(s.note).toBe(EMULATED_NOTE);
    expect(s.up).toMatchObject({ linuxMbitPerS: 100, oursMbitPerS: 16, ratio: 0.1, correctedRatio: 0.4 });
    // The failed Linux run leaves that round out of the ratio but its own rate still counts.
    expect(s.down).toMatchObject({ linuxMbitPerS: 120, oursMbitPerS: 30, ratio: 0.2, correctedRatio: 0.8 });
    expect(s.up.directMbitPerS).toBeNaN();
    expect(s.meetsAimAgainstDirect).toBe(false);
    expect(s.correctedRatio).toBe(0.4);
    expect(s.meetsAim).toBe(false);
    expect(summarizeNetifRounds(rounds, { slowdown: { js: 15, c: 3 } }).meetsAim).toBe(true);
  });

  it('measures ours against the direct client too, the aim then holding for any middle', () => {
    const rounds = [
      { ...r('up', Number.NaN, 10), directMbitPerS: 50 },
      { ...r('up', Number.NaN, 12), directMbitPerS: 40 },
      { ...r('down', Number.NaN, 20), directMbitPerS: 100 },
    ];
    const s = summarizeNetifRounds(rounds, penalty);
    expect(s.up).toMatchObject({ directMbitPerS: 50, ratioToDirect: 0.25, correctedRatioToDirect: 1 });
    expect(s.down).toMatchObject({ ratioToDirect: 0.2, correctedRatioToDirect: 0.8 });
    expect(s.meetsAim).toBe(false); // no Linux bridge figures
    expect(s.meetsAimAgainstDirect).toBe(true);
  });

  it('does not meet the aim when a direction has no figures', () => {
    const s = summarizeNetifRounds([r('up', 10, 10)], penalty);
    expect(s.down.ratio).toBeNaN();
    expect(s.correctedRatio).toBeNaN();
    expect(s.meetsAim).toBe(false);
  });

  it('reports one row per direction with the penalties beside the ratios', () => {
    const rounds = [
      {
        ...r('up', 100, 10),
        linuxTcp: { retransmits: 0, rttMs: 1.5 },
        oursTcp: { retransmits: 3, rttMs: 20 },
      },
      { ...r('down', 100, 20), linuxTcp: { retransmits: 2 } },
      r('up', 100, 12),
    ];
    const rows = netifReportRows(summarizeNetifRounds(rounds, penalty), rounds, penalty);
    expect(rows.map((x) => x.direction)).toEqual(['client -> netvm', 'netvm -> client']);
    expect(rows[0]).toMatchObject({
      linuxBridgeMbitPerS: 100,
      oursMbitPerS: 12,
      ratio: 0.11,
      roundRatios: '0.1 0.12',
      roundRetransmitsRtt: '0/1.5ms,3/20ms -,-',
      penaltySlowdownJs: 12,
      penaltySlowdownC: 3,
      correctedRatio: 0.44,
      meetsAim: false,
    });
    expect(rows[1]).toMatchObject({
      ratio: 0.2,
      correctedRatio: 0.8,
      meetsAim: true,
      roundRetransmitsRtt: '2,-',
    });
  });
});
