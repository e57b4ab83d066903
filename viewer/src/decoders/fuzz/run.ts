/**
 * Runs a fuzzing campaign for one format in a worker under a watchdog: a stop after
 * `seconds` (or after `iterations`), and a kill when one input runs longer than `hangMs`
 * — recorded as a hang, after which the campaign resumes at the next input.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { ImageFormat } from '../types.ts';
import { type CampaignCounts, emptyCounts, type Finding } from './campaign.ts';
import type { FuzzWorkerData, FuzzWorkerReport } from './fuzz-worker.ts';

export interface FuzzOptions {
  format: ImageFormat;
  /** Folder holding the fixtures (viewer/fixtures). */
  fixtures: string;
  seed?: number;
  seconds?: number;
  iterations?: number;
  hangMs?: number;
}

export interface FuzzReport extends CampaignCounts {
  format: ImageFormat;
  seeds: number;
  seed: number;
  hangs: number;
  findings: Finding[];
  seconds: number;
}

const seedFolders: Record<ImageFormat, { folders: string[]; ext: string[] }> = {
  png: { folders: ['png/pngsuite', 'png/libpng-crashers'], ext: ['.png'] },
  gif: { folders: ['gif/pygif', 'gif/gif-test-suite'], ext: ['.gif'] },
  jpeg: {
    folders: [
      'jpeg/jpegsuite/baseline',
      'jpeg/jpegsuite/progressive_huffman',
      'jpeg/jpegsuite/extended_huffman',
      'jpeg/jpeg-js-fixtures',
    ],
    ext: ['.jpg'],
  },
  bmp: { folders: ['bmp/image-rs'], ext: ['.bmp'] },
  webp: { folders: ['webp'], ext: ['.webp'] },
};
/** Seeds larger than this slow every iteration down without adding coverage. */
const maxSeedBytes = 64 * 1024;

export function loadSeeds(fixtures: string, format: ImageFormat): Uint8Array[] {
  const { folders, ext } = seedFolders[format];
  const seeds: Uint8Array[] = [];
  for (const folder of folders) {
    for (const name of readdirSync(join(fixtures, folder)).sort()) {
      const path = join(fixtures, folder, name);
      if (!ext.some((e) => name.toLowerCase().endsWith(e)) || statSync(path).size > maxSeedBytes) continue;
      seeds.push(new Uint8Array(readFileSync(path)));
    }
  }
  return seeds;
}

const workerUrl = new URL('./fuzz-worker.ts', import.meta.url);
const tsEntry = new URL('../ts-worker-entry.mjs', import.meta.url);

export async function fuzzFormat(options: FuzzOptions): Promise<FuzzReport> {
  const seeds = loadSeeds(options.fixtures, options.format);
  const seed = options.seed ?? 1;
  const hangMs = options.hangMs ?? 10_000;
  const limit = options.iterations ?? Number.MAX_SAFE_INTEGER;
  const stopAt = performance.now() + (options.seconds ?? Number.POSITIVE_INFINITY) * 1000;
  const total = emptyCounts();
  const findings: Finding[] = [];
  let hangs = 0;
  let next = 0;
  const started = performance.now();
  while (next < limit && performance.now() < stopAt) {
    const shared = new SharedArrayBuffer(8);
    const state = new Int32Array(shared);
    Atomics.store(state, 0, -1);
    const data: FuzzWorkerData = { seeds, seed, start: next, end: limit, shared };
    const worker = new Worker(tsEntry, {
      workerData: { ...data, tsEntry: workerUrl.href },
      resourceLimits: { maxOldGenerationSizeMb: 512 },
    });
    const outcome = await new Promise<FuzzWorkerReport | { hangAt: number }>((resolve) => {
      let last = -1;
      let since = performance.now();
      const watchdog = setInterval(() => {
        const now = performance.now();
        if (now >= stopAt) Atomics.store(state, 1, 1);
        const current = Atomics.load(state, 0);
        if (current !== last) {
          last = current;
          since = now;
        } else if (current >= 0 && now - since > hangMs) {
          clearInterval(watchdog);
          void worker.terminate();
          resolve({ hangAt: current });
        }
      }, 100);
      worker.once('message', (report: FuzzWorkerReport) => {
        clearInterval(watchdog);
        resolve(report);
      });
      worker.once('error', (error) => {
        clearInterval(watchdog);
        // The worker died (e.g. out of heap) inside the iteration it was running.
        resolve({ hangAt: Atomics.load(state, 0), ...{ error: String(error) } });
      });
    });
    await worker.terminate();
    if ('hangAt' in outcome) {
      hangs++;
      total.executions++;
      const detail =
        'error' in outcome ? `worker died: ${String(outcome.error)}` : `no result after ${hangMs} ms`;
      findings.push({ kind: 'hang', iteration: outcome.hangAt, detail });
      next = outcome.hangAt + 1;
      continue;
    }
    add(total, outcome.counts);
    findings.push(...outcome.findings);
    next = outcome.next;
  }
  return {
    format: options.format,
    seeds: seeds.length,
    seed,
    ...total,
    hangs,
    findings: findings.slice(0, 20),
    seconds: (performance.now() - started) / 1000,
  };
}

function add(into: CampaignCounts, from: CampaignCounts): void {
  into.executions += from.executions;
  into.decoded += from.decoded;
  into.crashes += from.crashes;
  into.overruns += from.overruns;
  into.slowestMs = Math.max(into.slowestMs, from.slowestMs);
  for (const [k, v] of Object.entries(from.refused) as [keyof CampaignCounts['refused'], number][])
    into.refused[k] = (into.refused[k] ?? 0) + v;
}
