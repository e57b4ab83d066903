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
