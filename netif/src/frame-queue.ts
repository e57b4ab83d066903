/**
 * Frames waiting to go onto a peer's ring: their bytes in one preallocated byte ring, their
 * lengths and offload metadata in typed arrays. `send` copies in (the caller's buffer is
 * only valid during its call), the batch flush grant-copies straight out of `store`. No
 * allocation per frame; when full, `push` refuses and the caller counts a drop.
 */
import type { FrameMeta } from './device.ts';

const META_CSUM_BLANK = 1;
const META_DATA_VALIDATED = 2;

export class FrameQueue {
  readonly store: Uint8Array;
  private readonly offs: Int32Array;
  private readonly lens: Int32Array;
  private readonly flags: Uint8Array;
  private readonly gsoTypes: Uint8Array;
  private readonly gsoSizes: Uint16Array;
  private first = 0;
  private count = 0;
  /** Where the oldest frame's bytes start and where the next frame's may go. */
  private head = 0;
  private tail = 0;
  private bytes = 0;

  constructor(
    capacityBytes: number,
    readonly maxFrames = 1024,
  ) {
    this.store = new Uint8Array(capacityBytes);
    this.offs = new Int32Array(maxFrames);
    this.lens = new Int32Array(maxFrames);
    this.flags = new Uint8Array(maxFrames);
    this.gsoTypes = new Uint8Array(maxFrames);
    this.gsoSizes = new Uint16Array(maxFrames);
  }

  get length(): number {
    return this.count;
  }

  get queuedBytes(): number {
    return this.bytes;
  }

  /** Copies a frame in; false when it does not fit. */
  push(buf: Uint8Array, off: number, len: number, meta: FrameMeta | undefined): boolean {
    if (this.count === this.maxFrames) return false;
    const at = this.reserve(len);
    if (at < 0) return false;
    this.store.set(buf.subarray(off, off + len), at);
    const i = (this.first + this.count) % this.maxFrames;
    this.offs[i] = at;
    this.lens[i] = len;
    this.flags[i] = (meta?.csumBlank ? META_CSUM_BLANK : 0) | (meta?.dataValidated ? META_DATA_VALIDATED : 0);
    this.gsoTypes[i] = meta?.gsoType ?? 0;
    this.gsoSizes[i] = meta?.gsoSize ?? 0;
    this.count++;
    this.tail = at + len;
    this.bytes += len;
    return true;
  }

  private reserve(len: number): number {
    const cap = this.store.length;
    if (len > cap) return -1;
    if (this.count === 0) {
      this.head = 0;
      this.tail = 0;
      return 0;
    }
    if (this.tail > this.head) {
      if (cap - this.tail >= len) return this.tail;
      return this.head >= len ? 0 : -1;
    }
    // Wrapped: free space is [tail, head).
    return this.head - this.tail >= len ? this.tail : -1;
  }

  /** The oldest frame's offset in `store` (valid while length > 0). */
  peekOffset(): number {
    return this.offs[this.first]!;
  }
  peekLength(): number {
    return this.lens[this.first]!;
  }
  peekCsumBlank(): boolean {
    return (this.flags[this.first]! & META_CSUM_BLANK) !== 0;
  }
  peekDataValidated(): boolean {
    return (this.flags[this.first]! & META_DATA_VALIDATED) !== 0;
  }
  peekGsoType(): number {
    return this.gsoTypes[this.first]!;
  }
  peekGsoSize(): number {
    return this.gsoSizes[this.first]!;
  }

  /**
   * Drops the oldest frame. Its bytes stay untouched until the next `push`, so a flush may
   * pop frames and grant-copy them afterwards, as long as nothing is pushed in between.
   */
  pop(): void {
    if (this.count === 0) return;
    this.bytes -= this.lens[this.first]!;
    this.first = (this.first + 1) % this.maxFrames;
    this.count--;
    if (this.count > 0) this.head = this.offs[this.first]!;
  }

  clear(): void {
    this.first = 0;
    this.count = 0;
    this.head = 0;
    this.tail = 0;
    this.bytes = 0;
  }
}
