import { loadNativeAddon } from './addon.ts';
import { SharedIndex } from './shared-index.ts';

export interface IndexBenchFigures {
  ops: number;
  atomicsLoadNs: number;
  atomicsStoreNs: number;
  addonLoadNs: number;
  addonStoreNs: number;
  /** addon ns/op divided by Atomics ns/op (load+store); above 1 means Atomics is faster. */
  addonOverAtomics: number;
}

function time(ops: number, body: (i: number) => void): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) body(i);
  return Number(process.hrtime.bigint() - start) / ops;
}

/**
 * Acquire loads and release stores of 32-bit indexes on an external ArrayBuffer the
 * addon made over malloc'd memory (the host has no Xen; a gntdev mapping is the same
 * kind of buffer): SharedIndex (Atomics on an Int32Array) against the addon's
 * load32/store32. Each variant runs once to warm up, then is timed.
 */
export function measureIndexAccess(ops = 2_000_000): IndexBenchFigures {
  const addon = loadNativeAddon();
  const m = addon.newTestBuffer(4096);
  try {
    const index = new SharedIndex(m.buffer, 'bench buffer');
    let sink = 0;
    const atomicsLoad = (i: number) => {
      sink ^= index.load((i & 1023) << 2);
    };
    const atomicsStore = (i: number) => index.store((i & 1023) << 2, i);
    const addonLoad = (i: number) => {
      sink ^= m.load32((i & 1023) << 2);
    };
    const addonStore = (i: number) => m.store32((i & 1023) << 2, i >>> 0);
    for (const f of [atomicsLoad, atomicsStore, addonLoad, addonStore]) time(ops / 10, f);
    const figures = {
      ops,
      atomicsLoadNs: time(ops, atomicsLoad),
      atomicsStoreNs: time(ops, atomicsStore),
      addonLoadNs: time(ops, addonLoad),
      addonStoreNs: time(ops, addonStore),
    };
    // Correctness of both on the same memory: a store by one is seen by the other.
    index.store(8, 0xdeadbeef);
    if (m.load32(8) !== 0xdeadbeef) throw new Error('addon load32 did not see an Atomics store');
    m.store32(12, 0xfeedf00d);
    if (index.load(12) !== 0xfeedf00d) throw new Error('Atomics load did not see an addon store32');
    if (sink === 0.5) throw new Error('unreachable'); // keeps the loads alive
    return {
      ...figures,
      addonOverAtomics:
        (figures.addonLoadNs + figures.addonStoreNs) / (figures.atomicsLoadNs + figures.atomicsStoreNs),
    };
  } finally {
    m.unmap();
  }
}
