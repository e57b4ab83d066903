import type { DecodeLimits, RefusalKind } from './types.ts';

/**
 * Thrown inside a decoder to stop it with a reason; `decodeImage` turns it into a
 * `{ok: false}` result. Never escapes the package.
 */
export class Refusal extends Error {
  constructor(
    readonly kind: RefusalKind,
    reason: string,
  ) {
    super(reason);
    this.name = 'Refusal';
  }
}

export function refuse(kind: RefusalKind, reason: string): never {
  throw new Refusal(kind, reason);
}

/**
 * Tracks one decode's allocations and time against its limits. Decoders call
 * `checkSize` when they learn a canvas or frame size from a header, `allocate` before
 * every buffer whose size depends on the file, and `tick` at row or frame boundaries.
 */
export class DecodeBudget {
  private allocated = 0;
  private readonly deadline: number;

  constructor(
    readonly limits: DecodeLimits,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.deadline = now() + limits.deadlineMs;
  }

  get bytesAllocated(): number {
    return this.allocated;
  }

  /** Refuses a width × height that breaks a dimension or pixel limit. */
  checkSize(width: number, height: number, what: string): void {
    const l = this.limits;
    if (width > l.maxWidth || height > l.maxHeight)
      refuse(
        'limit',
        `${what} is ${width}×${height} pixels, larger than the ${l.maxWidth}×${l.maxHeight} limit`,
      );
    if (width * height > l.maxPixels)
      refuse(
        'limit',
        `${what} has ${width * height} pixels (${width}×${height}), more than the limit of ${l.maxPixels}`,
      );
  }

  /** Reserves `bytes` of the total budget; refuses when it would be exceeded. */
  allocate(bytes: number, what: string): void {
    if (!Number.isFinite(bytes) || bytes < 0) refuse('corrupt', `invalid size for ${what}`);
    if (this.allocated + bytes > this.limits.maxTotalBytes)
      refuse(
        'limit',
        `decoding needs more than ${this.limits.maxTotalBytes} bytes (${what} would bring it to ${this.allocated + bytes})`,
      );
    this.allocated += bytes;
  }

  /**
   * Refuses now if `bytes` more would not fit, without reserving them: for decoders that
   * know their whole need from the header but allocate it piece by piece later.
   */
  ensure(bytes: number, what: string): void {
    if (this.allocated + bytes > this.limits.maxTotalBytes)
      refuse(
        'limit',
        `decoding needs more than ${this.limits.maxTotalBytes} bytes (${what} needs ${bytes} more than the ${this.allocated} already used)`,
      );
  }

  /** Allocates a zeroed byte array after reserving it. */
  bytes(length: number, what: string): Uint8Array {
    this.allocate(length, what);
    return new Uint8Array(length);
  }

  checkFrames(count: number): void {
    if (count > this.limits.maxFrames)
      refuse('limit', `the animation has more than ${this.limits.maxFrames} frames`);
  }

  /** Cheap enough for every row: refuses once the deadline has passed. */
  tick(): void {
    if (this.now() > this.deadline)
      refuse('deadline', `decoding took longer than ${this.limits.deadlineMs} ms`);
  }
}
