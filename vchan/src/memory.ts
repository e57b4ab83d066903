import type { DomainId, VchanEndpoint } from '@moat/xen';
import { VchanError } from './errors.ts';
import { VchanStream, type VchanStreamOptions } from './stream.ts';
import type { VchanTransport } from './transport.ts';

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

/**
 * An in-process "Xen" for protocol tests: `transport(domid)` is that domain's `VchanTransport`,
 * with `memoryVchanPair` rings behind each `VchanStream`. Servers are keyed
 * `<server>.<client>.<port>` like vchan-socket's `vchan.<server>.<client>.<port>.sock`; as with
 * libxenvchan, a server takes one client and is withdrawn once it connected or closed.
 */
export class MemoryVchanNetwork {
  readonly #servers = new Map<string, MemoryVchanPair>();
  readonly #waiters = new Map<string, Set<() => void>>();

  transport(localDomain: DomainId): VchanTransport {
    return {
      localDomain,
      listen: async (options) => this.#listen(localDomain, options),
      connect: (options) => this.#connect(localDomain, options),
    };
  }

  /** Servers waiting for their client, as `<server>.<client>.<port>` (for tests checking cleanup). */
  advertised(): string[] {
    this.#forgetClosed();
    return [...this.#servers.keys()];
  }

  #forgetClosed(): void {
    for (const [key, pair] of this.#servers) if (pair.server.state() === 'closed') this.#servers.delete(key);
  }

  #listen(
    localDomain: DomainId,
    options: Parameters<VchanTransport['listen']>[0] & VchanStreamOptions,
  ): VchanStream {
    const { peer, port } = options;
    const key = `${localDomain}.${peer}.${port}`;
    const channel = { localDomain, remoteDomain: peer, port };
    this.#forgetClosed();
    if (this.#servers.has(key)) throw new VchanError('listen', 'EADDRINUSE', channel, `${key} is in use`);
    const pair = memoryVchanPair({ serverRead: options.readMin, serverWrite: options.writeMin });
    this.#servers.set(key, pair);
    for (const wake of this.#waiters.get(key) ?? []) wake();
    return new VchanStream(pair.server, { ...channel, role: 'server', transport: 'memory' }, options);
  }

  async #connect(
    localDomain: DomainId,
    options: Parameters<VchanTransport['connect']>[0] & VchanStreamOptions,
  ): Promise<VchanStream> {
    const { peer, port, timeoutMs, signal } = options;
    const key = `${peer}.${localDomain}.${port}`;
    const channel = { localDomain, remoteDomain: peer, port };
    const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + timeoutMs;
    for (;;) {
      if (signal?.aborted) throw new VchanError('connect', 'ECANCELED', channel, `${key}: aborted`);
      this.#forgetClosed();
      const pair = this.#servers.get(key);
      if (pair) {
        this.#servers.delete(key);
        const client = pair.connect();
        return new VchanStream(client, { ...channel, role: 'client', transport: 'memory' }, options);
      }
      const left = deadline - Date.now();
      if (left <= 0)
        throw new VchanError('connect', 'ETIMEDOUT', channel, `no server ${key} after ${timeoutMs} ms`);
      await this.#waitForServer(key, left, signal);
    }
  }

  #waitForServer(key: string, ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      const waiters = this.#waiters.get(key) ?? new Set<() => void>();
      this.#waiters.set(key, waiters);
      const timer = Number.isFinite(ms) ? setTimeout(done, ms) : undefined;
      signal?.addEventListener('abort', done, { once: true });
      waiters.add(done);
      const all = this.#waiters;
      function done() {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        waiters.delete(done);
        if (waiters.size === 0 && all.get(key) === waiters) all.delete(key);
        resolve();
      }
    });
  }
}
