import type { VchanEndpoint } from '@moat/xen';

/** One direction of an in-process channel: a bounded byte ring. */
class ByteRing {
  readonly #data: Uint8Array;
  #start = 0;
  #count = 0;
  constructor(readonly size: number) {
    this.#data = new Uint8Array(size);
  }
  get count(): number {
    return this.#count;
  }
  get space(): number {
    return this.size - this.#count;
  }
  put(source: Uint8Array): number {
    const n = Math.min(source.length, this.space);
    for (let done = 0; done < n; ) {
      const at = (this.#start + this.#count) % this.size;
      const run = Math.min(n - done, this.size - at);
      this.#data.set(source.subarray(done, done + run), at);
      done += run;
      this.#count += run;
    }
    return n;
  }
  take(target: Uint8Array): number {
    const n = Math.min(target.length, this.#count);
    for (let done = 0; done < n; ) {
      const run = Math.min(n - done, this.size - this.#start);
      target.set(this.#data.subarray(this.#start, this.#start + run), done);
      done += run;
      this.#start = (this.#start + run) % this.size;
      this.#count -= run;
    }
    return n;
  }
}

class MemoryEndpoint implements VchanEndpoint {
  peer: MemoryEndpoint | undefined;
  live = true;
  connected: boolean;
  readonly #listeners = new Set<() => void>();
  #eventQueued = false;

  constructor(
    readonly role: 'server' | 'client',
    readonly readRing: ByteRing,
    readonly writeRing: ByteRing,
  ) {
    this.connected = role === 'client';
  }

  read(into: Uint8Array): number {
    const n = this.readRing.take(into);
    if (n > 0) this.peer?.signal();
    return n;
  }
  write(data: Uint8Array): number {
    if (!this.#writable()) return 0;
    const n = this.writeRing.put(data);
    if (n > 0) this.peer?.signal();
    return n;
  }
  dataReady(): number {
    return this.readRing.count;
  }
  bufferSpace(): number {
    return this.#writable() ? this.writeRing.space : 0;
  }
  /** A server may fill its ring before the client connects, as with libxenvchan. */
  #writable(): boolean {
    return this.live && (this.peer === undefined || this.peer.live);
  }
  state(): 'waiting' | 'open' | 'closed' {
    if (!this.live) return 'closed';
    if (!this.connected) return 'waiting';
    return this.peer?.live ? 'open' : 'closed';
  }
  onEvent(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  close(): void {
    if (!this.live) return;
    this.live = false;
    this.#listeners.clear();
    this.peer?.signal();
  }
  /** Like an event-channel notification: delivered later, coalesced, never re-entrant. */
  signal(): void {
    if (this.#eventQueued || !this.live) return;
    this.#eventQueued = true;
    setImmediate(() => {
      this.#eventQueued = false;
      for (const listener of this.#listeners) listener();
    });
  }
}

export interface MemoryVchanPair {
  server: VchanEndpoint;
  /** Creates the client end (the server is 'waiting' until then). Only once. */
  connect(): VchanEndpoint;
  /** Simulates the server's process dying: the client sees 'closed' without a close() call. */
  killServer(): void;
  killClient(): void;
}

/**
 * Two in-process endpoints with libxenvchan's observable behaviour (bounded rings,
 * 'waiting' until the client connects, data still readable after the peer closed,
 * asynchronous coalesced events). For unit tests of protocols above vchan.
 */
export function memoryVchanPair(sizes: { serverRead?: number; serverWrite?: number } = {}): MemoryVchanPair {
  const left = new ByteRing(sizes.serverRead ?? 4096); // client → server
  const right = new ByteRing(sizes.serverWrite ?? 4096); // server → client
  const server = new MemoryEndpoint('server', left, right);
  let client: MemoryEndpoint | undefined;
  return {
    server,
    connect() {
      if (client) throw new Error('memoryVchanPair: the client already connected');
      if (!server.live) throw new Error('memoryVchanPair: the server is closed');
      client = new MemoryEndpoint('client', right, left);
      client.peer = server;
      server.peer = client;
      server.connected = true;
      server.signal();
      return client;
    },
    killServer() {
      server.live = false;
      client?.signal();
    },
    killClient() {
      if (!client) return;
      client.live = false;
      server.signal();
    },
  };
}
