/**
 * The pure part of `./moat bench netif`: per-round iperf3 figures of the two paths, summed up
 * per direction into best rates, the median ratio and that ratio corrected by the emulation
 * penalty measured in the same lab run.
 */
import type { PenaltyFigures } from './penalty.ts';

export type NetifDirection = 'up' | 'down';

/** up: client -> netvm (iperf3), down: netvm -> client (iperf3 -R). */
export const NETIF_DIRECTIONS: readonly NetifDirection[] = ['up', 'down'];

/** One direction's iperf3 figures in one round; NaN for a run that failed. */
export interface NetifBenchRound {
  readonly direction: NetifDirection;
  readonly linuxMbitPerS: number;
  readonly oursMbitPerS: number;
  /** ours / linux in this round (NaN when either run failed). */
  readonly ratio: number;
  /**
   * A Linux client on the netvm directly, no middle domU (NaN when not run): the ceiling any
   * middle can reach, and the reference left when the Linux bridge path fails.
   */
  readonly directMbitPerS?: number;
  /** The sender's TCP retransmits and mean RTT (ms, up only) of each run, where iperf3 gave them. */
  readonly linuxTcp?: IperfTcp;
  readonly oursTcp?: IperfTcp;
}

export interface IperfTcp {
  readonly retransmits?: number;
  readonly rttMs?: number;
}

const tcpText = (t: IperfTcp | undefined) =>
  t && (t.retransmits !== undefined || t.rttMs !== undefined)
    ? `${t.retransmits ?? '?'}${t.rttMs !== undefined ? `/${t.rttMs}ms` : ''}`
    : '-';

export interface NetifDirectionFigures {
  /** Best round of each path, Mbit/s (iperf3's received rate); NaN if every run failed. */
  readonly linuxMbitPerS: number;
  readonly oursMbitPerS: number;
  /** Median over the rounds where both paths ran of ours / linux. */
  readonly ratio: number;
  /**
   * ratio × (JS slowdown / C slowdown): emulation slows our JavaScript path by the JS factor
   * and the kernel's C path by the C factor, so this estimates the ratio without emulation.
   */
  readonly correctedRatio: number;
  /** Best direct rate, median of ours / direct per round, and it corrected (a lower bound of ours / Linux bridge). */
  readonly directMbitPerS: number;
  readonly ratioToDirect: number;
  readonly correctedRatioToDirect: number;
}

export const NETIF_AIM = 0.5;
export const EMULATED_NOTE =
  'measured in the emulated lab (Xen 4.17 in QEMU TCG on a shared machine), not on hardware';

export interface NetifBenchSummary {
  readonly note: string;
  readonly up: NetifDirectionFigures;
  readonly down: NetifDirectionFigures;
  /** The lower of the two directions' corrected ratios (NaN if either is missing). */
  readonly correctedRatio: number;
  /** Both directions' corrected ratios at least NETIF_AIM. */
  readonly meetsAim: boolean;
  /**
   * Both directions' corrected ratios to the direct client at least NETIF_AIM: the aim met
   * for any Linux middle, which can be no faster than no middle at all.
   */
  readonly meetsAimAgainstDirect: boolean;
}

const round = (x: number, digits = 3) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : Number.NaN);

export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

const best = (xs: readonly number[]) => {
  const finite = xs.filter((x) => Number.isFinite(x));
  return finite.length ? Math.max(...finite) : Number.NaN;
};

/** ours / linux, NaN unless both are positive rates. */
export function roundRatio(oursMbitPerS: number, linuxMbitPerS: number): number {
  return oursMbitPerS > 0 && linuxMbitPerS > 0 ? round(oursMbitPerS / linuxMbitPerS) : Number.NaN;
}

/** A ratio of our JS path to the kernel's C path with the emulation penalties divided out. */
export function correctRatio(ratio: number, penalty: Pick<PenaltyFigures, 'slowdown'>): number {
  const { js, c } = penalty.slowdown;
  if (!(js > 0 && c > 0)) return Number.NaN;
  return round((ratio * js) / c);
}

export function summarizeNetifRounds(
  rounds: readonly NetifBenchRound[],
  penalty: Pick<PenaltyFigures, 'slowdown'>,
): NetifBenchSummary {
  const direction = (d: NetifDirection): NetifDirectionFigures => {
    const rs = rounds.filter((r) => r.direction === d);
    const ratio = round(median(rs.map((r) => r.ratio)));
    const ratioToDirect = round(
      median(rs.map((r) => roundRatio(r.oursMbitPerS, r.directMbitPerS ?? Number.NaN))),
    );
    return {
      linuxMbitPerS: best(rs.map((r) => r.linuxMbitPerS)),
      oursMbitPerS: best(rs.map((r) => r.oursMbitPerS)),
      ratio,
      correctedRatio: correctRatio(ratio, penalty),
      directMbitPerS: best(rs.map((r) => r.directMbitPerS ?? Number.NaN)),
      ratioToDirect,
      correctedRatioToDirect: correctRatio(ratioToDirect, penalty),
    };
  };
  const up = direction('up');
  const down = direction('down');
  const correctedRatio = Math.min(up.correctedRatio, down.correctedRatio);
  return {
    note: EMULATED_NOTE,
    up,
    down,
    correctedRatio,
    meetsAim: Number.isFinite(correctedRatio) && correctedRatio >= NETIF_AIM,
    meetsAimAgainstDirect: [up, down].every(
      (f) => Number.isFinite(f.correctedRatioToDirect) && f.correctedRatioToDirect >= NETIF_AIM,
    ),
  };
}

/** The bench's result lines: one per direction, flat fields a table shows. */
export function netifReportRows(
  summary: NetifBenchSummary,
  rounds: readonly NetifBenchRound[],
  penalty: Pick<PenaltyFigures, 'slowdown' | 'hashesAgree'>,
): Record<string, string | number | boolean>[] {
  return NETIF_DIRECTIONS.map((d) => {
    const f = summary[d];
    return {
      direction: d === 'up' ? 'client -> netvm' : 'netvm -> client',
      linuxBridgeMbitPerS: f.linuxMbitPerS,
      oursMbitPerS: f.oursMbitPerS,
      ratio: f.ratio,
      roundRatios: rounds
        .filter((r) => r.direction === d)
        .map((r) => r.ratio)
        .join(' '),
      // Per round, Linux then ours: the sender's retransmits / mean RTT.
      roundRetransmitsRtt: rounds
        .filter((r) => r.direction === d)
        .map((r) => `${tcpText(r.linuxTcp)},${tcpText(r.oursTcp)}`)
        .join(' '),
      penaltySlowdownJs: penalty.slowdown.js,
      penaltySlowdownC: penalty.slowdown.c,
      penaltyHashesAgree: penalty.hashesAgree,
      correctedRatio: f.correctedRatio,
      aim: `corrected ratio >= ${NETIF_AIM}`,
      meetsAim: Number.isFinite(f.correctedRatio) && f.correctedRatio >= NETIF_AIM,
      directMbitPerS: f.directMbitPerS,
      ratioToDirect: f.ratioToDirect,
      correctedRatioToDirect: f.correctedRatioToDirect,
    };
  });
}
