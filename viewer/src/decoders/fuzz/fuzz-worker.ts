/**
 * Fuzzing worker: runs iterations from `start` until told to stop (or `end`), publishing
 * the iteration in progress in shared memory so that the parent can tell a hang (the same
 * iteration for too long) from progress, and kill the worker.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type CampaignCounts, emptyCounts, type Finding, runIteration } from './campaign.ts';

export interface FuzzWorkerData {
  seeds: Uint8Array[];
  seed: number;
  start: number;
  end: number;
  /** Int32Array view: [0] iteration in progress, [1] stop flag. */
  shared: SharedArrayBuffer;
}

export interface FuzzWorkerReport {
  counts: CampaignCounts;
  findings: Finding[];
  next: number;
}

const data = workerData as FuzzWorkerData;
const state = new Int32Array(data.shared);
const counts = emptyCounts();
const findings: Finding[] = [];
let i = data.start;
for (; i < data.end && Atomics.load(state, 1) === 0; i++) {
  Atomics.store(state, 0, i);
  const finding = runIteration(data.seeds, data.seed, i, counts);
  if (finding && findings.length < 20) findings.push(finding);
}
const report: FuzzWorkerReport = { counts, findings, next: i };
parentPort?.postMessage(report);
