import type { Server, Socket } from 'node:net';
import type { VchanEndpoint } from '@moat/xen';

/** Smallest power of two ≥ max(page size, requested): qubes-core-vchan-socket's ring_init. */
export function socketRingSize(requested: number): number {
  let size = 4096;
  while (size < requested && size < 1 << 30) size *= 2;
  return size;
}

/**
 * A `VchanEndpoint` over a unix stream socket, byte-compatible with
 * qubes-core-vchan-socket (vchan/socket.c, vchan/io.c, QubesOS/qubes-core-vchan-socket @ e1da6dacf190): no framing, the socket carries exactly
 * the bytes that would have gone through the rings. Like the C library, each side keeps
 * a bounded read buffer and write buffer; when the read buffer is full we pause the
 * socket, so the peer's writes back up (backpressure across processes).
 *
 * Only one peer is ever served: the server takes the first connection and stops
 * listening (the C server accepts once and never again).
 */
export class SocketVchanEndpoint implements VchanEndpoint {
  readonly role: 'server' | 'client';
  readonly #readCapacity: number;
  readonly #writeCapacity: number;
  readonly #listeners = new Set<() => void>();
  #socket: Socket | undefined;
  #server: Server | undefined;
  #readQueue: Buffer[] = [];
  #readQueueOffset = 0;
  #readQueued = 0;
  #beforeConnect: Buffer[] = [];
  #beforeConnectBytes = 0;
  #state: 'waiting' | 'open' | 'closed';
  #failure: Error | undefined;
  #closedByUs = false;
  readonly #wrote = (error?: Error | null) => {
    if (!error) this.#emit();
  };

  constructor(role: 'server' | 'client', sizes: { readSize: number; writeSize: number }) {
    this.role = role;
    this.#readCapacity = sizes.readSize;
    this.#writeCapacity = sizes.writeSize;
    this.#state = 'waiting';
  }

  /** Server side: serve the first connection of `server`, then stop listening. */
  acceptFrom(server: Server): void {
    this.#server = server;
    server.on('connection', (socket: Socket) => {
      if (this.#socket || this.#closedByUs) {
        // A second client would hang forever on the C server; we tell it at once instead.
        socket.destroy();
        return;
      }
      this.#closeServer();
      this.attach(socket);
    });
  }

  /** Starts using a connected socket. */
  attach(socket: Socket): void {
    if (this.#closedByUs) {
      socket.destroy();
      return;
    }
    this.#socket = socket;
    this.#state = 'open';
    socket.on('data', (chunk: Buffer) => {
      if (this.#closedByUs) return; // after close() we only drain the socket so it can finish
      this.#readQueue.push(chunk);
      this.#readQueued += chunk.length;
      if (this.#readQueued >= this.#readCapacity) socket.pause();
      this.#emit();
    });
    socket.on('drain', () => this.#emit());
    socket.on('end', () => this.#peerGone(undefined));
    socket.on('error', (error: Error) => this.#peerGone(error));
    socket.on('close', () => this.#peerGone(undefined));
    for (const chunk of this.#beforeConnect) socket.write(chunk, this.#wrote);
    this.#beforeConnect = [];
    this.#beforeConnectBytes = 0;
    this.#emit();
  }

  read(into: Uint8Array): number {
    let copied = 0;
    while (copied < into.length && this.#readQueue.length > 0) {
      const head = this.#readQueue[0]!;
      const available = head.length - this.#readQueueOffset;
      const n = Math.min(available, into.length - copied);
      into.set(head.subarray(this.#readQueueOffset, this.#readQueueOffset + n), copied);
      copied += n;
      this.#readQueueOffset += n;
      if (this.#readQueueOffset === head.length) {
        this.#readQueue.shift();
        this.#readQueueOffset = 0;
      }
    }
    this.#readQueued -= copied;
    const socket = this.#socket;
    if (socket && this.#state === 'open' && socket.isPaused() && this.#readQueued < this.#readCapacity) {
      socket.resume();
    }
    return copied;
  }

  write(data: Uint8Array): number {
    if (this.#state === 'closed') return 0;
    const n = Math.min(data.length, this.bufferSpace());
    if (n === 0) return 0;
    // Copy: the caller may reuse its buffer as soon as we return.
    const copy = Buffer.from(data.subarray(0, n));
    // Wake the stream when these bytes leave node's buffer. 'drain' alone is not enough:
    // it only follows a write() that returned false, and with a capacity below the
    // socket's high-water mark we may be full while write() still returned true.
    if (this.#socket) this.#socket.write(copy, this.#wrote);
    else {
      this.#beforeConnect.push(copy);
      this.#beforeConnectBytes += n;
    }
    return n;
  }

  dataReady(): number {
    return this.#readQueued;
  }

  bufferSpace(): number {
    if (this.#state === 'closed') return 0;
    const used = this.#socket ? this.#socket.writableLength : this.#beforeConnectBytes;
    return Math.max(0, this.#writeCapacity - used);
  }

  state(): 'waiting' | 'open' | 'closed' {
    return this.#state;
  }

  /** Why the channel closed, when the socket said (ECONNRESET, EPIPE); undefined for a clean EOF. */
  failure(): Error | undefined {
    return this.#failure;
  }

  onEvent(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    if (this.#closedByUs) return;
    this.#closedByUs = true;
    this.#state = 'closed';
    this.#listeners.clear();
    this.#closeServer();
    const socket = this.#socket;
    if (socket) {
      // libvchan_close flushes what was written, then closes: end() does both, and
      // destroySoon-style cleanup happens when the peer closes its side too.
      socket.end();
      // Keep reading (and discarding) until the peer closes too: closing a unix socket with
      // unread data makes the kernel reset the connection, which the peer would see as
      // ECONNRESET instead of our EOF.
      socket.resume();
      // The C library blocks in close until flushed; we flush in the background, for a while.
      const timer = setTimeout(() => socket.destroy(), 10_000);
      timer.unref();
      const done = () => {
        clearTimeout(timer);
        socket.destroy();
      };
      if (socket.readableEnded) socket.once('finish', done);
      else socket.once('end', done);
      socket.once('close', () => clearTimeout(timer));
    }
    this.#readQueue = [];
    this.#readQueued = 0;
  }

  #peerGone(error: Error | undefined): void {
    if (error && !this.#failure) this.#failure = error;
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#emit();
  }

  #closeServer(): void {
    const server = this.#server;
    this.#server = undefined;
    server?.close();
  }

  #emit(): void {
    for (const listener of this.#listeners) listener();
  }
}
