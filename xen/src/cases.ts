/**
 * What the conformance suites (this package's and xenstore's) share: a bound on each awaited
 * event, and a runner for named cases in a plain node process with no test framework (a lab
 * guest, the CLI).
 */
import assert from 'node:assert/strict';

/** Rejects with an AssertionError naming `what` when `promise` has not settled within `ms`. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new assert.AssertionError({ message: `${what}: nothing within ${ms} ms` })),
      ms,
    );
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

export interface CaseResult {
  id: string;
  ok: boolean;
  ms: number;
  error?: string;
}

/**
 * Runs cases one after the other, e.g. inside a lab guest:
 * `await runCases(conformanceSuite(target), { onResult: console.log })`.
 */
export async function runCases(
  cases: readonly { id: string; run(): Promise<void> }[],
  options: { only?: readonly string[]; onResult?: (r: CaseResult) => void } = {},
): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const c of cases) {
    if (options.only && !options.only.includes(c.id)) continue;
    const start = performance.now();
    let result: CaseResult;
    try {
      await c.run();
      result = { id: c.id, ok: true, ms: performance.now() - start };
    } catch (error) {
      result = {
        id: c.id,
        ok: false,
        ms: performance.now() - start,
        error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
      };
    }
    results.push(result);
    options.onResult?.(result);
  }
  return results;
}
