import { Duplex } from 'node:stream';
import type { DomainId, VchanEndpoint } from '@moat/xen';
import { VchanError } from './errors.ts';

/** Which channel a stream is, for logs and errors. */
export interface VchanChannel {
  readonly localDomain: DomainId;
  readonly remoteDomain: DomainId;
  readonly port: number;
  readonly role: 'server' | 'client';
  /** Where the bytes travel: libxenvchan rings, a vchan-socket unix socket, or in-process. */
  readonly transport: 'xen' | 'socket' | 'memory';
}

/**
 * How the stream notices a peer that died without closing. On Xen a killed peer
 * process is caught by the kernel's unmap notification (the endpoint turns 'closed'),
 * but a destroyed peer *domain* sends nothing; Qubes' wrapper asks `evtchn_status`
 * for that (`libvchan__check_domain_alive` in vchan/io.c, QubesOS/qubes-core-vchan-xen @ a1337c282ffe). We cannot see event-channel status through
 * `VchanEndpoint`, so the caller supplies the check (e.g. "does /local/domain/<peer>
 * still exist in xenstore").
 */
export interface VchanLiveness {
  /** Resolves false when the peer is gone; the stream then fails with `EPEERDEAD`. */
  isPeerAlive(): boolean | Promise<boolean>;
  /** How often to ask while the stream is open. Default 1000 ms. */
  intervalMs?: number;
}

export interface VchanStreamOptions {
  /** Readable-side buffer in bytes before we stop draining the ring (backpressure). Default 64 KiB. */
  readableHighWaterMark?: number;
  /** Writable-side buffer in bytes before `write()` returns false. Default 64 KiB. */
  writableHighWaterMark?: number;
  /** Largest chunk pushed to readers at once. Default 64 KiB. */
  maxReadChunk?: number;
  liveness?: VchanLiveness;
}

/** An endpoint may also say why it closed (a socket's ECONNRESET); Xen endpoints cannot. */
interface EndpointWithFailure extends VchanEndpoint {
  failure?(): Error | undefined;
}

/** What a tap sees: bytes as they went into or came out of the ring, or the peer's end. */
export interface VchanTransfer {
  direction: 'in' | 'out' | 'eof';
  /** Valid during the call only (the stream may reuse the memory): copy what you keep. */
  bytes: Uint8Array;
}

interface PendingWrite {
  data: Uint8Array;
  offset: number;
  callback: (error?: Error | null) => void;
}

const DEFAULT_BUFFER = 64 * 1024;

/**
 * A vchan as a Node Duplex stream over any `VchanEndpoint` (native libxenvchan, sim,
 * the unix-socket transport or the in-memory pair).
 *
 * Semantics, matching libvchan:
 * - Backpressure both ways: we drain the peer's ring only while our readable buffer
 *   wants data, so a slow reader leaves the ring full and the peer's writes wait; our
 *   `write()` callbacks complete only when the bytes are in the ring (or, for a pumped
 *   native end, in its bounded local buffer, which its thread writes out in order).
 * - vchan has no half-close. Ending our writable side (`end()`) waits until every byte
 *   is in the ring, then closes the channel, which the peer sees as EOF. Data the peer
 *   sends after that is lost, as with `libvchan_close`.
 * - When the peer closes, we deliver everything still in the ring, then EOF. If we
 *   still had bytes to write, that write fails with `EPIPE`.
 * - A peer that dies is seen as a close (unmap notification on Xen, FIN on a socket),
 *   as an error when the transport reports one (`ECONNRESET`), or through `liveness`.
 */
export class VchanStream extends Duplex {
  readonly channel: VchanChannel;
  readonly #endpoint: EndpointWithFailure;
  readonly #maxReadChunk: number;
  readonly #unsubscribe: () => void;
  #pending: PendingWrite | undefined;
  #wantRead = false;
  #readEnded = false;
  #endpointClosed = false;
  #connectWaiters: { resolve: () => void; reject: (error: Error) => void }[] = [];
  #livenessTimer: NodeJS.Timeout | undefined;
  #pumping = false;
  #pumpAgain = false;
  /** A pump that may read is due (events and _read ask for one; _write does not). */
  #readsWanted = false;
  #taps: ((transfer: VchanTransfer) => void)[] = [];

