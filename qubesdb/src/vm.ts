import type { VchanTransport } from '@moat/vchan';
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
  QUBESDB_VCHAN_PORT,
} from './wire.ts';

/** The subtree under `base/` as it was when `base` was committed (an empty write to `base`). */
export interface QubesDbSnapshot {
  /** The base key, e.g. `/qubes-firewall/10.137.0.5`. */
  readonly base: string;
  /** Values by path relative to `base/`, e.g. `policy`, `0000`. Sorted. */
  readonly entries: ReadonlyMap<string, string>;
  /** Increases with every commit seen by this replica. */
  readonly sequence: number;
}

export interface ConnectQubesDbOptions {
  transport: VchanTransport;
  /** The admin domain holding the authoritative database. Default 0 (dom0). */
  dom0Domain?: number;
  /** Give up the first connection + synchronisation after this long. Default: no limit. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * After a synchronised link closes, reconnect and re-request the dump without
   * clearing the replica (the C VM daemon does this when dom0's daemon restarts). Default true.
   */
  reconnect?: boolean;
  /** Give up a reconnection after this long (the replica then ends with the error). Default: no limit. */
  reconnectTimeoutMs?: number;
  /** Entries the replica accepts; more is a protocol error. Default 65536. */
  maxEntries?: number;
  /** Where diagnostics go. Default: stderr. */
  log?: (line: string) => void;
}

const textDecoder = new TextDecoder('utf-8', { fatal: false });

/**
 * QubesDB inside our VMs, without a daemon process: the vchan client to dom0's
 * `qubesdb-daemon` on port 111 (QubesOS/qubes-core-qubesdb @ aeb3c8d84866 daemon/db-daemon.c,
 * daemon/db-cmds.c `handle_vchan_data`), with the whole database
 * mirrored in memory. dom0 pushes writes and removals; we apply them, answer
 * `RESP_OK` as the C VM daemon does, and fire watches. Our own writes and removals go
 * to the replica at once and are forwarded to dom0.
 */
export class QubesDb {
  readonly #store: QdbStore;
  readonly #watches: WatchSet;
  readonly #commitListeners = new Set<{ base: string; listener: (snapshot: QubesDbSnapshot) => void }>();
  readonly #commits = new Map<string, QubesDbSnapshot>();
  readonly #log: (line: string) => void;
  readonly #options: ConnectQubesDbOptions;
  readonly #endListeners = new Set<(error?: Error) => void>();
  #connection: QdbConnection | undefined;
  #multireadRequested = false;
  #synchronised = false;
  #closed = false;
  #sequence = 0;
  /** Aborts a reconnection in progress when the replica is closed. */
  readonly #lifetime = new AbortController();
  #syncWaiter: { resolve: () => void; reject: (error: Error) => void } | undefined;
  /** Counters for diagnostics; never reset. */
  readonly stats = {
    reconnects: 0,
    errorResponses: 0,
    protocolErrors: 0,
    pushedWrites: 0,
    pushedRemovals: 0,
  };

