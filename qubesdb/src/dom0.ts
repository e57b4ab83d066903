import type { VchanStream, VchanTransport } from '@moat/vchan';
import { checkedWrite, QubesDbError } from './errors.ts';
import { type HandlerVerdict, QdbConnection } from './link.ts';
import { QdbStore } from './store.ts';
import { bufferedIterator, type WatchListener, WatchSet } from './watches.ts';
import {
  encodeHeader,
  encodeMessage,
  isValidPath,
  isValidValue,
  msgName,
  type QdbMessage,
  QdbMsg,
  type QdbMsgType,
  QUBESDB_VCHAN_PORT,
} from './wire.ts';

export interface QubesDbDaemonOptions {
  /** The VM this database belongs to (`qubesdb-daemon <domid> <name>`). */
  vmDomain: number;
  vmName?: string;
  transport: VchanTransport;
  /**
   * Initial contents, e.g. the keys qubesd writes before starting the VM (QubesOS/qubes-core-admin
   * @ 1ad5f9b84dc1 qubes/vm/qubesvm.py `create_qdb_entries`).
   */
  initial?: Iterable<readonly [string, string | Uint8Array]>;
  maxEntries?: number;
  log?: (line: string) => void;
}

/** What happened on the link to the VM, for lab scripts and logs. */
export type QubesDbDaemonEvent =
  | { kind: 'listening' }
  | { kind: 'connected' }
  | { kind: 'synchronised'; entries: number }
  | { kind: 'vm-write'; path: string }
  | { kind: 'vm-rm'; path: string }
  | { kind: 'disconnected'; error?: Error };

const textDecoder = new TextDecoder();

/**
 * dom0's side of QubesDB for one VM, for the lab: holds the authoritative database,
 * serves the VM as vchan server on port 111, answers its initial MULTIREAD with the
 * whole database in reverse order, and from then on forwards every write and removal
 * made through this API, as `qubesdb-daemon <domid> <name>` does for qubesd's writes.
 *
 * Written from db-cmds.c/db-daemon.c (the dom0 branch), not from our VM side: a
 * message the C daemon treats as fatal ends this connection (with a
 * QubesDbProtocolError in the 'disconnected' event), and the daemon listens again for
 * the VM's next connection.
 */
export class QubesDbDaemon {
  readonly vmDomain: number;
  readonly vmName: string | undefined;
  readonly #store: QdbStore;
  readonly #watches: WatchSet;
  readonly #transport: VchanTransport;
  readonly #log: (line: string) => void;
  readonly #eventListeners = new Set<(event: QubesDbDaemonEvent) => void>();
  #connection: QdbConnection | undefined;
  #stream: VchanStream | undefined;
  /** `remote_connected`: the VM has its dump, so changes are forwarded. */
  #remoteConnected = false;
  #stopped = false;
  #serving: Promise<void> | undefined;
  readonly stats = { connections: 0, protocolErrors: 0, errorResponses: 0, forwarded: 0 };

