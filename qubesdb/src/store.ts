import { isWritablePath } from './wire.ts';

/**
 * The database itself, as db-core.c keeps it: entries sorted by `strcmp` of the path
 * (paths are ASCII, so JavaScript's string order is the same), values as raw bytes.
 * Used by both the VM replica and the dom0 daemon; the protocol rules live elsewhere.
 */
export class QdbStore {
  readonly #paths: string[] = [];
  readonly #values = new Map<string, Uint8Array>();
  readonly #maxEntries: number;

  constructor(options: { maxEntries?: number } = {}) {
    // The C daemon has no limit; a bound keeps a runaway peer from exhausting memory.
    this.#maxEntries = options.maxEntries ?? 65536;
  }

  get size(): number {
    return this.#paths.length;
  }

  read(path: string): Uint8Array | undefined {
    return this.#values.get(path);
  }

  /**
   * `qubesdb_write`: creates or replaces. Fails (false) when the path does not start
   * with `/`, ends with `/`, is invalid, or the store is full.
   */
  write(path: string, value: Uint8Array): 'ok' | 'bad-path' | 'full' {
    if (!isWritablePath(path)) return 'bad-path';
    if (!this.#values.has(path)) {
      if (this.#paths.length >= this.#maxEntries) return 'full';
      this.#paths.splice(this.#lowerBound(path), 0, path);
    }
    this.#values.set(path, value);
    return 'ok';
  }

  /**
   * `qubesdb_remove`: a path ending in `/` removes every entry under it (not the
   * directory's own key); otherwise exactly that entry. Returns the removed paths
   * (empty when nothing matched: the daemon answers NOENT).
   */
  remove(path: string): string[] {
    if (path.length === 0) return [];
    if (!path.endsWith('/')) {
      if (!this.#values.delete(path)) return [];
      this.#paths.splice(this.#lowerBound(path), 1);
      return [path];
    }
    const start = this.#lowerBound(path);
    let end = start;
    while (end < this.#paths.length && this.#paths[end]!.startsWith(path)) end++;
    const removed = this.#paths.splice(start, end - start);
    for (const p of removed) this.#values.delete(p);
    return removed;
  }

  /** Paths starting with `prefix` (a raw string prefix, as MULTIREAD/LIST), sorted. */
  list(prefix: string): string[] {
    const start = this.#lowerBound(prefix);
    let end = start;
    while (end < this.#paths.length && this.#paths[end]!.startsWith(prefix)) end++;
    return this.#paths.slice(start, end);
  }

  /** Entries under `prefix` in sorted order. */
  entries(prefix = ''): [string, Uint8Array][] {
    return this.list(prefix).map((path) => [path, this.#values.get(path)!]);
  }

  /** The whole database in reverse order: what an empty-path MULTIREAD sends. */
  dumpReverse(): [string, Uint8Array][] {
    const out: [string, Uint8Array][] = [];
    for (let i = this.#paths.length - 1; i >= 0; i--) {
      const path = this.#paths[i]!;
      out.push([path, this.#values.get(path)!]);
    }
    return out;
  }

  #lowerBound(path: string): number {
    let lo = 0;
    let hi = this.#paths.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#paths[mid]! < path) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/**
 * Does a watch registered on `watchPath` fire for a change of `changedPath`?
 * (`qubesdb_add_watch`/`qubesdb_fire_watches`: the comparison includes the terminating
 * NUL, so `/a/b` matches only `/a/b`, unless the watch ends in `/`, which makes it a
 * prefix watch.) A recursive RM fires with the RM's own path, e.g. `/a/`.
 */
export function watchMatches(watchPath: string, changedPath: string): boolean {
  if (watchPath.endsWith('/')) return changedPath.startsWith(watchPath);
  return changedPath === watchPath;
}
