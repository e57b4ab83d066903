/**
 * The Xen primitives as small interfaces (like MirageOS module types). The native
 * addon implements them on real Xen, `sim` implements them in-process; code above
 * (xenstore, vchan, netif, ...) is written against these and never against either.
 *
 * This file is the contract other packages build on: extend it, but do not change
 * the meaning of what is here without updating every user.
 */

export type DomainId = number;
export type Port = number;
export type GrantRef = number;

export const PAGE_SIZE = 4096;

/** Every failed Xen operation: which operation, the errno, and what it was applied to. */
export class XenError extends Error {
  constructor(
    /** The operation, e.g. `xenevtchn_bind_interdomain` or `gntdev map`. */
    readonly operation: string,
    /** The errno value (positive), or 0 when not applicable. */
    readonly errno: number,
    /** The errno's symbolic name, e.g. `EPERM`. */
    readonly code: string,
    detail = '',
  ) {
    super(`${operation} failed: ${code}${errno ? ` (errno ${errno})` : ''}${detail ? `: ${detail}` : ''}`);
    this.name = 'XenError';
  }
}

/** Event channels of the calling domain (/dev/xen/evtchn). */
export interface EventChannels {
  /** Allocates an unbound port that `remote` may bind to. */
  allocUnbound(remote: DomainId): Port;
  /** Binds to `remotePort` of domain `remote`; returns our local port. */
  bindInterdomain(remote: DomainId, remotePort: Port): Port;
  notify(port: Port): void;
  unbind(port: Port): void;
  /**
   * Called (asynchronously, never re-entrantly) for each port that became pending;
   * the port is unmasked again after the listener returns. Returns an unsubscribe function.
   */
  onEvent(listener: (port: Port) => void): () => void;
  /** Unbinds everything and stops delivering events. */
  close(): void;
}

/** Read-only access to granted pages: there is deliberately no way to write through it. */
export interface ReadOnlyPages {
  readonly byteLength: number;
  /** False once unmapped; every read then throws. */
  readonly mapped: boolean;
  getUint8(offset: number): number;
  getUint16(offset: number): number; // little-endian
  getUint32(offset: number): number; // little-endian
  /** Reads a 32-bit shared index with acquire semantics. `offset` must be 4-aligned. */
  loadAcquire32(offset: number): number;
  /** Copies `length` bytes at `offset` into `target` at `targetOffset`. */
  copyTo(target: Uint8Array, targetOffset: number, offset: number, length: number): void;
}

/** A writable mapping of foreign pages. `buffer` is detached by `unmap()`. */
export interface WritableMapping {
  readonly buffer: ArrayBuffer;
  readonly mapped: boolean;
  /** Acquire/release access to 32-bit shared indexes (Atomics on an Int32Array, or the addon). */
  loadAcquire32(offset: number): number;
  storeRelease32(offset: number, value: number): void;
  unmap(): void;
}

export interface ReadOnlyMapping {
  readonly pages: ReadOnlyPages;
  unmap(): void;
}

/** Mapping other domains' grants (/dev/xen/gntdev). */
export interface GrantMapper {
  mapWritable(domain: DomainId, refs: readonly GrantRef[]): WritableMapping;
  mapReadOnly(domain: DomainId, refs: readonly GrantRef[]): ReadOnlyMapping;
}

/** Pages this domain shares with another (/dev/xen/gntalloc). */
export interface SharedPages {
  readonly refs: readonly GrantRef[];
  readonly buffer: ArrayBuffer;
  loadAcquire32(offset: number): number;
  storeRelease32(offset: number, value: number): void;
  /** Ends the sharing and detaches `buffer`. */
  unshare(): void;
}

export interface GrantSharer {
  share(domain: DomainId, pageCount: number, options?: { writable?: boolean }): SharedPages;
}

/** One segment of a batched grant copy: exactly one side is a foreign grant. */
export type GrantCopySegment =
  | {
      direction: 'from-grant';
      domain: DomainId;
      ref: GrantRef;
      offset: number;
      length: number;
      target: Uint8Array;
      targetOffset: number;
    }
  | {
      direction: 'to-grant';
      domain: DomainId;
      ref: GrantRef;
      offset: number;
      length: number;
      source: Uint8Array;
      sourceOffset: number;
    };

export interface GrantCopier {
  /** Copies every segment; returns per-segment status (0 ok, negative GNTST_* code). */
  copy(segments: readonly GrantCopySegment[]): Int16Array;
}

/** One end of a libxenvchan channel. Non-blocking; `onEvent` says when to try again. */
export interface VchanEndpoint {
  readonly role: 'server' | 'client';
  /**
   * Copies up to `into.length` bytes; returns how many (0 when nothing is ready, and 0
   * once the peer closed and everything was read: `state()` then says 'closed').
   * Throws XenError EBADF after our own close().
   */
  read(into: Uint8Array): number;
  /**
   * Writes as much of `data` as fits; returns how many bytes (0 when the ring is full).
   * Throws XenError EPIPE when the peer has closed, EBADF after our own close().
   */
  write(data: Uint8Array): number;
  dataReady(): number;
  bufferSpace(): number;
  /** libxenvchan_is_open: 'waiting' is a server whose client has not connected yet. */
  state(): 'waiting' | 'open' | 'closed';
  /** Called after the peer signalled (data, space, connect or close). Returns an unsubscribe function. */
  onEvent(listener: () => void): () => void;
  close(): void;
}

/**
 * `buffer` (bytes, default 0): 0 gives libxenvchan's own semantics (reads and writes go
 * straight to the rings, as the counts in VchanEndpoint say). Above 0, providers that can
 * (the native one) move the rings on a thread of their own through local buffers of that
 * size each way, so small rings keep moving while JS is busy: then `write` takes what fits
 * in the local buffer, `dataReady`/`read` see what has reached it, `state()` turns 'closed'
 * only after everything the peer wrote has, and `close()` first writes out the local buffer
 * (for at most 10 s) before closing the channel. Providers without threads ignore it.
 */
export interface VchanProvider {
  /** libxenvchan_server_init: publishes the channel under `path` for domain `peer`. */
  listen(options: {
    peer: DomainId;
    path: string;
    readMin: number;
    writeMin: number;
    buffer?: number;
  }): VchanEndpoint;
  /** libxenvchan_client_init: throws XenError when the server has not published `path` yet. */
  connect(options: { peer: DomainId; path: string; buffer?: number }): VchanEndpoint;
}

/** /dev/xen/xenbus in a domU: whole xenstore messages in, whole messages (or parts) out. */
export interface XenbusDevice {
  /** Writes one whole message (header + payload); throws XenError on failure. */
  write(message: Uint8Array): void;
  /** Each chunk read from the device, in order. Returns an unsubscribe function. */
  onData(listener: (chunk: Uint8Array) => void): () => void;
  onError(listener: (error: Error) => void): () => void;
  close(): void;
}

/** Everything one domain can do; native on Xen, or one domain of a SimHypervisor. */
export interface XenDomain {
  readonly domid: DomainId;
  readonly eventChannels: EventChannels;
  readonly grantMapper: GrantMapper;
  readonly grantSharer: GrantSharer;
  readonly grantCopier: GrantCopier;
  readonly vchan: VchanProvider;
}
