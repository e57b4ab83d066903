import { QubesDbError } from './errors.ts';
import { watchMatches } from './store.ts';
import { isValidPath } from './wire.ts';

export type WatchListener = (changedPath: string) => void;

/**
 * Watches with the C daemon's matching rules (`watchMatches`). Each registration gets
 * its own event, as in C (the same path registered twice fires twice). A listener that
 * throws is counted and reported, and the others still run.
 */
export class WatchSet {
  readonly #watches = new Set<{ path: string; listener: WatchListener }>();
  #listenerFailures = 0;
  readonly #onListenerError: (error: unknown, path: string) => void;

  constructor(onListenerError: (error: unknown, path: string) => void) {
    this.#onListenerError = onListenerError;
  }

  get listenerFailures(): number {
    return this.#listenerFailures;
  }

  add(path: string, listener: WatchListener): () => void {
    if (!isValidPath(path)) throw new QubesDbError('watch', 'EINVAL', path, 'not a valid QubesDB path');
    const watch = { path, listener };
    this.#watches.add(watch);
    return () => this.#watches.delete(watch);
  }

  fire(changedPath: string): void {
    for (const watch of [...this.#watches]) {
      if (!watchMatches(watch.path, changedPath)) continue;
      try {
        watch.listener(changedPath);
      } catch (error) {
        this.#listenerFailures++;
        this.#onListenerError(error, changedPath);
      }
    }
  }
}

/**
 * Turns callbacks into an async iterator with a bounded queue: when the consumer falls
 * more than `limit` events behind, the iterator fails instead of growing without bound.
 */
export function bufferedIterator<T>(
  subscribe: (push: (value: T) => void, end: (error?: Error) => void) => () => void,
  options: { limit: number; signal?: AbortSignal; what: string; coalesce?: boolean },
): AsyncIterableIterator<T> {
  const queue: T[] = [];
  let waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: Error) => void } | undefined;
  let failure: Error | undefined;
  let done = false;
  let unsubscribe: () => void = () => {};
  const finish = () => {
    if (done) return;
    done = true;
    unsubscribe();
    options.signal?.removeEventListener('abort', finish);
    if (waiter) {
      const w = waiter;
      waiter = undefined;
      if (failure) w.reject(failure);
      else w.resolve({ value: undefined, done: true });
    }
  };
  const end = (error?: Error) => {
    if (error && !failure) failure = error;
    finish();
  };
  const stop = subscribe((value) => {
    if (done) return;
    if (waiter) {
      const w = waiter;
      waiter = undefined;
      w.resolve({ value, done: false });
      return;
    }
    if (options.coalesce) queue.length = 0;
    if (queue.length >= options.limit) {
      failure = new QubesDbError(
        options.what,
        'EOVERFLOW',
        '',
        `the consumer fell ${options.limit} events behind`,
      );
      finish();
      return;
    }
    queue.push(value);
  }, end);
  unsubscribe = stop;
  if (done) stop();
  options.signal?.addEventListener('abort', finish, { once: true });
  if (options.signal?.aborted) finish();
  const iterator: AsyncIterableIterator<T> = {
    next() {
      if (queue.length > 0) return Promise.resolve({ value: queue.shift()!, done: false });
      if (failure) return Promise.reject(failure);
      if (done) return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject };
      });
    },
    return() {
      finish();
      queue.length = 0;
      return Promise.resolve({ value: undefined, done: true });
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
