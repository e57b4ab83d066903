import { TransportListeners, type XenstoreTransport } from '../transport.ts';
import { XENSTORE_PAYLOAD_MAX } from '../wire.ts';
import type { SimConnection, XenstoredSim } from './xenstored.ts';

/** In-process transport to the sim; replies arrive asynchronously (a microtask later), like real I/O. */
export class SimTransport implements XenstoreTransport {
  readonly description: string;
  readonly maxRequestPayload = XENSTORE_PAYLOAD_MAX;
  readonly connection: SimConnection;
  private readonly listeners = new TransportListeners();
  private outbox: Uint8Array[] = [];
  private scheduled = false;
  private ended = false;

  constructor(
    private readonly sim: XenstoredSim,
    domid: number,
    kind: 'domain' | 'socket',
  ) {
    this.description = kind === 'socket' ? 'sim socket' : `sim dom${domid}`;
    this.connection = sim.attach(
      domid,
      kind,
      (m) => this.queue(m),
      () => this.finish(),
    );
  }

  send(message: Uint8Array): void {
    if (this.ended) throw new Error(`${this.description} is closed`);
    this.sim.receive(this.connection, message.slice());
  }

  onData(listener: (chunk: Uint8Array) => void): () => void {
    return this.listeners.onData(listener);
  }

  onClose(listener: (error?: Error) => void): () => void {
    return this.listeners.onClose(listener);
  }

  close(): void {
    this.sim.detach(this.connection);
  }

  private queue(message: Uint8Array): void {
    this.outbox.push(message);
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.outbox;
    this.outbox = [];
    this.sim.flushed(this.connection);
    for (const m of batch) this.listeners.data(m);
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    queueMicrotask(() => {
      this.flush();
      this.listeners.close();
    });
  }
}
