/**
 * A bounded queue read as an async iterator. An application that stops reading loses new
 * events (counted in `dropped`), never memory: motion first, at a quarter of the bound.
 */
export class EventQueue<T extends { type: string }> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #waiter: ((result: IteratorResult<T>) => void) | undefined;
  #ended = false;
  dropped = 0;

  constructor(readonly limit = 4096) {}

  push(item: T): void {
    if (this.#ended) return;
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = undefined;
      waiter({ value: item, done: false });
      return;
    }
    const full =
      this.#items.length >= this.limit || (item.type === 'motion' && this.#items.length >= this.limit / 4);
    if (full) {
      this.dropped++;
      return;
    }
    this.#items.push(item);
  }

  /** No more events: readers get what is queued, then the end. */
  end(): void {
    this.#ended = true;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.({ value: undefined, done: true });
  }

  get length(): number {
    return this.#items.length;
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        const item = this.#items.shift();
        if (item !== undefined) return Promise.resolve({ value: item, done: false });
        if (this.#ended) return Promise.resolve({ value: undefined, done: true });
        if (this.#waiter) return Promise.reject(new Error('EventQueue: one reader at a time'));
        return new Promise((resolve) => {
          this.#waiter = resolve;
        });
      },
      return: () => Promise.resolve({ value: undefined, done: true }),
    };
  }
}
