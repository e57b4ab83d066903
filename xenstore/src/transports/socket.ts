/**
 * The xenstored unix socket (dom0 and other privileged tools). The path is
 * $XENSTORED_PATH, else /var/run/xenstored/socket (tools/libs/store/xs.c xs_daemon_socket).
 */
import { createConnection, type Socket } from 'node:net';
import { TransportListeners, type XenstoreTransport } from '../transport.ts';
import { XENSTORE_PAYLOAD_MAX } from '../wire.ts';

export const DEFAULT_XENSTORED_SOCKET = '/var/run/xenstored/socket';

export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.XENSTORED_PATH || DEFAULT_XENSTORED_SOCKET;
}

export class SocketTransport implements XenstoreTransport {
  readonly maxRequestPayload = XENSTORE_PAYLOAD_MAX;
  private readonly listeners = new TransportListeners();
  private lastError: Error | undefined;

  constructor(
    private readonly socket: Socket,
    readonly description: string,
  ) {
    socket.on('data', (chunk: Buffer) => this.listeners.data(chunk));
    socket.on('error', (error) => {
      this.lastError = error;
    });
    socket.on('close', () => this.listeners.close(this.lastError));
  }

  /** Connects to xenstored's socket; rejects when nothing listens there. */
  static connect(
    path: string = defaultSocketPath(),
    options: { timeoutMs?: number } = {},
  ): Promise<SocketTransport> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ path });
      const timer =
        options.timeoutMs !== undefined
          ? setTimeout(() => {
              socket.destroy();
              reject(new Error(`connecting to xenstored at ${path} timed out after ${options.timeoutMs} ms`));
            }, options.timeoutMs)
          : undefined;
      socket.once('error', (error) => {
        if (timer) clearTimeout(timer);
        reject(error);
      });
      socket.once('connect', () => {
        if (timer) clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new SocketTransport(socket, `socket ${path}`));
      });
    });
  }

  send(message: Uint8Array): void {
    if (this.listeners.closed || this.socket.destroyed) throw new Error(`${this.description} is closed`);
    this.socket.write(message);
  }

  onData(listener: (chunk: Uint8Array) => void): () => void {
    return this.listeners.onData(listener);
  }

  onClose(listener: (error?: Error) => void): () => void {
    return this.listeners.onClose(listener);
  }

  close(): void {
    this.socket.destroy();
  }
}
