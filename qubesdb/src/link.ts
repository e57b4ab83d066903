import type { VchanStream } from '@moat/vchan';
import { QubesDbProtocolError } from './errors.ts';
import { describeRejection, QdbFrameReader, type QdbLink, type QdbMessage } from './wire.ts';

/** What a protocol handler says about a message: fine, or fatal for the connection. */
export type HandlerVerdict = undefined | { reason: string; detail: string };

/** How a connection ended: cleanly (peer closed or we closed), or with the reason. */
export interface LinkEnd {
  error?: Error;
}

/**
 * Glue between a vchan stream and a QubesDB protocol handler: frames messages,
 * validates headers for the vchan link, bounds what we buffer for a peer that does not
 * read, and ends the connection — never the process — on the first protocol error.
 */
export class QdbConnection {
  readonly ended: Promise<LinkEnd>;
  readonly #stream: VchanStream;
  readonly #peerDomain: number;
  readonly #reader: QdbFrameReader;
  readonly #maxPendingBytes: number;
  #finished = false;
  /** Chunks that arrived while a message was being handled (see the 'data' listener). */
  readonly #inbox: Buffer[] = [];
  #delivering = false;
  #resolveEnded!: (end: LinkEnd) => void;

  constructor(
    stream: VchanStream,
    options: {
      peerDomain: number;
      link?: QdbLink;
      /** Our unsent bytes allowed before we call the peer unresponsive. Default 1 MiB. */
      maxPendingBytes?: number;
      onMessage: (message: QdbMessage) => HandlerVerdict;
    },
  ) {
    this.#stream = stream;
    this.#peerDomain = options.peerDomain;
    this.#reader = new QdbFrameReader(options.link ?? 'vchan');
    this.#maxPendingBytes = options.maxPendingBytes ?? 1024 * 1024;
    this.ended = new Promise((resolve) => {
      this.#resolveEnded = resolve;
    });
    // One message at a time, in arrival order. A handler's reply is a write(), and a stream
    // may emit the next 'data' from inside that write (VchanStream did when its pump found
    // new bytes): handled there, the next messages would run before this one finished
    // (its watch fired after theirs). Such a chunk waits in #inbox for the loop below.
    stream.on('data', (chunk: Buffer) => {
      this.#inbox.push(chunk);
      if (this.#delivering) return;
      this.#delivering = true;
      try {
        for (let next = this.#inbox.shift(); next; next = this.#inbox.shift()) {
          this.#deliver(next, options.onMessage);
        }
      } finally {
        this.#delivering = false;
        this.#inbox.length = 0;
      }
    });
    stream.on('end', () => {
      if (this.#reader.midMessage) {
        this.fail('early-eof', `the channel closed after ${this.#reader.partialBytes} bytes of a message`);
      } else {
        this.#finish({});
      }
    });
    stream.on('error', (error: Error) => this.#finish({ error }));
    stream.on('close', () => this.#finish({}));
  }

  #deliver(chunk: Buffer, onMessage: (message: QdbMessage) => HandlerVerdict): void {
    for (const event of this.#reader.push(chunk)) {
      if (this.#finished) return;
      if (event.kind === 'invalid') {
        this.fail(event.reason, `invalid message: ${describeRejection(event)}`);
        return;
      }
      const verdict = onMessage(event.message);
      if (verdict) {
        this.fail(verdict.reason, verdict.detail);
        return;
      }
    }
  }

  get open(): boolean {
    return !this.#finished;
  }

  /** Queues bytes for the peer (never blocks; bounded). */
  send(bytes: Uint8Array): void {
    if (this.#finished) return;
    if (this.#stream.writableLength + bytes.length > this.#maxPendingBytes) {
      this.fail('peer-not-reading', `more than ${this.#maxPendingBytes} bytes are waiting for the peer`);
      return;
    }
    this.#stream.write(bytes);
  }

  /** Ends the connection because of the peer. */
  fail(reason: string, detail: string): void {
    if (this.#finished) return;
    const error = new QubesDbProtocolError(this.#peerDomain, reason, detail);
    this.#finish({ error });
  }

  /** Ends the connection from our side (flushes what we queued). */
  close(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#endStream();
    this.#resolveEnded({});
  }

  #finish(end: LinkEnd): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#endStream();
    this.#resolveEnded(end);
  }

  /**
   * Flushes what we queued (e.g. the RESP_ERROR the C daemon sends before exiting),
   * then closes; a peer that does not read cannot hold the channel open for long.
   */
  #endStream(): void {
    const stream = this.#stream;
    if (stream.destroyed) return;
    stream.end();
    const timer = setTimeout(() => stream.destroy(), 1000);
    timer.unref();
    stream.once('close', () => clearTimeout(timer));
    stream.resume(); // let the EOF through even though we no longer care about data
  }
}
