import { xenError } from './errno.ts';
import type { ReadOnlyPages } from './types.ts';

/**
 * What a read-only view reads through. Native: addon calls on a PROT_READ mapping
 * (never a JS-visible ArrayBuffer, since a JS store into it would SIGSEGV the whole
 * process). Sim: a private copy of the granting domain's pages.
 */
export interface ReadOnlyBacking {
  readonly byteLength: number;
  readU8(offset: number): number;
  readU16(offset: number): number;
  readU32(offset: number): number;
  /** A 32-bit load with acquire semantics; offset is 4-aligned and in bounds. */
  loadAcquire32(offset: number): number;
  copyTo(target: Uint8Array, targetOffset: number, offset: number, length: number): void;
}

/**
 * The only way to reach read-only mapped pages, on native and in sim alike. It checks
 * bounds and liveness before every read, so a bad offset or a read after unmap throws
 * a XenError instead of touching memory that is not there.
 */
export class ReadOnlyView implements ReadOnlyPages {
  #backing: ReadOnlyBacking | undefined;
  readonly byteLength: number;
  readonly #what: string;

  constructor(backing: ReadOnlyBacking, what = 'read-only mapping') {
    this.#backing = backing;
    this.byteLength = backing.byteLength;
    this.#what = what;
    // Nothing can be added to or changed on a view (private fields are not properties).
    Object.freeze(this);
  }

  get mapped(): boolean {
    return this.#backing !== undefined;
  }

  /** Called by the owner of the mapping when it is unmapped; every read afterwards throws. */
  release(): void {
    this.#backing = undefined;
  }

  #check(op: string, offset: number, length: number, align = 1): ReadOnlyBacking {
    const b = this.#backing;
    if (!b) throw xenError(`${this.#what} ${op}`, 'EBADF', 'the mapping was unmapped');
    if (!Number.isInteger(offset) || offset < 0 || length < 0 || offset + length > this.byteLength)
      throw xenError(
        `${this.#what} ${op}`,
        'ERANGE',
        `offset ${offset} length ${length} outside 0..${this.byteLength}`,
      );
    if (offset % align !== 0)
      throw xenError(`${this.#what} ${op}`, 'EINVAL', `offset ${offset} is not ${align}-aligned`);
    return b;
  }

  getUint8(offset: number): number {
    return this.#check('getUint8', offset, 1).readU8(offset);
  }

  getUint16(offset: number): number {
    return this.#check('getUint16', offset, 2).readU16(offset);
  }

  getUint32(offset: number): number {
    return this.#check('getUint32', offset, 4).readU32(offset);
  }

  loadAcquire32(offset: number): number {
    return this.#check('loadAcquire32', offset, 4, 4).loadAcquire32(offset);
  }

  copyTo(target: Uint8Array, targetOffset: number, offset: number, length: number): void {
    const b = this.#check('copyTo', offset, length);
    if (!Number.isInteger(targetOffset) || targetOffset < 0 || targetOffset + length > target.length)
      throw xenError(
        `${this.#what} copyTo`,
        'ERANGE',
        `target range ${targetOffset}+${length} outside 0..${target.length}`,
      );
    if (length > 0) b.copyTo(target, targetOffset, offset, length);
  }
}
