/**
 * Splitting a vchan byte stream into qrexec messages. `FrameDecoder` is the sans-IO core (bytes
 * in, frames or a reason out); `FrameReader` / `FrameWriter` are the thin async edges over a
 * Node stream, with backpressure both ways; and how both sides open and close their vchans.
 */
import type { Duplex, Readable, Writable } from 'node:stream';
import type { VchanStream } from '@moat/vchan';
import { QrexecProtocolError } from './errors.ts';
import { type Decoded, decodeHeader, encodeHeader, HEADER_SIZE, type Header } from './wire.ts';

export interface Frame {
  type: number;
  payload: Uint8Array;
}

/** Validates a header before its payload is read: the place where every allocation is bounded. */
export type HeaderCheck = (header: Header) => Decoded<Header>;

export type FrameResult =
  | { kind: 'frame'; frame: Frame }
  | { kind: 'need-more' }
  | { kind: 'error'; reason: Extract<Decoded<never>, { ok: false }>['reason']; detail: string };

export class FrameDecoder {
  private chunks: Uint8Array[] = [];
  private offset = 0; // consumed bytes of chunks[0]
  private total = 0; // unconsumed bytes
  private header: Header | undefined;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** Bytes received but not yet returned as part of a frame. */
  get buffered(): number {
    return this.total;
  }

  /** True between frames (an EOF here is clean). */
  get atBoundary(): boolean {
    return this.total === 0 && this.header === undefined;
  }

  next(check: HeaderCheck): FrameResult {
    if (this.header === undefined) {
      if (this.total < HEADER_SIZE) return { kind: 'need-more' };
      const decoded = decodeHeader(this.take(HEADER_SIZE));
      if (!decoded.ok) return { kind: 'error', reason: decoded.reason, detail: decoded.detail ?? '' };
      const checked = check(decoded.value);
      if (!checked.ok) return { kind: 'error', reason: checked.reason, detail: checked.detail ?? '' };
      this.header = decoded.value;
    }
    if (this.total < this.header.length) return { kind: 'need-more' };
    const frame = { type: this.header.type, payload: this.take(this.header.length) };
    this.header = undefined;
    return { kind: 'frame', frame };
  }

  private take(n: number): Uint8Array {
    const first = this.chunks[0];
    if (first && first.length - this.offset >= n) {
      // Contiguous: hand out a view (streams never reuse the chunks they emit).
      const view = first.subarray(this.offset, this.offset + n);
      this.offset += n;
      if (this.offset === first.length) {
        this.chunks.shift();
        this.offset = 0;
      }
      this.total -= n;
      return view;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const head = this.chunks[0]!;
      const available = head.length - this.offset;
      const count = Math.min(available, n - filled);
      out.set(head.subarray(this.offset, this.offset + count), filled);
      filled += count;
      this.offset += count;
      if (this.offset === head.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    this.total -= n;
    return out;
  }
}

/** Pulls frames from a readable stream; only as much is read from the stream as is asked for. */
export class FrameReader {
  private readonly decoder = new FrameDecoder();
  private readonly source: AsyncIterator<Uint8Array>;
  private ended = false;

  constructor(
    stream: Readable,
    /** Names this connection in errors. */
    private readonly operation: string,
    private readonly peerDomain?: number,
  ) {
    // Reaching EOF must not destroy the stream: a half-closed peer may still read our output.
    this.source = stream.iterator({ destroyOnReturn: false }) as AsyncIterator<Uint8Array>;
  }

  /** The next frame, or null on EOF between frames. Throws QrexecProtocolError otherwise. */
  async read(check: HeaderCheck): Promise<Frame | null> {
    for (;;) {
      const result = this.decoder.next(check);
      if (result.kind === 'frame') return result.frame;
      if (result.kind === 'error') throw this.error(result.reason, result.detail);
      if (this.ended) {
        if (this.decoder.atBoundary) return null;
        throw this.error('early-eof', `${this.decoder.buffered} bytes of an incomplete message`);
      }
      let chunk: IteratorResult<Uint8Array>;
      try {
        chunk = await this.source.next();
      } catch (e) {
        throw this.error('transport-error', e instanceof Error ? e.message : String(e));
      }
      if (chunk.done) this.ended = true;
      else this.decoder.push(chunk.value);
    }
  }

  private error(reason: ConstructorParameters<typeof QrexecProtocolError>[1], detail: string) {
    return new QrexecProtocolError(this.operation, reason, detail, this.peerDomain);
  }
}

/** Writes whole messages, waiting for the stream to drain when it asks to. */
export class FrameWriter {
  /** The stream's last error (a write to a vanished peer), surfaced by the next write. */
  private failure: Error | undefined;

  constructor(
    private readonly stream: Writable,
    private readonly operation: string,
    private readonly peerDomain?: number,
  ) {
    // A failed write is reported as an 'error' event, possibly after our reader has finished
    // and stopped listening: without a listener that event would take the process down.
    stream.on('error', (e: Error) => {
      this.failure = e;
    });
  }

  async write(bytes: Uint8Array): Promise<void> {
    const stream = this.stream;
    if (stream.destroyed || stream.writableEnded) throw this.closed();
    const flushed = stream.write(bytes);
    if (flushed) return;
    await new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        stream.off('drain', onDrain);
        stream.off('close', onClose);
        stream.off('error', onClose);
      };
      const onDrain = () => {
        cleanup();
        resolve();
      };
      const onClose = () => {
        cleanup();
        reject(this.closed());
      };
      stream.on('drain', onDrain);
      stream.on('close', onClose);
      stream.on('error', onClose);
    });
  }

  /** One message from a header and a payload, without copying the payload into a new buffer. */
  async writeMessage(type: number, payload: Uint8Array): Promise<void> {
    const header = encodeHeader({ type, length: payload.length });
    if (payload.length === 0) return this.write(header);
    if (this.stream.destroyed || this.stream.writableEnded) throw this.closed();
    this.stream.write(header); // the payload's write below carries the backpressure for both
    return this.write(payload);
  }

  private closed() {
    const why = this.failure ? `stream closed: ${this.failure.message}` : 'stream closed';
    return new QrexecProtocolError(this.operation, 'transport-error', why, this.peerDomain);
  }
}

/**
 * Closes a vchan stream like `libvchan_close` after the last write: our side ends once every
 * queued byte is handed over, then the stream is released; the peer sees EOF. Errors after this
 * point (peer already gone) are expected and not reported.
 */
export function closeStream(stream: Duplex): void {
  stream.on('error', () => undefined);
  if (stream.destroyed) return;
  stream.once('finish', () => stream.destroy());
  stream.end();
}

/** A vchan server's stream once its client connected; rejects if it closes first. */
export function accepted(server: VchanStream): Promise<VchanStream> {
  return server.whenConnected().then(() => server);
}

/** Withdraws a vchan server nobody connected to; a connected stream is its user's to close. */
export function withdrawIfWaiting(server: VchanStream | undefined): void {
  if (server?.state === 'waiting') server.destroy();
}
