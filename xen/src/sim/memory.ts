import { xenError } from '../errno.ts';
import { GNTST, grantStatusName } from '../grant-status.ts';
import { type ReadOnlyBacking, ReadOnlyView } from '../readonly-view.ts';
import {
  type DomainId,
  type GrantCopySegment,
  type GrantRef,
  PAGE_SIZE,
  type ReadOnlyMapping,
  type SharedPages,
  type WritableMapping,
} from '../types.ts';
import { detachBuffer, transferBuffer } from './detach.ts';

/**
 * Pages one domain shared in one gntalloc call, and everyone holding them.
 *
 * JavaScript cannot make two ArrayBuffer objects alias the same memory, so the owner's
 * `SharedPages.buffer` and every writable mapping of the region are the SAME ArrayBuffer
 * object. When one holder lets go (unshare or unmap) the object it was handed is
 * detached, exactly as on Xen, and the memory moves (ArrayBuffer.prototype.transfer or a
 * structuredClone transfer, no copy) to a fresh ArrayBuffer that the remaining holders reach through their
 * `.buffer` getter. This is the one place sim differs from Xen: views a remaining
 * holder derived from the old object are detached too, so code that keeps running
 * after its peer unmapped must take its views from `.buffer` again (RingVchan does).
 */
export class SimRegion {
  #mem: ArrayBuffer;
  /** Holders that were handed the ArrayBuffer (the owner's share, writable mappings). */
  readonly #holders = new Set<object>();
  /** Read-only mappings: they keep the memory but never see the ArrayBuffer. */
  #readers = 0;

  constructor(
    readonly owner: DomainId,
    readonly grantee: DomainId,
    readonly writable: boolean,
    readonly pageCount: number,
    readonly refs: readonly GrantRef[],
  ) {
    this.#mem = new ArrayBuffer(pageCount * PAGE_SIZE);
  }

  get mem(): ArrayBuffer {
    return this.#mem;
  }

  get alive(): boolean {
    return this.#holders.size > 0 || this.#readers > 0;
  }

  hold(holder: object): ArrayBuffer {
    this.#holders.add(holder);
    return this.#mem;
  }

  addReader(): void {
    this.#readers++;
  }

