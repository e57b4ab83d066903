import { xenError } from '../errno.ts';

/**
 * 32-bit shared ring indexes in an external (mapped) ArrayBuffer, read with acquire and
 * written with release semantics.
 *
 * Choice: Atomics.load/store on an Int32Array over the buffer (allowed on non-shared
 * buffers; V8 emits a plain load and an xchg store on x86-64, which is at least
 * acquire/release), rather than an addon call per access (__atomic_load_n /
 * __atomic_store_n). Measured with `./moat bench xen-index` on the development host
 * (2 cores shared with other jobs, load average ~8, Node 20.20, 4 KiB malloc'd external
 * buffer, 2M ops per variant, three runs):
 *   Atomics (through this class): load 14-22 ns/op, store 14-17 ns/op
 *   addon load32 112-165 ns/op, store32 112-136 ns/op: the addon is 6-11x slower.
 * A later run at load average ~11: Atomics 47/37 ns, addon 281/284 ns (6.7x).
 * Both are correct; the call boundary dominates the addon's cost, so Atomics wins.
 */
export class SharedIndex {
  readonly #i32: Int32Array;
  readonly #bytes: number;

  constructor(
    buffer: ArrayBuffer,
    readonly what: string,
  ) {
    this.#i32 = new Int32Array(buffer, 0, buffer.byteLength >> 2);
    this.#bytes = buffer.byteLength;
  }

  #index(offset: number, op: string): number {
    if ((offset & 3) !== 0 || offset < 0 || offset + 4 > this.#bytes)
      throw xenError(`${this.what} ${op}`, offset & 3 ? 'EINVAL' : 'ERANGE', `offset ${offset}`);
    return offset >> 2;
  }

  /** Unsigned 32-bit value (indexes are free-running uint32 counters). */
  load(offset: number): number {
    return Atomics.load(this.#i32, this.#index(offset, 'loadAcquire32')) >>> 0;
  }

  store(offset: number, value: number): void {
    Atomics.store(this.#i32, this.#index(offset, 'storeRelease32'), value | 0);
  }
}
