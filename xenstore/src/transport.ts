/**
 * What a xenstore client needs from a connection: send whole messages, receive bytes.
 * Implementations: the /dev/xen/xenbus device (domU), the xenstored unix socket (dom0),
 * the in-process XenstoredSim, or anything a test plugs in.
 */
export interface XenstoreTransport {
  /** For messages and diagnostics, e.g. `xenbus`, `socket /var/run/xenstored/socket`, `sim dom3`. */
  readonly description: string;
  /**
   * The largest request payload this path carries: 4096 (XENSTORE_PAYLOAD_MAX) for the
   * socket and the ring, 4080 for /dev/xen/xenbus (its buffer holds the header too).
   */
  readonly maxRequestPayload: number;
  /**
   * Sends one whole message (header + payload). Throws when the message is refused at once
   * (the xenbus device fails the write() for a watch xenstored refused, or an oversized
   * message); the client turns that into the request's error. Never partially sends.
   */
  send(message: Uint8Array): void;
  /** Bytes from the server in order, split or joined arbitrarily. Returns an unsubscribe function. */
  onData(listener: (chunk: Uint8Array) => void): () => void;
  /** Called once when the connection ends; `error` is absent for a clean close. */
  onClose(listener: (error?: Error) => void): () => void;
  /** Closes the connection; `onClose` listeners run (asynchronously is fine). */
  close(): void;
}

/** Opens a new connection each time it is called (e.g. one per client in a test). */
export type XenstoreTransportFactory = () => Promise<XenstoreTransport>;

/**
 * The data and close listeners every transport keeps. `close` runs the close listeners once
 * and then forgets every listener, so nothing reaches a listener after its transport closed.
 */
export class TransportListeners {
  private readonly dataListeners = new Set<(chunk: Uint8Array) => void>();
  private readonly closeListeners = new Set<(error?: Error) => void>();
  private ended = false;

  /** True once `close` has run. */
  get closed(): boolean {
    return this.ended;
  }

  onData(listener: (chunk: Uint8Array) => void): () => void {
    this.dataListeners.add(listener);
    return () => this.dataListeners.delete(listener);
  }

  onClose(listener: (error?: Error) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  data(chunk: Uint8Array): void {
    for (const l of this.dataListeners) l(chunk);
  }

  close(error?: Error): void {
    if (this.ended) return;
    this.ended = true;
    // A copy: a close listener may unsubscribe others (the client drops its subscriptions).
    const listeners = [...this.closeListeners];
    this.closeListeners.clear();
    this.dataListeners.clear();
    for (const l of listeners) l(error);
  }
}
