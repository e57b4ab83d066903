/**
 * The only I/O qrexec needs: vchan byte streams to another domain. On Xen this is libxenvchan
 * (through @moat/vchan), in host tests Qubes' vchan-socket layout or the in-memory network
 * below. All domain arguments are the REMOTE domain, as in Qubes' `libvchan.h`.
 */
import { Duplex } from 'node:stream';
import { QrexecProtocolError } from './errors.ts';

export interface RingSizes {
  /** Minimum size of the ring we read from (libvchan `read_min`). */
  read: number;
  /** Minimum size of the ring we write to (libvchan `write_min`). */
  write: number;
}

export interface VchanListener {
  /** The stream, once the client has connected. Rejects if the listener is closed first. */
  readonly accepted: Promise<Duplex>;
  /** Withdraws the endpoint if no client connected yet; a connected stream is unaffected. */
  close(): void;
}

export interface VchanEndpoint {
  /**
   * Becomes the vchan server for `(remote, port)`. Resolves once a client may connect (the
   * Xenstore entry or socket exists), so callers can tell the peer to connect right after.
   */
  listen(remote: number, port: number, rings: RingSizes): Promise<VchanListener>;
  /** Connects as vchan client to `remote`'s server on `port`, waiting up to `timeoutMs` for it to appear. */
  connect(remote: number, port: number, timeoutMs: number): Promise<Duplex>;
}

/**
 * Two connected in-memory Duplex ends with backpressure (a write completes when the peer's
 * reader has room). Ending one side is EOF on the other; destroying one side is EOF there too,
 * as a vanished vchan peer looks to libvchan users.
 */
export function duplexPair(highWaterMark = 65536): [Duplex, Duplex] {
  let a!: Duplex;
  let b!: Duplex;
  const pending = new Map<Duplex, () => void>();
  const make = (peer: () => Duplex) =>
    new Duplex({
      highWaterMark,
      read() {
        const resume = pending.get(this);
        if (resume) {
          pending.delete(this);
          resume();
        }
      },
      write(chunk: Buffer, _enc, callback) {
        const other = peer();
        if (other.destroyed || other.readableEnded) {
          callback(new Error('EPIPE: peer closed'));
          return;
        }
        if (other.push(chunk)) callback();
        else pending.set(other, () => callback());
      },
      final(callback) {
        const other = peer();
        if (!other.destroyed) other.push(null);
        callback();
      },
      destroy(error, callback) {
        const other = peer();
        if (!other.destroyed && !other.readableEnded) other.push(null);
        const resume = pending.get(other);
        if (resume) {
          pending.delete(other);
          resume();
        }
        callback(error);
      },
    });
  a = make(() => b);
  b = make(() => a);
  return [a, b];
}

/**
 * An in-process "Xen" for tests: every domain gets a `VchanEndpoint`; a server entry is keyed
 * `(server, client, port)` like vchan-socket's `vchan.<server>.<client>.<port>.sock`.
 */
export class MemoryVchanNetwork {
  private readonly servers = new Map<string, (stream: Duplex) => void>();
  private readonly waiters = new Map<string, Array<() => void>>();

  endpoint(local: number): VchanEndpoint {
    return {
      listen: async (remote, port) => this.listen(local, remote, port),
      connect: (remote, port, timeoutMs) => this.connect(local, remote, port, timeoutMs),
    };
  }

  /** Server entries currently advertised (for tests checking cleanup). */
  advertised(): string[] {
    return [...this.servers.keys()];
  }

  private listen(server: number, client: number, port: number): VchanListener {
    const key = `${server}.${client}.${port}`;
    if (this.servers.has(key))
      throw new QrexecProtocolError('vchan listen', 'transport-error', `${key} in use`);
    let resolve!: (d: Duplex) => void;
    let reject!: (e: Error) => void;
    const accepted = new Promise<Duplex>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    accepted.catch(() => undefined); // a closed, never-awaited listener is not an unhandled rejection
    this.servers.set(key, resolve);
    for (const wake of this.waiters.get(key) ?? []) wake();
    this.waiters.delete(key);
    return {
      accepted,
      close: () => {
        if (this.servers.get(key) === resolve) {
          this.servers.delete(key);
          reject(
            new QrexecProtocolError(
              'vchan listen',
              'transport-error',
              `${key} closed before a client connected`,
            ),
          );
        }
      },
    };
  }

  private async connect(client: number, server: number, port: number, timeoutMs: number): Promise<Duplex> {
    const key = `${server}.${client}.${port}`;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const accept = this.servers.get(key);
      if (accept) {
        // Like libvchan-xen, the entry is removed once a client connected: one client per server.
        this.servers.delete(key);
        const [serverEnd, clientEnd] = duplexPair();
        accept(serverEnd);
        return clientEnd;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new QrexecProtocolError('vchan connect', 'timeout', `no server ${key}`, server);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        const list = this.waiters.get(key) ?? [];
        list.push(done);
        this.waiters.set(key, list);
        const waiters = this.waiters;
        function done() {
          clearTimeout(timer);
          const current = waiters.get(key);
          if (current) {
            const rest = current.filter((w) => w !== done);
            if (rest.length) waiters.set(key, rest);
            else waiters.delete(key);
          }
          resolve();
        }
      });
    }
  }
}