  constructor(options: QubesDbDaemonOptions) {
    this.vmDomain = options.vmDomain;
    this.vmName = options.vmName;
    this.#transport = options.transport;
    this.#log =
      options.log ?? ((line) => process.stderr.write(`qubesdb-daemon(${options.vmDomain}): ${line}\n`));
    this.#store = new QdbStore({ maxEntries: options.maxEntries });
    this.#watches = new WatchSet((error, path) =>
      this.#log(`a watch listener for ${path} threw: ${String(error)}`),
    );
    for (const [path, value] of options.initial ?? []) this.#writeLocal(path, value, false);
  }

  /**
   * Starts serving the VM: listens on port 111 for it, and listens again whenever a
   * connection ends, until `stop()`. Resolves once the first listener is up.
   */
  async start(): Promise<void> {
    if (this.#serving) return;
    let firstUp!: () => void;
    let firstFailed!: (error: Error) => void;
    const up = new Promise<void>((resolve, reject) => {
      firstUp = resolve;
      firstFailed = reject;
    });
    this.#serving = this.#serve(firstUp, firstFailed);
    await up;
  }

  /** Stops listening and closes the VM's connection. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#connection?.close();
    this.#stream?.destroy();
    await this.#serving?.catch(() => undefined);
  }

  /** True while the VM holds a synchronised replica (writes are being forwarded). */
  get vmSynchronised(): boolean {
    return this.#remoteConnected;
  }

  onEvent(listener: (event: QubesDbDaemonEvent) => void): () => void {
    this.#eventListeners.add(listener);
    return () => this.#eventListeners.delete(listener);
  }

  /** Resolves with the next event of `kind` (e.g. 'synchronised'); rejects after `timeoutMs`. */
  nextEvent<K extends QubesDbDaemonEvent['kind']>(
    kind: K,
    timeoutMs: number,
  ): Promise<Extract<QubesDbDaemonEvent, { kind: K }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new QubesDbError('nextEvent', 'ETIMEDOUT', kind, `no '${kind}' within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.onEvent((event) => {
        if (event.kind !== kind) return;
        clearTimeout(timer);
        off();
        resolve(event as Extract<QubesDbDaemonEvent, { kind: K }>);
      });
    });
  }

  // ---- the qubesd-facing API (what qubesd does through the local socket) ----

  read(path: string): string | undefined {
    const value = this.#store.read(path);
    return value === undefined ? undefined : textDecoder.decode(value);
  }

  readBytes(path: string): Uint8Array | undefined {
    return this.#store.read(path);
  }

  list(prefix = ''): string[] {
    return this.#store.list(prefix);
  }

  /** Entries under `prefix` as raw bytes, sorted by path. */
  entries(prefix = ''): [string, Uint8Array][] {
    return this.#store.entries(prefix);
  }

  multiread(prefix = ''): Map<string, string> {
    return new Map(this.#store.entries(prefix).map(([p, v]) => [p, textDecoder.decode(v)]));
  }

  /** Writes and, once the VM is synchronised, forwards `QDB_CMD_WRITE` to it. */
  write(path: string, value: string | Uint8Array): void {
    this.#writeLocal(path, value, true);
  }

  /** Removes (a subtree when `path` ends with `/`) and forwards `QDB_CMD_RM`. False when nothing matched. */
  rm(path: string): boolean {
    if (!isValidPath(path)) throw new QubesDbError('rm', 'EINVAL', path, 'not a valid QubesDB path');
    const removed = this.#store.remove(path);
    if (removed.length === 0) return false;
    if (this.#remoteConnected) this.#forward(encodeHeader(QdbMsg.CMD_RM, path, 0));
    this.#watches.fire(path);
    return true;
  }

  /**
   * What qubesd does to publish firewall rules (net.py): remove `base/`, write each
   * rule under it, then write `base` empty to mark the subtree complete.
   */
  commit(base: string, entries: Iterable<readonly [string, string]>): void {
    const key = base.endsWith('/') ? base.slice(0, -1) : base;
    this.rm(`${key}/`);
    for (const [name, value] of entries) this.write(`${key}/${name}`, value);
    this.write(key, '');
  }

  watch(path: string, listener: WatchListener): () => void {
    return this.#watches.add(path, listener);
  }

  watches(path: string, options: { signal?: AbortSignal } = {}): AsyncIterableIterator<string> {
    return bufferedIterator<string>((push) => this.#watches.add(path, push), {
      limit: 1024,
      signal: options.signal,
      what: 'watch',
    });
  }

  #writeLocal(path: string, value: string | Uint8Array, forward: boolean): void {
    const bytes = checkedWrite(path, value);
    if (this.#store.write(path, bytes) !== 'ok')
      throw new QubesDbError('write', 'ENOSPC', path, 'the database is full');
    if (forward && this.#remoteConnected) this.#forward(encodeMessage(QdbMsg.CMD_WRITE, path, bytes));
    this.#watches.fire(path);
  }

  #forward(message: Uint8Array): void {
    this.stats.forwarded++;
    this.#connection?.send(message);
  }

  async #serve(firstUp: () => void, firstFailed: (error: Error) => void): Promise<void> {
    let first = true;
    while (!this.#stopped) {
      let stream: VchanStream;
      try {
        // libvchan_server_init(vm, 111, 4096, 4096)
        stream = await this.#transport.listen({
          peer: this.vmDomain,
          port: QUBESDB_VCHAN_PORT,
          readMin: 4096,
          writeMin: 4096,
        });
      } catch (error) {
        const failure = error instanceof Error ? error : new Error(String(error));
        if (first) firstFailed(failure);
        else this.#log(`cannot listen again: ${failure.message}`);
        return;
      }
      this.#stream = stream;
      this.#emit({ kind: 'listening' });
      if (first) {
        first = false;
        firstUp();
      }
      if (this.#stopped) {
        stream.destroy();
        return;
      }
      try {
        await stream.whenConnected();
      } catch {
        continue; // closed while waiting (stop(), or the socket went away)
      }
      this.stats.connections++;
      this.#emit({ kind: 'connected' });
      this.#remoteConnected = false;
      const connection = new QdbConnection(stream, {
        peerDomain: this.vmDomain,
        // The dump of a full database is queued at once (the C daemon buffers it too).
        maxPendingBytes: 32 * 1024 * 1024,
        onMessage: (message) => this.#onMessage(message),
      });
      this.#connection = connection;
      const end = await connection.ended;
      this.#connection = undefined;
      this.#stream = undefined;
      // "do not send further updates, until VM's daemon restart and re-sync"
      this.#remoteConnected = false;
      if (end.error) {
        this.stats.protocolErrors++;
        this.#log(end.error.message);
      }
      this.#emit({ kind: 'disconnected', error: end.error });
    }
  }

  /** One message from the VM, as `handle_vchan_data` in the dom0 daemon handles it. */
  #onMessage(message: QdbMessage): HandlerVerdict {
    const { header, data } = message;
    const path = header.path;
    switch (header.type) {
      case QdbMsg.CMD_WRITE: {
        // handle_write(client = NULL): bad bytes cost a RESP_ERROR; a refused path is fatal.
        if (!isValidValue(data)) {
          this.#respond(QdbMsg.RESP_ERROR, path);
          return undefined;
        }
        const result = this.#store.write(path, data);
        if (result !== 'ok') {
          this.#respond(QdbMsg.RESP_ERROR, path);
          return {
            reason: 'write-failed',
            detail: `the VM wrote to ${JSON.stringify(path)}, which cannot be stored`,
          };
        }
        this.#respond(QdbMsg.RESP_OK, path);
        this.#watches.fire(path);
        this.#emit({ kind: 'vm-write', path });
        return undefined;
      }
      case QdbMsg.CMD_MULTIREAD: {
        if (this.#remoteConnected) {
          this.#respond(QdbMsg.RESP_ERROR, path);
          return {
            reason: 'spurious-multiread',
            detail: 'only one QDB_CMD_MULTIREAD is allowed per connection',
          };
        }
        if (header.dataLength > 0) {
          // handle_multiread's recovery path: RESP_ERROR, yet the caller then marks the
          // remote connected all the same. Kept as in C.
          this.#respond(QdbMsg.RESP_ERROR, path);
        } else {
          this.#dump(path);
        }
        this.#remoteConnected = true;
        this.#emit({ kind: 'synchronised', entries: this.#store.size });
        return undefined;
      }
      case QdbMsg.CMD_RM: {
        if (header.dataLength > 0) {
          this.#respond(QdbMsg.RESP_ERROR, path);
          return undefined;
        }
        const removed = this.#store.remove(path);
        if (removed.length === 0) {
          this.#respond(QdbMsg.RESP_ERROR_NOENT, path);
          return {
            reason: 'rm-noent',
            detail: `the VM removed ${JSON.stringify(path)}, which does not exist`,
          };
        }
        this.#respond(QdbMsg.RESP_OK, path);
        this.#watches.fire(path);
        this.#emit({ kind: 'vm-rm', path });
        return undefined;
      }
      case QdbMsg.RESP_OK:
        return undefined;
      case QdbMsg.RESP_ERROR:
        this.stats.errorResponses++;
        this.#log(`the VM answered QDB_RESP_ERROR for ${path || '(empty path)'}`);
        if (header.dataLength > 0)
          return { reason: 'error-with-data', detail: 'QDB_RESP_ERROR carried data' };
        return undefined;
      case QdbMsg.RESP_MULTIREAD:
        // dom0 never requests a dump from the VM.
        return { reason: 'spurious-multiread-response', detail: 'QDB_RESP_MULTIREAD was not requested' };
      default:
        return { reason: 'unexpected-type', detail: `unexpected ${msgName(header.type)} from the VM` };
    }
  }

  /** handle_multiread: matching entries (all of them in reverse order for ""), then the terminator. */
  #dump(prefix: string): void {
    const entries = prefix === '' ? this.#store.dumpReverse() : this.#store.entries(prefix);
    for (const [path, value] of entries) {
      this.#connection?.send(encodeMessage(QdbMsg.RESP_MULTIREAD, path, value));
    }
    this.#respond(QdbMsg.RESP_MULTIREAD, '');
  }

  #respond(type: QdbMsgType, path: string): void {
    this.#connection?.send(encodeHeader(type, path, 0));
  }

  #emit(event: QubesDbDaemonEvent): void {
    for (const listener of [...this.#eventListeners]) {
      try {
        listener(event);
      } catch (error) {
        this.#log(`an event listener threw: ${String(error)}`);
      }
    }
  }
}
