import { createConnection, type Socket } from 'node:net';
import { QubesDbError, QubesDbProtocolError } from './errors.ts';
import {
  describeRejection,
  encodeHeader,
  encodeMessage,
  isValidPath,
  msgName,
  QdbFrameReader,
  type QdbMessage,
  QdbMsg,
  type QdbMsgType,
} from './wire.ts';

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/** Consumes the replies to one request; returns true when the request is answered. */
type Collector = (message: QdbMessage) => boolean;

interface Pending {
  collect: Collector;
  fail: (error: Error) => void;
}

/**
 * A client of a daemon's local socket (what qubesd's `qubesdb` Python module and
 * `qubesdb-read`/`-write` do in dom0, libqubesdb's qdb-client.c): one request at a
 * time, `RESP_WATCH` events set aside for `onWatch` whenever they arrive.
 * For lab scripts that drive our dom0 daemon from another process.
 */
export class QubesDbLocalClient {
  readonly #socket: Socket;
  readonly #reader = new QdbFrameReader('local-reply');
  readonly #queue: { bytes: Uint8Array; pending: Pending }[] = [];
  readonly #watchListeners = new Set<(path: string) => void>();
  #current: Pending | undefined;
  #failure: Error | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => {
      for (const event of this.#reader.push(chunk)) {
        if (event.kind === 'invalid') {
          this.#fail(new QubesDbProtocolError(0, event.reason, `invalid reply: ${describeRejection(event)}`));
          return;
        }
        this.#onMessage(event.message);
      }
    });
    socket.on('error', (error: Error) => this.#fail(error));
    socket.on('close', () =>
      this.#fail(new QubesDbError('local socket', 'ECONNRESET', '', 'the daemon closed the connection')),
    );
  }

  static connect(path: string): Promise<QubesDbLocalClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new QubesDbLocalClient(socket));
      });
    });
  }

  /** Called with the changed path for each RESP_WATCH. */
  onWatch(listener: (path: string) => void): () => void {
    this.#watchListeners.add(listener);
    return () => this.#watchListeners.delete(listener);
  }

  async read(path: string): Promise<string | undefined> {
    const value = await this.readBytes(path);
    return value === undefined ? undefined : textDecoder.decode(value);
  }

  readBytes(path: string): Promise<Uint8Array | undefined> {
    return this.#request<Uint8Array | undefined>(
      'read',
      path,
      encodeHeader(QdbMsg.CMD_READ, checked('read', path), 0),
      (done) => (m) => {
        if (m.header.type === QdbMsg.RESP_READ) done.resolve(m.data);
        else if (m.header.type === QdbMsg.RESP_ERROR_NOENT) done.resolve(undefined);
        else done.reject(unexpected('read', path, m.header.type));
        return true;
      },
    );
  }

  write(path: string, value: string | Uint8Array): Promise<void> {
    const bytes = typeof value === 'string' ? textEncoder.encode(value) : value;
    const message = encodeMessage(QdbMsg.CMD_WRITE, checked('write', path), bytes);
    return this.#request<void>('write', path, message, (done) => (m) => {
      if (m.header.type === QdbMsg.RESP_OK) done.resolve();
      else
        done.reject(
          new QubesDbError('write', 'EINVAL', path, `the daemon answered ${msgName(m.header.type)}`),
        );
      return true;
    });
  }

  /** False when nothing matched (RESP_ERROR_NOENT). */
  rm(path: string): Promise<boolean> {
    return this.#request<boolean>(
      'rm',
      path,
      encodeHeader(QdbMsg.CMD_RM, checked('rm', path), 0),
      (done) => (m) => {
        if (m.header.type === QdbMsg.RESP_OK) done.resolve(true);
        else if (m.header.type === QdbMsg.RESP_ERROR_NOENT) done.resolve(false);
        else
          done.reject(
            new QubesDbError('rm', 'EACCES', path, `the daemon answered ${msgName(m.header.type)}`),
          );
        return true;
      },
    );
  }

  list(prefix = ''): Promise<string[]> {
    const paths: string[] = [];
    return this.#request<string[]>(
      'list',
      prefix,
      encodeHeader(QdbMsg.CMD_LIST, checked('list', prefix), 0),
      (done) => (m) => {
        if (m.header.type !== QdbMsg.RESP_LIST) {
          done.reject(unexpected('list', prefix, m.header.type));
          return true;
        }
        if (m.header.path === '') {
          done.resolve(paths);
          return true;
        }
        paths.push(m.header.path);
        return false;
      },
    );
  }

  multiread(prefix = ''): Promise<Map<string, string>> {
    const entries = new Map<string, string>();
    const message = encodeHeader(QdbMsg.CMD_MULTIREAD, checked('multiread', prefix), 0);
    return this.#request<Map<string, string>>('multiread', prefix, message, (done) => (m) => {
      if (m.header.type !== QdbMsg.RESP_MULTIREAD) {
        done.reject(unexpected('multiread', prefix, m.header.type));
        return true;
      }
      if (m.header.path === '') {
        done.resolve(entries);
        return true;
      }
      entries.set(m.header.path, textDecoder.decode(m.data));
      return false;
    });
  }

  watch(path: string): Promise<void> {
    return this.#simple('watch', path, QdbMsg.CMD_WATCH).then(() => undefined);
  }

  /** False when no such watch was registered. */
  unwatch(path: string): Promise<boolean> {
    return this.#simple('unwatch', path, QdbMsg.CMD_UNWATCH);
  }

  close(): void {
    this.#socket.end();
  }

  #simple(operation: string, path: string, type: QdbMsgType): Promise<boolean> {
    return this.#request<boolean>(
      operation,
      path,
      encodeHeader(type, checked(operation, path), 0),
      (done) => (m) => {
        if (m.header.type === QdbMsg.RESP_OK) done.resolve(true);
        else if (m.header.type === QdbMsg.RESP_ERROR_NOENT) done.resolve(false);
        else
          done.reject(
            new QubesDbError(operation, 'EIO', path, `the daemon answered ${msgName(m.header.type)}`),
          );
        return true;
      },
    );
  }

  #request<T>(
    operation: string,
    path: string,
    bytes: Uint8Array,
    makeCollector: (done: { resolve: (value: T) => void; reject: (error: Error) => void }) => Collector,
  ): Promise<T> {
    if (this.#failure) {
      return Promise.reject(
        new QubesDbError(operation, 'ECLOSED', path, this.#failure.message, { cause: this.#failure }),
      );
    }
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { collect: makeCollector({ resolve, reject }), fail: reject };
      this.#queue.push({ bytes, pending });
      this.#next();
    });
  }

  #next(): void {
    if (this.#current) return;
    const item = this.#queue.shift();
    if (!item) return;
    this.#current = item.pending;
    this.#socket.write(item.bytes);
  }

  #onMessage(message: QdbMessage): void {
    if (message.header.type === QdbMsg.RESP_WATCH) {
      for (const listener of [...this.#watchListeners]) listener(message.header.path);
      return;
    }
    const current = this.#current;
    if (!current) {
      this.#fail(
        new QubesDbProtocolError(0, 'unexpected-reply', `${msgName(message.header.type)} with no request`),
      );
      return;
    }
    if (current.collect(message)) {
      this.#current = undefined;
      this.#next();
    }
  }

  #fail(error: Error): void {
    if (this.#failure) return;
    this.#failure = error;
    this.#current?.fail(error);
    this.#current = undefined;
    for (const item of this.#queue.splice(0)) item.pending.fail(error);
    this.#socket.destroy();
  }
}

function checked(operation: string, path: string): string {
  if (!isValidPath(path)) throw new QubesDbError(operation, 'EINVAL', path, 'not a valid QubesDB path');
  return path;
}

function unexpected(operation: string, path: string, type: number): Error {
  return new QubesDbError(operation, 'EPROTO', path, `unexpected ${msgName(type)}`);
}
