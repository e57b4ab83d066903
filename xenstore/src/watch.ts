/** One watch: events by callback and/or as an async iterator. Created by XenstoreClient.watch. */

export interface WatchEvent {
  /** The path that changed, as xenstored reports it (relative if the watch path was relative). */
  path: string;
  token: string;
}

export interface WatchOptions {
  /** Token sent to xenstored; unique per client. Generated when absent. */
  token?: string;
  /** Called for every event, including the one xenstored fires on registration. */
  onEvent?: (event: WatchEvent) => void;
  /**
   * Events kept for the async iterator (default 1024 when no onEvent is given, else 0 until
   * iteration starts). Past it, new events are counted in `dropped`: xenstore events are hints
   * and a consumer re-reads the state anyway.
   */
  maxQueued?: number;
  signal?: AbortSignal;
  timeoutMs?: number;
}

type Waiter = { resolve: (r: IteratorResult<WatchEvent>) => void; reject: (e: Error) => void };

export class XenstoreWatch implements AsyncIterable<WatchEvent> {
  /** Events discarded because the queue was full. */
  dropped = 0;
  private readonly listeners = new Set<(event: WatchEvent) => void>();
  private readonly queue: WatchEvent[] = [];
  private readonly waiters: Waiter[] = [];
  private ended: { error?: Error } | undefined;
  private maxQueued: number;

  constructor(
    readonly path: string,
    readonly token: string,
    options: { maxQueued?: number; onEvent?: (event: WatchEvent) => void },
    private readonly unwatch: (watch: XenstoreWatch) => Promise<void>,
  ) {
    this.maxQueued = options.maxQueued ?? (options.onEvent ? 0 : 1024);
    if (options.onEvent) this.listeners.add(options.onEvent);
  }

  get closed(): boolean {
    return this.ended !== undefined;
  }

  /** Adds a callback; returns a function that removes it. */
  on(listener: (event: WatchEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the next event (queued or future). */
  async next(): Promise<WatchEvent> {
    const r = await this.pull();
    if (r.done) throw new Error(`watch ${this.path} (${this.token}) is closed`);
    return r.value;
  }

  /** Unregisters the watch (XS_UNWATCH) and ends iteration. */
  async close(): Promise<void> {
    if (this.ended) return;
    this.end();
    await this.unwatch(this);
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    if (this.maxQueued === 0) this.maxQueued = 1024;
    return {
      next: () => this.pull(),
      return: async () => {
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }

  /** @internal Called by the client for each event carrying this watch's token. */
  deliver(event: WatchEvent): void {
    if (this.ended) return;
    for (const l of this.listeners) {
      try {
        l(event);
      } catch (error) {
        // A throwing callback must not take the connection's event dispatch down with it.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve({ done: false, value: event });
    else if (this.queue.length < this.maxQueued) this.queue.push(event);
    else if (this.maxQueued > 0) this.dropped++;
  }

  /** @internal Ends iteration (closed watch, or the connection died with `error`). */
  end(error?: Error): void {
    if (this.ended) return;
    this.ended = error ? { error } : {};
    for (const w of this.waiters.splice(0)) {
      if (error) w.reject(error);
      else w.resolve({ done: true, value: undefined });
    }
  }

  private pull(): Promise<IteratorResult<WatchEvent>> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve({ done: false, value: queued });
    if (this.ended) {
      return this.ended.error
        ? Promise.reject(this.ended.error)
        : Promise.resolve({ done: true, value: undefined });
    }
    if (this.maxQueued === 0) this.maxQueued = 1024;
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
}
