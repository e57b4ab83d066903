import type { Duplex } from 'node:stream';

/** Bytes received and not yet consumed, taken out in exact amounts (the sans-IO half of reading). */
export class ByteQueue {
  #chunks: Uint8Array[] = [];
  #offset = 0;
  #total = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#total += chunk.length;
  }

  get length(): number {
    return this.#total;
  }

  /** Exactly `n` bytes (a view when contiguous); the caller checked `length >= n`. */
  take(n: number): Uint8Array {
    if (n > this.#total) throw new RangeError(`ByteQueue.take(${n}) with ${this.#total} bytes queued`);
    const first = this.#chunks[0];
    if (n === 0) return new Uint8Array(0);
    if (first && first.length - this.#offset >= n) {
      const out = first.subarray(this.#offset, this.#offset + n);
      this.#consume(n);
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const head = this.#chunks[0]!;
      const count = Math.min(head.length - this.#offset, n - filled);
      out.set(head.subarray(this.#offset, this.#offset + count), filled);
      filled += count;
      this.#consume(count);
    }
    return out;
  }

  #consume(n: number): void {
    this.#offset += n;
    this.#total -= n;
    if (this.#offset === this.#chunks[0]!.length) {
      this.#chunks.shift();
      this.#offset = 0;
    }
  }
}

/**
 * Reads exact byte counts from a stream: `read(n)` resolves with n bytes, or undefined at a
 * clean EOF before any of them; EOF in the middle rejects. Used by the lab daemon, which reads
 * struct by struct as the C daemon does.
 */
export class ExactReader {
  readonly #queue = new ByteQueue();
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => {
      this.#queue.push(chunk);
      this.#notify();
    });
    stream.on('end', () => {
      this.#ended = true;
      this.#notify();
    });
    stream.on('close', () => {
      this.#ended = true;
      this.#notify();
    });
    stream.on('error', (error: Error) => {
      this.#error = error;
      this.#notify();
    });
  }

  async read(n: number): Promise<Uint8Array | undefined> {
    for (;;) {
      if (this.#queue.length >= n) return this.#queue.take(n);
      if (this.#error) throw this.#error;
      if (this.#ended) {
        if (this.#queue.length === 0) return undefined;
        throw new Error(`the stream ended ${this.#queue.length} bytes into a ${n}-byte read`);
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}