  releaseReader(): void {
    this.#readers--;
    if (!this.alive) {
      detachBuffer(this.#mem);
      this.#mem = new ArrayBuffer(0);
    }
  }

  /** Detaches the object `holder` was handed; the others get a fresh one with the same bytes. */
  release(holder: object): void {
    if (!this.#holders.delete(holder)) return;
    if (this.alive) this.#mem = transferBuffer(this.#mem);
    else {
      detachBuffer(this.#mem);
      this.#mem = new ArrayBuffer(0);
    }
  }
}

interface GrantEntry {
  region: SimRegion;
  page: number;
}

/** One domain's grant table, as far as sim needs it: refs of the pages it shares. */
export class SimGrantTable {
  readonly #entries = new Map<GrantRef, GrantEntry>();
  // Refs 0-7 are reserved on Linux (the console and xenstore rings use 1 and 2); ref 0 is
  // what libxenvchan treats as "no ref", so sim never hands it out either.
  #next = 8;
  readonly #free: GrantRef[] = [];
  #pagesShared = 0;

  constructor(
    readonly domid: DomainId,
    /** gntalloc's `limit` module parameter: pages shared at once (Linux default 1024). */
    readonly limit: number,
    /** Grant table size in entries: Xen 4.17's default 64 frames of 512 v1 entries. */
    readonly entries = 64 * 512,
  ) {}

  share(grantee: DomainId, pageCount: number, writable: boolean): SimRegion {
    if (!Number.isInteger(pageCount) || pageCount < 1)
      throw xenError('gntalloc share', 'EINVAL', `page count ${pageCount}`);
    if (this.#pagesShared + pageCount > this.limit)
      throw xenError('gntalloc share', 'ENOSPC', `limit of ${this.limit} shared pages reached`);
    const refs: GrantRef[] = [];
    if (this.#free.length + (this.entries - this.#next) < pageCount)
      throw xenError('gntalloc share', 'ENOSPC', 'grant table full');
    for (let i = 0; i < pageCount; i++) refs.push(this.#free.pop() ?? this.#next++);
    const region = new SimRegion(this.domid, grantee, writable, pageCount, refs);
    refs.forEach((ref, page) => {
      this.#entries.set(ref, { region, page });
    });
    this.#pagesShared += pageCount;
    return region;
  }

  /** Ends the grants; pages already mapped elsewhere stay with their mappers. */
  unshare(region: SimRegion): void {
    for (const ref of region.refs) {
      if (this.#entries.get(ref)?.region === region) {
        this.#entries.delete(ref);
        this.#free.push(ref);
      }
    }
    this.#pagesShared -= region.pageCount;
  }

  lookup(ref: GrantRef): GrantEntry | undefined {
    return this.#entries.get(ref);
  }

  revokeAll(): void {
    for (const e of [...this.#entries.values()]) this.unshare(e.region);
  }
}

/** Looks up the grant tables of other domains (the hypervisor). */
export interface GrantTables {
  table(domid: DomainId): SimGrantTable | undefined;
}

/**
 * The GNTST status of domain `caller` accessing `ref` of `owner`, or the entry. As Xen's
 * grant_table.c: an unknown domain is GNTST_bad_domain, a ref beyond the table
 * GNTST_bad_gntref, and an entry that is not granted, granted to another domain, or
 * read-only when writing is GNTST_general_error (_set_status_v1's "Bad flags or dom" and
 * "Attempt to write-pin a r/o grant entry").
 */
function access(
  tables: GrantTables,
  caller: DomainId,
  owner: DomainId,
  ref: GrantRef,
  write: boolean,
): GrantEntry | number {
  const table = tables.table(owner);
  if (!table) return GNTST.bad_domain;
  if (ref >= table.entries) return GNTST.bad_gntref;
  const entry = table.lookup(ref);
  if (!entry) return GNTST.general_error;
  if (entry.region.grantee !== caller) return GNTST.general_error;
  if (write && !entry.region.writable) return GNTST.general_error;
  return entry;
}

/** The region that `refs` cover exactly, or the reason the sim cannot map them. */
function wholeRegion(
  tables: GrantTables,
  caller: DomainId,
  owner: DomainId,
  refs: readonly GrantRef[],
  write: boolean,
  op: string,
): SimRegion {
  if (refs.length === 0) throw xenError(op, 'EINVAL', 'no refs');
  let region: SimRegion | undefined;
  for (const [i, ref] of refs.entries()) {
    const e = access(tables, caller, owner, ref, write);
    // Linux gntdev turns any failed GNTTABOP_map_grant_ref into EINVAL from mmap().
    if (typeof e === 'number')
      throw xenError(op, 'EINVAL', `ref ${ref} of domain ${owner}: ${grantStatusName(e)}`);
    if (region === undefined) region = e.region;
    if (e.region !== region || e.page !== i)
      throw xenError(
        op,
        'EINVAL',
        'sim maps only whole shared regions, in order (one gntalloc share per mapping)',
      );
  }
  if (!region || refs.length !== region.pageCount)
    throw xenError(
      op,
      'EINVAL',
      'sim maps only whole shared regions, in order (one gntalloc share per mapping)',
    );
  return region;
}

/** Int32Array views by buffer: sim re-issues buffers, so views are cached per object. */
const int32Views = new WeakMap<ArrayBuffer, Int32Array>();

function i32(buffer: ArrayBuffer, offset: number, op: string): [Int32Array, number] {
  if ((offset & 3) !== 0 || offset < 0 || offset + 4 > buffer.byteLength)
    throw xenError(op, offset & 3 ? 'EINVAL' : 'ERANGE', `offset ${offset}`);
  let view = int32Views.get(buffer);
  if (!view) {
    view = new Int32Array(buffer);
    int32Views.set(buffer, view);
  }
  return [view, offset >> 2];
}

class SimWritableMapping implements WritableMapping {
  #region: SimRegion | undefined;

  constructor(region: SimRegion) {
    this.#region = region;
    region.hold(this);
  }

  /** After unmap: the ArrayBuffer we held, detached (as native). */
  #released: ArrayBuffer | undefined;

  get buffer(): ArrayBuffer {
    return this.#region?.mem ?? this.#released!;
  }

  get mapped(): boolean {
    return this.#region !== undefined;
  }

  #live(op: string): SimRegion {
    if (!this.#region) throw xenError(`gntdev mapping ${op}`, 'EBADF', 'already unmapped');
    return this.#region;
  }

  loadAcquire32(offset: number): number {
    const [a, i] = i32(this.#live('loadAcquire32').mem, offset, 'gntdev mapping loadAcquire32');
    return Atomics.load(a, i) >>> 0;
  }

  storeRelease32(offset: number, value: number): void {
    const [a, i] = i32(this.#live('storeRelease32').mem, offset, 'gntdev mapping storeRelease32');
    Atomics.store(a, i, value | 0);
  }

  unmap(): void {
    const r = this.#region;
    if (!r) return;
    this.#region = undefined;
    this.#released = r.mem;
    r.release(this);
  }
}

class SimReadOnlyMapping implements ReadOnlyMapping {
  readonly pages: ReadOnlyView;
  #region: SimRegion | undefined;

  constructor(region: SimRegion) {
    this.#region = region;
    region.addReader();
    const bytes = () => new Uint8Array(region.mem);
    const view = () => new DataView(region.mem);
    const backing: ReadOnlyBacking = {
      byteLength: region.pageCount * PAGE_SIZE,
      readU8: (o) => bytes()[o]!,
      readU16: (o) => view().getUint16(o, true),
      readU32: (o) => view().getUint32(o, true),
      loadAcquire32: (o) =>
        Atomics.load(i32(region.mem, o, 'read-only mapping loadAcquire32')[0], o >> 2) >>> 0,
      copyTo: (target, targetOffset, offset, length) =>
        target.set(bytes().subarray(offset, offset + length), targetOffset),
    };
    this.pages = new ReadOnlyView(backing, 'read-only mapping');
  }

  unmap(): void {
    const r = this.#region;
    if (!r) return;
    this.#region = undefined;
    this.pages.release();
    r.releaseReader();
  }
}

class SimSharedPages implements SharedPages {
  #region: SimRegion | undefined;
  readonly refs: readonly GrantRef[];

  constructor(
    region: SimRegion,
    readonly table: SimGrantTable,
  ) {
    this.#region = region;
    this.refs = region.refs;
    region.hold(this);
  }

  /** After unshare: the ArrayBuffer we held, detached (as native). */
  #released: ArrayBuffer | undefined;

  get buffer(): ArrayBuffer {
    return this.#region?.mem ?? this.#released!;
  }

  #live(op: string): ArrayBuffer {
    if (!this.#region) throw xenError(`gntalloc pages ${op}`, 'EBADF', 'already unshared');
    return this.#region.mem;
  }

  loadAcquire32(offset: number): number {
    const [a, i] = i32(this.#live('loadAcquire32'), offset, 'gntalloc pages loadAcquire32');
    return Atomics.load(a, i) >>> 0;
  }

  storeRelease32(offset: number, value: number): void {
    const [a, i] = i32(this.#live('storeRelease32'), offset, 'gntalloc pages storeRelease32');
    Atomics.store(a, i, value | 0);
  }

  unshare(): void {
    const r = this.#region;
    if (!r) return;
    this.#region = undefined;
    this.#released = r.mem;
    this.table.unshare(r);
    r.release(this);
  }
}

export function simShare(table: SimGrantTable, grantee: DomainId, pageCount: number, writable: boolean) {
  return new SimSharedPages(table.share(grantee, pageCount, writable), table);
}

export function simMapWritable(
  tables: GrantTables,
  caller: DomainId,
  owner: DomainId,
  refs: readonly GrantRef[],
): WritableMapping {
  return new SimWritableMapping(
    wholeRegion(tables, caller, owner, refs, true, 'xengnttab_map_grant_refs (writable)'),
  );
}

export function simMapReadOnly(
  tables: GrantTables,
  caller: DomainId,
  owner: DomainId,
  refs: readonly GrantRef[],
): ReadOnlyMapping {
  return new SimReadOnlyMapping(
    wholeRegion(tables, caller, owner, refs, false, 'xengnttab_map_grant_refs (read-only)'),
  );
}

/** GNTTABOP_copy as Xen does it: per-segment status, local buffers checked up front. */
export function simGrantCopy(
  tables: GrantTables,
  caller: DomainId,
  segments: readonly GrantCopySegment[],
): Int16Array {
  const op = 'xengnttab_grant_copy';
  // Validate the local side first, as the addon does, so nothing is copied on a bad call.
  for (const s of segments) {
    const local = s.direction === 'from-grant' ? s.target : s.source;
    const localOffset = s.direction === 'from-grant' ? s.targetOffset : s.sourceOffset;
    if (![s.offset, s.length, localOffset, s.ref, s.domain].every((n) => Number.isInteger(n) && n >= 0))
      throw new RangeError('grant copy segment fields must be non-negative integers');
    if (s.domain > 0xffff) throw xenError(op, 'EINVAL', 'domain id above 65535');
    if (s.offset + s.length > PAGE_SIZE) throw xenError(op, 'EINVAL', 'segment crosses the granted page');
    if (localOffset + s.length > local.length)
      throw xenError(op, 'ERANGE', 'segment outside its local buffer');
  }
  const status = new Int16Array(segments.length);
  segments.forEach((s, i) => {
    const e = access(tables, caller, s.domain, s.ref, s.direction === 'to-grant');
    if (typeof e === 'number') {
      status[i] = e;
      return;
    }
    const page = new Uint8Array(e.region.mem, e.page * PAGE_SIZE + s.offset, s.length);
    if (s.direction === 'from-grant') s.target.set(page, s.targetOffset);
    else page.set(s.source.subarray(s.sourceOffset, s.sourceOffset + s.length));
    status[i] = GNTST.okay;
  });
  return status;
}