  constructor(endpoint: VchanEndpoint, channel: VchanChannel, options: VchanStreamOptions = {}) {
    super({
      allowHalfOpen: false,
      readableHighWaterMark: options.readableHighWaterMark ?? DEFAULT_BUFFER,
      writableHighWaterMark: options.writableHighWaterMark ?? DEFAULT_BUFFER,
      decodeStrings: true,
    });
    this.channel = channel;
    this.#endpoint = endpoint;
    this.#maxReadChunk = Math.max(1, options.maxReadChunk ?? DEFAULT_BUFFER);
    this.#unsubscribe = endpoint.onEvent(() => this.#pump());
    if (options.liveness) this.#startLiveness(options.liveness);
    // The peer may have acted before we subscribed (a socket connected, data queued).
    setImmediate(() => this.#pump());
  }

  /** libvchan_is_open: 'waiting' until a client connects to our server. */
  get state(): 'waiting' | 'open' | 'closed' {
    if (this.#endpointClosed) return 'closed';
    return this.#endpoint.state();
  }

  /** Resolves once the peer is connected (immediately for clients); rejects if the stream ends first. */
  whenConnected(): Promise<void> {
    const state = this.#safeState();
    if (state === 'open') return Promise.resolve();
    if (state === 'closed' || this.destroyed) {
      return Promise.reject(this.#error('connect', 'ECONNABORTED', 'closed before a peer connected'));
    }
    return new Promise((resolve, reject) => this.#connectWaiters.push({ resolve, reject }));
  }

  /**
   * Calls `listener` with every byte written into or read from the ring, in order, and the
   * peer's EOF: for transcripts and debugging (`recordingVchanTransport`). Returns an unsubscribe.
   */
  tap(listener: (transfer: VchanTransfer) => void): () => void {
    this.#taps.push(listener);
    return () => {
      this.#taps = this.#taps.filter((l) => l !== listener);
    };
  }

  #emit(direction: VchanTransfer['direction'], bytes: Uint8Array): void {
    for (const listener of this.#taps) listener({ direction, bytes });
  }

  override _read(): void {
    this.#wantRead = true;
    this.#pump();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#endpointClosed) {
      callback(this.#closedError('write', chunk.length));
      return;
    }
    if (this.#safeState() === 'closed') {
      this.#failWriteAfterPeerData(callback, this.#closedError('write', chunk.length));
      return;
    }
    this.#pending = { data: chunk, offset: 0, callback };
    // Writes only: reading here could emit 'data' synchronously inside the caller's write(),
    // e.g. a protocol answering a message from its 'data' handler would get the next message
    // before it finished this one (QubesDB fired watches out of order on Xen). Bytes that
    // arrive always come with an event, whose pump reads them.
    this.#pump(false);
  }

  override _final(callback: (error?: Error | null) => void): void {
    // Every write callback has run, so every byte is in the ring: closing now is libvchan_close.
    this.#closeEndpoint();
    if (!this.#readEnded) {
      this.#readEnded = true;
      this.push(null);
    }
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const pending = this.#pending;
    this.#pending = undefined;
    this.#closeEndpoint();
    this.#rejectConnectWaiters(error ?? this.#error('connect', 'ECONNABORTED', 'destroyed'));
    if (pending) pending.callback(error ?? this.#closedError('write', pending.data.length - pending.offset));
    callback(error);
  }

  /** Moves bytes between the ring and the stream buffers; runs after every event. */
  #pump(withReads = true): void {
    if (withReads) this.#readsWanted = true;
    // Re-entrancy guard: push() may call _read() synchronously.
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    if (this.destroyed || this.#endpointClosed) return;
    this.#pumping = true;
    try {
      do {
        this.#pumpAgain = false;
        const reads = this.#readsWanted;
        this.#readsWanted = false;
        this.#pumpOnce(reads);
      } while (this.#pumpAgain && !this.destroyed && !this.#endpointClosed);
    } catch (error) {
      this.destroy(error instanceof Error ? error : new Error(String(error)));
    } finally {
      this.#pumping = false;
    }
  }

  #pumpOnce(reads: boolean): void {
    const endpoint = this.#endpoint;
    const state = endpoint.state();
    if (state !== 'waiting') this.#resolveConnectWaiters();

    // Writes first: they free the caller's buffer and do not depend on reading.
    let stalls = 0;
    while (this.#pending) {
      const pending = this.#pending;
      if (state === 'closed') {
        this.#pending = undefined;
        this.#failWriteAfterPeerData(
          pending.callback,
          this.#closedError('write', pending.data.length - pending.offset),
        );
        break;
      }
      let n: number;
      try {
        n = endpoint.write(pending.data.subarray(pending.offset));
      } catch (error) {
        // libxenvchan_write fails (EPIPE) once the peer has closed: that is our EPIPE, not a crash.
        if (endpoint.state() !== 'closed') throw error;
        this.#pending = undefined;
        this.#failWriteAfterPeerData(
          pending.callback,
          this.#closedError('write', pending.data.length - pending.offset, error),
        );
        break;
      }
      if (n > 0 && this.#taps.length > 0)
        this.#emit('out', pending.data.subarray(pending.offset, pending.offset + n));
      pending.offset += n;
      if (pending.offset >= pending.data.length) {
        this.#pending = undefined;
        pending.callback();
        continue;
      }
      // Ring full: bufferSpace() asks the peer to notify us when it consumes (libxenvchan
      // requests VCHAN_NOTIFY_READ there), then re-checks to close the race.
      // A second stall with space reported would be an endpoint bug; wait for an event instead of spinning.
      if (n === 0 && (endpoint.bufferSpace() === 0 || ++stalls > 1)) break;
    }

    while (reads && this.#wantRead && !this.#readEnded) {
      // dataReady() requests VCHAN_NOTIFY_WRITE before counting, so a 0 here guarantees an event later.
      const ready = endpoint.dataReady();
      if (ready > 0) {
        const chunk = Buffer.allocUnsafe(Math.min(ready, this.#maxReadChunk));
        const n = endpoint.read(chunk);
        if (n <= 0) break;
        const data = n === chunk.length ? chunk : chunk.subarray(0, n);
        if (this.#taps.length > 0) this.#emit('in', data);
        this.#wantRead = this.push(data);
        continue;
      }
      if (state === 'closed') this.#endOfPeer();
      break;
    }
  }

  /**
   * Fails a write because the peer closed, without losing what the peer wrote before closing:
   * a failed write destroys the stream (Node), and a destroyed stream's unread bytes are gone.
   * So the rest of the ring (bounded by the ring size, hence read whatever our high-water mark)
   * and EOF go to the readable side first, and the write fails a turn later, after a reader
   * that is reading has had them (on Xen the closed flag is seen before the data's event).
   */
  #failWriteAfterPeerData(callback: (error?: Error | null) => void, error: VchanError): void {
    try {
      while (!this.#readEnded && !this.destroyed) {
        const ready = this.#endpoint.dataReady();
        const chunk = Buffer.allocUnsafe(Math.max(1, Math.min(ready, this.#maxReadChunk)));
        const n = ready > 0 ? this.#endpoint.read(chunk) : 0;
        if (n <= 0) {
          this.#endOfPeer();
          break;
        }
        const data = n === chunk.length ? chunk : chunk.subarray(0, n);
        if (this.#taps.length > 0) this.#emit('in', data);
        this.push(data);
      }
    } catch {
      // The ring cannot be read any more: nothing else will come, and the write error says why.
    }
    setImmediate(() => callback(error));
  }

  #endOfPeer(): void {
    this.#readEnded = true;
    const failure = this.#endpoint.failure?.();
    if (failure) {
      this.destroy(
        this.#error('read', (failure as NodeJS.ErrnoException).code ?? 'EIO', failure.message, failure),
      );
      return;
    }
    if (this.#taps.length > 0) this.#emit('eof', new Uint8Array(0));
    this.push(null);
  }

  #closeEndpoint(): void {
    if (this.#endpointClosed) return;
    // A peer that closed before we read its EOF still ended first: a tap hears it.
    if (this.#taps.length > 0 && !this.#readEnded && this.#safeState() === 'closed')
      this.#emit('eof', new Uint8Array(0));
    this.#endpointClosed = true;
    if (this.#livenessTimer) clearInterval(this.#livenessTimer);
    this.#unsubscribe();
    this.#endpoint.close();
  }

  #startLiveness(liveness: VchanLiveness): void {
    let checking = false;
    this.#livenessTimer = setInterval(() => {
      if (checking || this.destroyed) return;
      checking = true;
      Promise.resolve()
        .then(() => liveness.isPeerAlive())
        .then(
          (alive) => {
            if (!alive && !this.destroyed) {
              this.destroy(this.#error('liveness', 'EPEERDEAD', 'the peer domain is gone'));
            }
          },
          (error: unknown) => {
            this.destroy(this.#error('liveness', 'EIO', 'the liveness check failed', error));
          },
        )
        .finally(() => {
          checking = false;
        });
    }, liveness.intervalMs ?? 1000);
    this.#livenessTimer.unref();
  }

  #safeState(): 'waiting' | 'open' | 'closed' {
    try {
      return this.state;
    } catch {
      return 'closed';
    }
  }

  #resolveConnectWaiters(): void {
    const waiters = this.#connectWaiters;
    if (waiters.length === 0) return;
    this.#connectWaiters = [];
    for (const waiter of waiters) waiter.resolve();
  }

  #rejectConnectWaiters(error: Error): void {
    const waiters = this.#connectWaiters;
    this.#connectWaiters = [];
    for (const waiter of waiters) waiter.reject(error);
  }

  #closedError(operation: string, unwritten: number, cause?: unknown): VchanError {
    // A socket says why it closed (ECONNRESET); otherwise this is a plain EPIPE.
    const failure = this.#endpoint.failure?.();
    const code = failure ? ((failure as NodeJS.ErrnoException).code ?? 'EPIPE') : 'EPIPE';
    return this.#error(
      operation,
      code,
      `the channel is closed with ${unwritten} bytes unwritten`,
      failure ?? cause,
    );
  }

  #error(operation: string, code: string, detail: string, cause?: unknown): VchanError {
    const { localDomain, remoteDomain, port } = this.channel;
    return new VchanError(
      operation,
      code,
      { localDomain, remoteDomain, port },
      detail,
      cause === undefined ? undefined : { cause },
    );
  }
}
