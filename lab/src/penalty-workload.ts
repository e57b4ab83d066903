/**
 * The emulation-penalty workload: a xorshift32 generator feeding FNV-1a, `iterations` times.
 * Integer arithmetic and a tight loop, no memory traffic and no system calls, so it measures
 * how fast the CPU runs code (the JIT's for JS, gcc's for C) and nothing else. The C twin is
 * penalty/workload.c; both must return the same hash.
 */
export function penaltyWorkloadJs(iterations: number): number {
  let x = 2463534242;
  let h = 2166136261;
  for (let i = 0; i < iterations; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    h = Math.imul(h ^ (x & 0xff), 16777619);
  }
  return h >>> 0;
}
