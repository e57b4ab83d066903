import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildLinuxImage,
  compareRuns,
  type LabSession,
  type LinuxGuestImage,
  labSession,
  parseScenario,
  runScenario,
  type ScenarioFirewall,
  type StepReport,
} from '@moat/lab';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Every scenario in test/scenarios/ on real Xen, one lab boot for all of them
 * (`./moat lab run <file> [--firewall linux|moat]` runs one file in a lab of its own): each
 * starts its upstream netvm and clients, and every step must meet its expectation. A failure
 * names the step, what came back and why it did not match (with a firewall that logs, its
 * console's last lines).
 *
 * A file with a firewall runs with sys-moat (`moat`) and then with the Linux reference
 * firewall (`linux`), and the two must give the same results row for row: every step met its
 * expectation with both, where a step declares that Linux differs by design (`expect_linux`
 * with its `why`) each met its own. The comparison (each row's outcome with both) is printed.
 * In CI (this issue's lab share is about 12 minutes) rules.json (every rule option) and
 * ipv6.json (qubes with the `ipv6` feature) run with both; lifecycle.json's and pvh.json's
 * Linux runs (82 s and about 60 s in the fresh-clone CI of 23:03, which without them kept the
 * issue's lab files at about 12 minutes) and the `*.long.json` files (repeated or long
 * variants) run with MOAT_LAB_LONG=1 (times in lab/NOTES.md, "sys-moat and the Linux
 * reference row for row" and "IPv6 in the lab").
 */
const LINUX_IN_CI = new Set(['rules.json', 'ipv6.json']);
const dir = new URL('./scenarios/', import.meta.url).pathname;
const long = process.env.MOAT_LAB_LONG === '1';
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.json') && (long || !f.endsWith('.long.json')))
  .sort();
const runs: (readonly [string, ScenarioFirewall])[] = files.flatMap(
  (file): (readonly [string, ScenarioFirewall])[] => {
    const own = parseScenario(readFileSync(join(dir, file), 'utf8'), file).firewall;
    if (own === 'none') return [[file, 'none']];
    if (!long && !LINUX_IN_CI.has(file)) return [[file, 'moat']];
    return [
      [file, 'moat'],
      [file, 'linux'],
    ];
  },
);
/** Each run's rows, by file and firewall, for the comparison. */
const results = new Map<string, Map<ScenarioFirewall, readonly StepReport[]>>();

let lab: LabSession;
let image: LinuxGuestImage;

beforeAll(async () => {
  image = await buildLinuxImage();
  lab = await labSession('scenarios', { addon: image.addon, bootTimeoutMs: 1_200_000 });
}, 1_500_000);

afterAll(async () => {
  await lab?.end();
});

describe('lab scenarios (test/scenarios, lab)', () => {
  it.each(runs.map(([file, firewall], i) => [file, firewall, i] as const))(
    '%s (firewall %s)',
    async (file, firewall, i) => {
      const scenario = parseScenario(readFileSync(join(dir, file), 'utf8'), file);
      const row = (r: StepReport) =>
        `${r.ok ? 'ok  ' : 'FAIL'} ${r.step} ${r.what}: ${r.result}${r.expect ? ` (expect ${r.expect})` : ''} ${r.ms} ms` +
        (r.ok ? '' : ` ${JSON.stringify(r.detail)}`);
      // Each step as it ends, so a run stopped midway still shows how far it got.
      const run = await runScenario(scenario, {
        lab,
        image,
        namePrefix: `s${i}-`,
        firewall,
        onStep: (r) => console.log(`${file} (${firewall}) ${row(r)}`),
      });
      console.log(
        `scenario ${file} with ${firewall} (${JSON.stringify(run.timings)}):\n${run.reports.map(row).join('\n')}`,
      );
      results.set(file, (results.get(file) ?? new Map()).set(firewall, run.reports));
      expect(run.reports.filter((r) => !r.ok).map(row)).toEqual([]);
      expect(run.ok).toBe(true);
    },
    2_400_000,
  );

  it.each(files.filter((f) => runs.some(([file, fw]) => file === f && fw === 'linux')))(
    '%s: sys-moat and the Linux reference give the same results',
    (file) => {
      const moat = results.get(file)?.get('moat');
      const linux = results.get(file)?.get('linux');
      if (!moat || !linux) throw new Error(`${file}: a run is missing (moat ${!!moat}, linux ${!!linux})`);
      const comparison = compareRuns(moat, linux);
      console.log(`scenario ${file}, moat vs linux:\n${comparison.table}`);
      expect(comparison.mismatches).toEqual([]);
    },
  );
});