  private constructor(options: ConnectQubesDbOptions) {
    this.#options = options;
    this.#log = options.log ?? ((line) => process.stderr.write(`qubesdb: ${line}\n`));
    this.#store = new QdbStore({ maxEntries: options.maxEntries });
    this.#watches = new WatchSet((error, path) =>
      this.#log(`a watch listener for ${path} threw: ${String(error)}`),
    );
  }

  /** Connects to dom0, loads the whole database, and resolves once synchronised. */
  static async connect(options: ConnectQubesDbOptions): Promise<QubesDb> {
    const db = new QubesDb(options);
    await db.#connectOnce(options.timeoutMs, options.signal);
    return db;
  }

  get synchronised(): boolean {
    return this.#synchronised;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The value as text (UTF-8), or undefined when absent. */
  read(path: string): string | undefined {
    const value = this.#store.read(path);
    return value === undefined ? undefined : textDecoder.decode(value);
  }

  readBytes(path: string): Uint8Array | undefined {
    return this.#store.read(path);
  }

  /** Paths starting with `prefix` (raw string prefix, as QDB_CMD_LIST), sorted. */
  list(prefix = ''): string[] {
    return this.#store.list(prefix);
  }

  /** Entries under `prefix` (as QDB_CMD_MULTIREAD), sorted by path. */
  multiread(prefix = ''): Map<string, string> {
    return new Map(this.#store.entries(prefix).map(([path, value]) => [path, textDecoder.decode(value)]));
  }

  /**
   * Writes locally and forwards `QDB_CMD_WRITE` to dom0 (which answers RESP_OK).
   * Throws QubesDbError for what the daemon would refuse: a path not starting with `/`,
   * ending with `/` or with bad characters, a value over 3071 bytes or containing NUL.
   */
  write(path: string, value: string | Uint8Array): void {
    this.#checkOpen('write', path);
    const bytes = checkedWrite(path, value);
    const result = this.#store.write(path, bytes);
    if (result !== 'ok') throw new QubesDbError('write', 'ENOSPC', path, 'the replica is full');
    this.#connection?.send(encodeMessage(QdbMsg.CMD_WRITE, path, bytes));
    this.#afterWrite(path, bytes);
  }

  /**
   * Removes `path` (or everything under it when it ends with `/`) locally and forwards
   * `QDB_CMD_RM` to dom0. Returns false when nothing matched (the daemon's NOENT).
   */
  rm(path: string): boolean {
    this.#checkOpen('rm', path);
    if (!isValidPath(path)) throw new QubesDbError('rm', 'EINVAL', path, 'not a valid QubesDB path');
    const removed = this.#store.remove(path);
    if (removed.length === 0) return false;
    this.#connection?.send(encodeHeader(QdbMsg.CMD_RM, path, 0));
    this.#watches.fire(path);
    return true;
  }

  /**
   * Calls `listener` with the changed path after each write or removal matching `path`
   * (exact, or a prefix when `path` ends with `/`). Returns an unsubscribe function.
   */
  watch(path: string, listener: WatchListener): () => void {
    return this.#watches.add(path, listener);
  }

  /** The same as `watch`, as an async iterator (ends on `close()`, or fails when 1024 events behind). */
  watches(path: string, options: { signal?: AbortSignal } = {}): AsyncIterableIterator<string> {
    if (!isValidPath(path)) throw new QubesDbError('watch', 'EINVAL', path, 'not a valid QubesDB path');
    return bufferedIterator<string>(
      (push, end) => {
        const off = this.#watches.add(path, push);
        const onEnd = (error?: Error) => end(error);
        this.#endListeners.add(onEnd);
        return () => {
          off();
          this.#endListeners.delete(onEnd);
        };
      },
      { limit: 1024, signal: options.signal, what: 'watch' },
    );
  }

  /**
   * The firewall "commit" convention (qubes-core-admin net.py): dom0 rewrites the
   * subtree `base/…`, then writes `base` with an empty value. Returns the subtree as
   * it was at the latest commit, if any has been seen (the initial dump counts when
   * `base` was already committed).
   */
  latestCommit(base: string): QubesDbSnapshot | undefined {
    return this.#commits.get(stripSlash(base));
  }

  /** Resolves with the next commit of `base` (or the latest one, when `includeLatest`). */
  waitForCommit(
    base: string,
    options: { signal?: AbortSignal; timeoutMs?: number; includeLatest?: boolean } = {},
  ): Promise<QubesDbSnapshot> {
    const key = stripSlash(base);
    const latest = this.#commits.get(key);
    if (options.includeLatest && latest) return Promise.resolve(latest);
    return new Promise((resolve, reject) => {
      const entry = {
        base: key,
        listener: (snapshot: QubesDbSnapshot) => {
          cleanup();
          resolve(snapshot);
        },
      };
      const onEnd = (error?: Error) => {
        cleanup();
        reject(error ?? new QubesDbError('waitForCommit', 'ECLOSED', key, 'the database was closed'));
      };
      const onAbort = () => {
        cleanup();
        reject(
          new QubesDbError('waitForCommit', 'ECANCELED', key, 'aborted', { cause: options.signal?.reason }),
        );
      };
      const timer =
        options.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              cleanup();
              reject(
                new QubesDbError(
                  'waitForCommit',
                  'ETIMEDOUT',
                  key,
                  `no commit within ${options.timeoutMs} ms`,
                ),
              );
            }, options.timeoutMs);
      const cleanup = () => {
        this.#commitListeners.delete(entry);
        this.#endListeners.delete(onEnd);
        options.signal?.removeEventListener('abort', onAbort);
        if (timer) clearTimeout(timer);
      };
      if (this.#closed) {
        onEnd();
        return;
      }
      this.#commitListeners.add(entry);
      this.#endListeners.add(onEnd);
      options.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Every complete snapshot of `base`: first the latest commit (if any), then each new
   * one. A slow consumer only ever sees the newest snapshot (older ones are superseded).
   */
  commits(base: string, options: { signal?: AbortSignal } = {}): AsyncIterableIterator<QubesDbSnapshot> {
    const key = stripSlash(base);
    return bufferedIterator<QubesDbSnapshot>(
      (push, end) => {
        const entry = { base: key, listener: push };
        this.#commitListeners.add(entry);
        const latest = this.#commits.get(key);
        if (latest) push(latest);
        const onEnd = (error?: Error) => end(error);
        this.#endListeners.add(onEnd);
        return () => {
          this.#commitListeners.delete(entry);
          this.#endListeners.delete(onEnd);
        };
      },
      { limit: 1, coalesce: true, signal: options.signal, what: 'commits' },
    );
  }

  /** Called when the replica stops for good: `close()`, or a failed reconnect. */
  onEnd(listener: (error?: Error) => void): () => void {
    this.#endListeners.add(listener);
    return () => this.#endListeners.delete(listener);
  }

  /** Closes the link to dom0; the replica stays readable, watches and iterators end. */
  close(): void {
    this.#end(undefined);
  }

  #end(error: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#lifetime.abort();
    this.#connection?.close();
    this.#connection = undefined;
    for (const listener of [...this.#endListeners]) listener(error);
    this.#endListeners.clear();
  }

  async #connectOnce(timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<void> {
    const dom0 = this.#options.dom0Domain ?? 0;
    // close() must also stop a (re)connection that is still waiting for dom0.
    const stream = await this.#options.transport.connect({
      peer: dom0,
      port: QUBESDB_VCHAN_PORT,
      timeoutMs,
      signal: signal ? AbortSignal.any([signal, this.#lifetime.signal]) : this.#lifetime.signal,
    });
    if (this.#closed) {
      stream.destroy();
      throw new QubesDbError('connect', 'ECLOSED', '', 'the database was closed while connecting');
    }
    const connection = new QdbConnection(stream, { peerDomain: dom0, onMessage: (m) => this.#onMessage(m) });
    this.#connection = connection;
    const synced = new Promise<void>((resolve, reject) => {
      this.#syncWaiter = { resolve, reject };
    });
    // Initial synchronisation (db-cmds.c `request_full_db_sync`): an empty-path MULTIREAD, then
    // nothing else until the dump ends.
    this.#multireadRequested = true;
    connection.send(encodeHeader(QdbMsg.CMD_MULTIREAD, '', 0));
    void connection.ended.then((end) => this.#onConnectionEnd(connection, end.error));
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(
            () => connection.fail('sync-timeout', `no complete dump within ${timeoutMs} ms`),
            timeoutMs,
          );
    try {
      await synced;
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  #onConnectionEnd(connection: QdbConnection, error: Error | undefined): void {
    if (this.#connection !== connection) return;
    this.#connection = undefined;
    const wasSynchronised = !this.#multireadRequested;
    this.#multireadRequested = false;
    if (error) {
      this.stats.protocolErrors++;
      this.#log(error.message);
    }
    const waiter = this.#syncWaiter;
    this.#syncWaiter = undefined;
    if (waiter) {
      waiter.reject(
        error ??
          new QubesDbError('connect', 'ECONNRESET', '', 'dom0 closed the channel before the dump ended'),
      );
    }
    if (this.#closed) return;
    if (this.#options.reconnect === false || !wasSynchronised || !this.#synchronised) {
      this.#end(error);
      return;
    }
    // dom0's daemon restarted (or the link broke): reconnect and re-sync over the current replica.
    this.stats.reconnects++;
    this.#log(`link to dom0 lost${error ? ` (${error.message})` : ''}; reconnecting`);
    this.#connectOnce(this.#options.reconnectTimeoutMs, undefined).catch((reconnectError: unknown) => {
      this.#end(reconnectError instanceof Error ? reconnectError : new Error(String(reconnectError)));
    });
  }

  /** One message from dom0, handled as the C VM daemon's `handle_vchan_data` does. */
  #onMessage(message: QdbMessage): HandlerVerdict {
    const { header, data } = message;
    const path = header.path;
    switch (header.type) {
      case QdbMsg.CMD_WRITE: {
        if (!isValidValue(data)) {
          // verify_data failed: the C daemon answers RESP_ERROR and carries on.
          this.#reply(QdbMsg.RESP_ERROR, path);
          return undefined;
        }
        const result = this.#store.write(path, data);
        if (result !== 'ok') {
          this.#reply(QdbMsg.RESP_ERROR, path);
          return {
            reason: result === 'full' ? 'too-many-entries' : 'write-failed',
            detail: `cannot write ${path}`,
          };
        }
        this.stats.pushedWrites++;
        this.#reply(QdbMsg.RESP_OK, path);
        this.#afterWrite(path, data);
        return undefined;
      }
      case QdbMsg.CMD_RM: {
        if (header.dataLength > 0) {
          this.#reply(QdbMsg.RESP_ERROR, path);
          return undefined;
        }
        const removed = this.#store.remove(path);
        if (removed.length === 0) {
          this.#reply(QdbMsg.RESP_ERROR_NOENT, path);
          // "failed rm received from vchan is fatal - means some database de-synchronization"
          return { reason: 'rm-noent', detail: `dom0 removed ${path}, which the replica does not have` };
        }
        this.stats.pushedRemovals++;
        this.#reply(QdbMsg.RESP_OK, path);
        this.#watches.fire(path);
        return undefined;
      }
      case QdbMsg.CMD_MULTIREAD:
        // The VM side counts as connected from the start, so any MULTIREAD from dom0 is spurious.
        this.#reply(QdbMsg.RESP_ERROR, path);
        return { reason: 'spurious-multiread', detail: 'dom0 sent QDB_CMD_MULTIREAD to the VM' };
      case QdbMsg.RESP_OK:
        return undefined;
      case QdbMsg.RESP_ERROR:
        this.stats.errorResponses++;
        this.#log(`dom0 answered QDB_RESP_ERROR for ${path || '(empty path)'}`);
        if (header.dataLength > 0)
          return { reason: 'error-with-data', detail: 'QDB_RESP_ERROR carried data' };
        return undefined;
      case QdbMsg.RESP_MULTIREAD:
        return this.#onDumpEntry(path, data);
      default:
        return { reason: 'unexpected-type', detail: `unexpected ${msgName(header.type)} from dom0` };
    }
  }

  #onDumpEntry(path: string, data: Uint8Array): HandlerVerdict {
    if (!this.#multireadRequested) {
      return {
        reason: 'spurious-multiread-response',
        detail: `QDB_RESP_MULTIREAD for ${path} was not requested`,
      };
    }
    if (path === '') {
      this.#multireadRequested = false;
      this.#synchronised = true;
      this.#recordCommitsAfterDump();
      const waiter = this.#syncWaiter;
      this.#syncWaiter = undefined;
      waiter?.resolve();
      return undefined;
    }
    if (!isValidValue(data)) return { reason: 'invalid-value', detail: `the value of ${path} contains NUL` };
    const result = this.#store.write(path, data);
    if (result !== 'ok') {
      return {
        reason: result === 'full' ? 'too-many-entries' : 'write-failed',
        detail: `cannot insert ${path}`,
      };
    }
    this.#watches.fire(path);
    return undefined;
  }

  #reply(type: (typeof QdbMsg)[keyof typeof QdbMsg], path: string): void {
    this.#connection?.send(encodeHeader(type, path, 0));
  }

  #afterWrite(path: string, value: Uint8Array): void {
    this.#watches.fire(path);
    if (value.length === 0 && this.#synchronised) this.#recordCommit(path);
  }

  /** Bases already committed when we (re)synchronised are complete snapshots too. */
  #recordCommitsAfterDump(): void {
    for (const [path, value] of this.#store.entries()) {
      if (value.length === 0 && this.#store.list(`${path}/`).length > 0) this.#recordCommit(path);
    }
  }

  #recordCommit(base: string): void {
    const prefix = `${base}/`;
    const entries = new Map<string, string>();
    for (const [path, value] of this.#store.entries(prefix)) {
      entries.set(path.slice(prefix.length), textDecoder.decode(value));
    }
    const snapshot: QubesDbSnapshot = { base, entries, sequence: ++this.#sequence };
    this.#commits.set(base, snapshot);
    for (const entry of [...this.#commitListeners]) {
      if (entry.base === base) entry.listener(snapshot);
    }
  }

  #checkOpen(operation: string, path: string): void {
    if (this.#closed) throw new QubesDbError(operation, 'ECLOSED', path, 'the database was closed');
  }
}

/** Connects to dom0's QubesDB on port 111 and resolves once the replica is synchronised. */
export function connectQubesDb(options: ConnectQubesDbOptions): Promise<QubesDb> {
  return QubesDb.connect(options);
}

function stripSlash(base: string): string {
  return base.endsWith('/') ? base.slice(0, -1) : base;
}
