import { appendFileSync } from 'node:fs';
import { buildImage, defaultCacheDir } from '@moat/unikernel';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bundleEntry,
  type GuestRun,
  guestImage,
  type LabSession,
  LabTimeout,
  labSession,
  pvhGrubBoot,
  SMOKE_GUEST,
} from '../src/index.ts';

/**
 * How PVH domUs end, many of them on one lab (issue 10's PVH failure, which ended as reboot):
 * MOAT_LAB_PVH_LOOP=<n> boots n PVH domUs that panic (sysrq `c`), MOAT_LAB_PVH_AT_ONCE at a time
 * (default 3); with MOAT_LAB_PVH_WITH_PV=1 each batch also runs a PVH guest that exits and a PV
 * guest that exits and one that panics beside them, as guest-end.lab.test.ts does. Every
 * ending, with the console's tail and Xen's lines about the domain, is appended to
 * MOAT_LAB_PVH_LOG when set. Not part of the default run (n unset): a measurement of a rate.
 *
 * MOAT_LAB_PVH_GRUB=<n> instead boots n PVH GRUB domUs at once (template-boot's route: GRUB reads
 * the kernel through its Xen disk driver, thousands of world switches a second) and lets them run
 * MOAT_LAB_PVH_GRUB_MINUTES (default 12); it counts how many ended in the emulator's lost-state
 * triple fault (lab/NOTES.md). Run it with and without MOAT_LAB_TCG_THREAD=single to compare.
 */
const GUEST = new URL('./guests/guest-end.guest.ts', import.meta.url).pathname;
const COUNT = Number(process.env.MOAT_LAB_PVH_LOOP ?? 0);
const AT_ONCE = Number(process.env.MOAT_LAB_PVH_AT_ONCE ?? 3);
const WITH_OTHERS = process.env.MOAT_LAB_PVH_WITH_PV === '1';
const LOG = process.env.MOAT_LAB_PVH_LOG;
const WAIT = { timeoutMs: 900_000 };
const GRUB_COUNT = Number(process.env.MOAT_LAB_PVH_GRUB ?? 0);
const GRUB_MINUTES = Number(process.env.MOAT_LAB_PVH_GRUB_MINUTES ?? 12);

let lab: LabSession;
beforeAll(async () => {
  if (COUNT > 0 || GRUB_COUNT > 0) lab = await labSession('pvh-endings');
});
afterAll(async () => {
  await lab?.end();
});

function record(run: GuestRun): string {
  const text = `=== ${run.guest} (${Math.round(run.ms / 1000)} s): ${run.ending}\n--- console tail\n${run.lines.slice(-25).join('\n')}\n--- Xen about it\n${run.hypervisorLines.slice(-60).join('\n')}\n`;
  if (LOG) appendFileSync(LOG, text);
  return text;
}

describe('PVH endings, many domUs (lab, MOAT_LAB_PVH_LOOP)', () => {
  it.skipIf(COUNT <= 0)(
    'every panicking PVH domU ends as crash',
    async () => {
      const { image } = await guestImage(GUEST);
      const unexpected: string[] = [];
      const counts = new Map<string, number>();
      for (let start = 0; start < COUNT; start += AT_ONCE) {
        const panics = Array.from({ length: Math.min(AT_ONCE, COUNT - start) }, (_, i) =>
          lab.createDomU(image, { type: 'pvh', name: `pvh-panic-${start + i}`, args: { role: 'panic' } }),
        );
        const others = WITH_OTHERS
          ? [
              lab.createDomU(image, { type: 'pvh', name: `pvh-exit-${start}`, args: { role: 'exit' } }),
              lab.createDomU(image, { type: 'pv', name: `pv-exit-${start}`, args: { role: 'exit' } }),
              lab.createDomU(image, { type: 'pv', name: `pv-panic-${start}`, args: { role: 'panic' } }),
            ]
          : [];
        for (const handle of panics) {
          const run = await handle.finished(WAIT);
          const ending = run.ending.split(';')[0] ?? run.ending;
          counts.set(ending, (counts.get(ending) ?? 0) + 1);
          const text = record(run);
          if (!ending.endsWith('crash (reason code 3)')) unexpected.push(text);
        }
        for (const handle of others) record(await handle.finished(WAIT));
      }
      console.log(`pvh-endings: ${JSON.stringify([...counts])}`);
      expect(unexpected.join('\n')).toBe('');
    },
    24 * 3600_000,
  );
});

describe('PVH GRUB domUs and the lost-state triple fault (lab, MOAT_LAB_PVH_GRUB)', () => {
  it.skipIf(GRUB_COUNT <= 0)(
    "no PVH GRUB domU ends in a triple fault on Xen's own registers",
    async () => {
      const cacheDir = defaultCacheDir();
      const image = await buildImage({ bundle: await bundleEntry(SMOKE_GUEST), cacheDir });
      const pvhGrub = await pvhGrubBoot(image, 'moat-smoke', cacheDir);
      const started = performance.now();
      const handles = Array.from({ length: GRUB_COUNT }, (_, i) =>
        lab.createDomU(image, {
          type: 'pvh',
          name: `pvh-grub-${i}`,
          memoryMb: 192,
          pvhGrub,
        }),
      );
      const endings = await Promise.all(
        handles.map(async (handle) => {
          const left = GRUB_MINUTES * 60_000 - (performance.now() - started);
          try {
            const run = await handle.finished({ timeoutMs: Math.max(left, 1000) });
            record(run);
            return run.ending;
          } catch (error) {
            if (error instanceof LabTimeout) return 'still running at the end (destroyed)';
            throw error;
          }
        }),
      );
      const lost = endings.filter((ending) => ending.includes("a triple fault with Xen's own registers"));
      console.log(
        `pvh-grub: ${GRUB_COUNT} domUs for ${GRUB_MINUTES} min, TCG thread=${process.env.MOAT_LAB_TCG_THREAD || 'multi'}: ${lost.length} lost-state triple faults; endings ${JSON.stringify(endings)}`,
      );
      expect(lost).toEqual([]);
    },
    24 * 3600_000,
  );
});
