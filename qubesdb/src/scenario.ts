import type { LatencyFigures } from './bench.ts';
import type { QubesDbDaemon } from './dom0.ts';
import type { QubesDb } from './vm.ts';

/**
 * A two-sided QubesDB check for runs where dom0 and the VM are different processes
 * (or domains): each half takes its own side's object and talks to the other half only
 * through QubesDB keys, so no clock is shared. The lab runs `runDom0Half` in dom0 and
 * `runVmHalf` in the domU; host tests run both in one process.
 *
 * 1. The VM checks the initial dump against `SCENARIO_INITIAL`, sets its watches and writes
 *    `/lab/vm-ready`; dom0 starts only then (so no event can precede the VM's watches).
 * 2. dom0 writes `/lab/seq/1..5`, removes `/lab/seq/3`, then the whole `/lab/seq/`; the VM
 *    records the watch events in order.
 * 3. Ping-pong: dom0 writes `/lab/ping`, the VM answers `/lab/pong` with the same value;
 *    dom0 times each round trip (write → VM watch → VM write → dom0 watch).
 * 4. dom0 writes `/lab/done`; the VM answers `/lab/report` (JSON) and its half ends.
 */

export const SCENARIO_INITIAL: readonly (readonly [string, string])[] = [
  ['/name', 'moat-lab'],
  ['/qubes-ip', '10.137.0.50'],
  ['/qubes-service/qubes-firewall', '1'],
  ['/qubes-firewall/10.137.0.51/policy', 'drop'],
  ['/qubes-firewall/10.137.0.51', ''],
];

/** The watch events the VM must see for step 2, in this order. */
export const SCENARIO_EXPECTED_EVENTS: readonly string[] = [
  '/lab/seq/1',
  '/lab/seq/2',
  '/lab/seq/3',
  '/lab/seq/4',
  '/lab/seq/5',
  '/lab/seq/3',
  '/lab/seq/',
];

export interface VmHalfReport {
  initialOk: boolean;
  initialMismatches: string[];
  events: string[];
  pongs: number;
}

export interface Dom0HalfReport {
  ok: boolean;
  failures: string[];
  vm: VmHalfReport | undefined;
  /** Round trips dom0 → VM → dom0, in ms (one-way is about half). */
  roundTrip: LatencyFigures | undefined;
}

/** The VM's half: resolves with what it reported once dom0 says done (or rejects after `timeoutMs`). */
export function runVmHalf(db: QubesDb, options: { timeoutMs: number }): Promise<VmHalfReport> {
  const mismatches: string[] = [];
  for (const [path, value] of SCENARIO_INITIAL) {
    const got = db.read(path);
    if (got !== value)
      mismatches.push(`${path}: expected ${JSON.stringify(value)}, got ${JSON.stringify(got)}`);
  }
  const report: VmHalfReport = {
    initialOk: mismatches.length === 0,
    initialMismatches: mismatches,
    events: [],
    pongs: 0,
  };
  return new Promise((resolve, reject) => {
    const offs = [
      db.watch('/lab/seq/', (path) => report.events.push(path)),
      db.watch('/lab/ping', (path) => {
        const value = db.read(path);
        if (value === undefined) return;
        report.pongs++;
        db.write('/lab/pong', value);
      }),
      db.watch('/lab/done', () => {
        finish();
        db.write('/lab/report', JSON.stringify(report));
        resolve(report);
      }),
    ];
    db.write('/lab/vm-ready', '1');
    const timer = setTimeout(() => {
      finish();
      reject(
        new Error(
          `VM half: dom0 did not finish within ${options.timeoutMs} ms (events so far: ${report.events.join(' ')})`,
        ),
      );
    }, options.timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      for (const off of offs) off();
    };
  });
}

/** dom0's half: drives the scenario once the VM has synchronised, and checks what the VM reports. */
export async function runDom0Half(
  daemon: QubesDbDaemon,
  options: { timeoutMs: number; pings?: number },
): Promise<Dom0HalfReport> {
  const failures: string[] = [];
  const deadline = Date.now() + options.timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  if (daemon.read('/lab/vm-ready') === undefined) await waitFor(daemon, '/lab/vm-ready', () => true, left());

  for (let i = 1; i <= 5; i++) daemon.write(`/lab/seq/${i}`, String(i));
  daemon.rm('/lab/seq/3');
  daemon.rm('/lab/seq/');

  const samples: number[] = [];
  for (let i = 0; i < (options.pings ?? 100); i++) {
    const value = `ping-${i}`;
    const answered = waitFor(daemon, '/lab/pong', (v) => v === value, left());
    const start = performance.now();
    daemon.write('/lab/ping', value);
    await answered;
    samples.push(performance.now() - start);
  }

  const reported = waitFor(daemon, '/lab/report', () => true, left());
  daemon.write('/lab/done', '1');
  const vm = JSON.parse(await reported) as VmHalfReport;
  if (!vm.initialOk) failures.push(`initial dump differs: ${vm.initialMismatches.join('; ')}`);
  if (JSON.stringify(vm.events) !== JSON.stringify(SCENARIO_EXPECTED_EVENTS)) {
    failures.push(
      `watch events ${JSON.stringify(vm.events)}, expected ${JSON.stringify(SCENARIO_EXPECTED_EVENTS)}`,
    );
  }
  if (vm.pongs !== samples.length) failures.push(`the VM answered ${vm.pongs} pings of ${samples.length}`);
  return {
    ok: failures.length === 0,
    failures,
    vm,
    roundTrip: samples.length > 0 ? summarise(samples) : undefined,
  };
}

function waitFor(
  daemon: QubesDbDaemon,
  path: string,
  accept: (value: string) => boolean,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`dom0 half: no acceptable ${path} from the VM within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = daemon.watch(path, () => {
      const value = daemon.read(path);
      if (value === undefined || !accept(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

function summarise(samples: number[]): LatencyFigures {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) =>
    Number(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(4));
  return { samples: sorted.length, medianMs: at(0.5), p90Ms: at(0.9), p99Ms: at(0.99), maxMs: at(1) };
}
