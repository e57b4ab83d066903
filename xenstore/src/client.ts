/**
 * xenstore-js: a client of the xenstore wire protocol over any XenstoreTransport.
 *
 * Requests are multiplexed by req_id (several may be in flight); replies are matched by id
 * and checked against the request's type. Replies are untrusted: a violation that loses
 * framing or matching (oversized length, unknown type, unknown req_id, wrong reply type)
 * closes the connection and fails every pending request; a malformed payload fails only its
 * request.
 */
import {
  XenstoreConnectionError,
  XenstoreError,
  XenstoreProtocolError,
  XenstoreTimeoutError,
  XenstoreUsageError,
} from './errors.ts';
import { checkArg, decimal, domidArg, expectOk, type RequestOptions, XenstoreOps } from './ops.ts';
import { XenstoreTransaction } from './transaction.ts';
import type { XenstoreTransport } from './transport.ts';
import { type WatchEvent, type WatchOptions, XenstoreWatch } from './watch.ts';
import {
  describeBytes,
  encodeMessage,
  isXsErrorName,
  joinStrings,
  type Message,
  MessageReader,
  parseOneString,
  splitStrings,
  typeName,
  XENSTORE_PAYLOAD_MAX,
  XsType,
} from './wire.ts';

export type { RequestOptions } from './ops.ts';
export { XenstoreOps } from './ops.ts';
export { XenstoreTransaction } from './transaction.ts';

export interface ClientOptions {
  /** Default timeout for every request (none when absent: xenstored may legitimately stall a domain). */
  timeoutMs?: number;
  /**
   * Requests whose caller gave up (timeout/abort) but whose reply has not come yet. Past this
   * bound the server is considered dead and the connection is closed.
   */
  maxAbandoned?: number;
}

export interface TransactionOptions extends RequestOptions {
  /** Attempts in all, the first included, before an EAGAIN is given up (default 10). */
  maxAttempts?: number;
}

export interface ClientStats {
  requests: number;
  /** Watch events with a token no watch of ours has (spurious or after an unwatch). */
  unmatchedEvents: number;
  /** Watch events whose payload was not `<path>\0<token>\0`. */
  malformedEvents: number;
  /** Replies that came after their request timed out or was aborted. */
  lateReplies: number;
}

interface Pending {
  type: number;
  operation: string;
  path: string | undefined;
  abandoned: boolean;
  resolve(payload: Uint8Array): void;
  reject(error: Error): void;
  cleanup(): void;
}

let tokenCounter = 0;

export class XenstoreClient extends XenstoreOps {
  readonly stats: ClientStats = { requests: 0, unmatchedEvents: 0, malformedEvents: 0, lateReplies: 0 };
  private readonly reader = new MessageReader(XENSTORE_PAYLOAD_MAX);
  private readonly pending = new Map<number, Pending>();
  private readonly watches = new Map<string, XenstoreWatch>();
  private abandonedCount = 0;
  private nextReqId = 1;
  private closedError: XenstoreConnectionError | undefined;
  private readonly unsubscribe: (() => void)[] = [];
  private readonly closeListeners = new Set<(error: Error) => void>();

  constructor(
    readonly transport: XenstoreTransport,
    private readonly options: ClientOptions = {},
  ) {
    super();
    this.unsubscribe.push(transport.onData((chunk) => this.onData(chunk)));
    this.unsubscribe.push(
      transport.onClose((error) =>
        this.fail(
          new XenstoreConnectionError(
            transport.description,
            error ? 'transport error' : 'closed by peer',
            error,
          ),
        ),
      ),
    );
  }

  /** False once the connection is gone. */
  get connected(): boolean {
    return this.closedError === undefined;
  }

  /** Called once when the connection ends (peer close, protocol violation, or close()). */
  onClose(listener: (error: Error) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Closes the connection; pending requests fail with XenstoreConnectionError. */
  close(): void {
    this.fail(new XenstoreConnectionError(this.transport.description, 'closed by client'));
  }

  protected request(
    type: number,
    payload: Uint8Array,
    path: string | undefined,
    options: RequestOptions | undefined,
  ): Promise<Uint8Array> {
    return this.rawRequest(type, payload, 0, path, options);
  }

  /**
   * Sends one request and resolves with the reply's payload; an XS_ERROR reply rejects with
   * XenstoreError. Exposed for operations this class has no method for.
   */
  rawRequest(
    type: number,
    payload: Uint8Array,
    txId = 0,
    path?: string,
    options?: RequestOptions,
  ): Promise<Uint8Array> {
    const operation = typeName(type) ?? `type ${type}`;
    if (this.closedError) return Promise.reject(this.closedError);
    if (payload.length > this.transport.maxRequestPayload) {
      // xenstored kills a connection that exceeds XENSTORE_PAYLOAD_MAX; never send one.
      return Promise.reject(new XenstoreError(operation, 'E2BIG', path, undefined));
    }
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(new XenstoreTimeoutError(operation, path, true));
    const reqId = this.allocateReqId();
    if (reqId === undefined) {
      return Promise.reject(new XenstoreUsageError(operation, 'no free request id'));
    }
    const message = encodeMessage(type, reqId, txId, payload, XENSTORE_PAYLOAD_MAX);
    return new Promise<Uint8Array>((resolve, reject) => {
      const timeoutMs = options?.timeoutMs ?? this.options.timeoutMs;
      let timer: NodeJS.Timeout | undefined;
      const giveUp = (aborted: boolean) => {
        const p = this.pending.get(reqId);
        if (!p || p.abandoned) return;
        p.abandoned = true;
        p.cleanup();
        this.abandonedCount++;
        reject(new XenstoreTimeoutError(operation, path, aborted, timeoutMs));
        if (this.abandonedCount > (this.options.maxAbandoned ?? 1024)) {
          this.fail(
            new XenstoreConnectionError(
              this.transport.description,
              `more than ${this.options.maxAbandoned ?? 1024} requests unanswered`,
            ),
          );
        }
      };
      const onAbort = () => giveUp(true);
      const entry: Pending = {
        type,
        operation,
        path,
        abandoned: false,
        resolve,
        reject,
        cleanup: () => {
          if (timer) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        },
      };
      this.pending.set(reqId, entry);
      if (timeoutMs !== undefined && timeoutMs > 0) timer = setTimeout(() => giveUp(false), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.stats.requests++;
      try {
        this.transport.send(message);
      } catch (error) {
        this.pending.delete(reqId);
        entry.cleanup();
        reject(sendError(operation, path, error));
      }
    });
  }

  /**
   * Registers a watch on `path` (absolute, relative to the domain's home, or `@introduceDomain`
   * / `@releaseDomain`). xenstored fires it once right away, then on every change of the node
   * or anything below it. Events come to `options.onEvent` and/or the returned object's async
   * iterator.
   */
  async watch(path: string, options: WatchOptions = {}): Promise<XenstoreWatch> {
    checkArg('WATCH', path);
    const token = options.token ?? `moat-${process.pid}-${++tokenCounter}`;
    checkArg('WATCH', token);
    if (this.watches.has(token))
      throw new XenstoreUsageError('WATCH', `token ${token} is already in use on this client`);
    const watch = new XenstoreWatch(path, token, options, (w) => this.unwatch(w));
    // Route events before the reply: the kernel's xenbus device may queue the initial event first.
    this.watches.set(token, watch);
    try {
      expectOk('WATCH', path, await this.request(XsType.WATCH, joinStrings([path, token]), path, options));
    } catch (error) {
      this.watches.delete(token);
      watch.end();
      throw error;
    }
    return watch;
  }

  private async unwatch(watch: XenstoreWatch): Promise<void> {
    if (this.watches.get(watch.token) !== watch) return;
    this.watches.delete(watch.token);
    if (this.closedError) return;
    expectOk(
      'UNWATCH',
      watch.path,
      await this.request(XsType.UNWATCH, joinStrings([watch.path, watch.token]), watch.path, undefined),
    );
  }

  /**
   * Watches `path` and re-reads it on every event until `check(value)` returns something other
   * than undefined (value is undefined while the node is absent); resolves with that. For
   * handshakes such as "wait until the backend's state is 4". The watch is removed afterwards.
   */
  async waitFor<T>(
    path: string,
    check: (value: string | undefined) => T | undefined,
    options: RequestOptions = {},
  ): Promise<T> {
    const watch = await this.watch(path, { signal: options.signal });
    const deadline = options.timeoutMs !== undefined ? Date.now() + options.timeoutMs : undefined;
    try {
      for (;;) {
        const result = check(await this.tryRead(path, options));
        if (result !== undefined) return result;
        const remaining = deadline === undefined ? undefined : deadline - Date.now();
        if (remaining !== undefined && remaining <= 0)
          throw new XenstoreTimeoutError('waitFor', path, false, options.timeoutMs);
        await nextEvent(watch, remaining, options.signal, path);
      }
    } finally {
      if (this.connected) await watch.close().catch(() => undefined);
    }
  }

  /** Drops every watch and transaction of this connection on the server (XS_RESET_WATCHES). */
  async resetWatches(options?: RequestOptions): Promise<void> {
    expectOk(
      'RESET_WATCHES',
      undefined,
      await this.request(XsType.RESET_WATCHES, joinStrings(['']), undefined, options),
    );
    for (const w of this.watches.values()) w.end();
    this.watches.clear();
  }

  /** Starts a transaction by hand; prefer `transaction()`, which retries on EAGAIN. */
  async startTransaction(options?: RequestOptions): Promise<XenstoreTransaction> {
    const reply = await this.request(XsType.TRANSACTION_START, joinStrings(['']), undefined, options);
    const text = parseOneString(reply);
    if (
      text === undefined ||
      !/^[0-9]{1,10}$/.test(text) ||
      Number(text) === 0 ||
      Number(text) > 0xffffffff
    ) {
      throw new XenstoreProtocolError('TRANSACTION_START', 'malformed-transaction-id', describeBytes(reply));
    }
    return new XenstoreTransaction(this, Number(text));
  }

  /**
   * Runs `body` in a transaction and commits it. When the commit fails with EAGAIN (another
   * change conflicted) the whole body runs again, up to `maxAttempts` times in all. If `body`
   * throws, the transaction is aborted and the error passed on.
   */
  async transaction<T>(
    body: (tx: XenstoreTransaction) => Promise<T>,
    options: TransactionOptions = {},
  ): Promise<T> {
    const maxAttempts = options.maxAttempts ?? 10;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
      throw new XenstoreUsageError('TRANSACTION_START', 'maxAttempts must be a positive integer');
    }
    let lastError: unknown;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      const tx = await this.startTransaction(options);
      let result: T;
      try {
        result = await body(tx);
      } catch (error) {
        if (!tx.ended && this.connected) await tx.abort(options).catch(() => undefined);
        throw error;
      }
      try {
        if (!tx.ended) await tx.commit(options);
        return result;
      } catch (error) {
        if (!(error instanceof XenstoreError && error.code === 'EAGAIN')) throw error;
        lastError = error;
      }
    }
    throw lastError;
  }

  /** `/local/domain/<domid>` as xenstored computes it. */
  async getDomainPath(domid: number, options?: RequestOptions): Promise<string> {
    const reply = await this.domainRequest('GET_DOMAIN_PATH', domid, options);
    const text = parseOneString(reply);
    if (text === undefined || !text.startsWith('/')) {
      throw new XenstoreProtocolError('GET_DOMAIN_PATH', 'malformed-path', describeBytes(reply));
    }
    return text;
  }

  /** dom0: tells xenstored about a new domain's ring page (gfn) and event channel. */
  async introduceDomain(
    domid: number,
    gfn: number,
    eventChannel: number,
    options?: RequestOptions,
  ): Promise<void> {
    const payload = joinStrings([
      decimal('INTRODUCE', domid),
      String(Math.trunc(gfn)),
      decimal('INTRODUCE', eventChannel),
    ]);
    expectOk('INTRODUCE', undefined, await this.request(XsType.INTRODUCE, payload, undefined, options));
  }

  /** dom0: xenstored forgets the domain's connection (fires @releaseDomain). */
  async releaseDomain(domid: number, options?: RequestOptions): Promise<void> {
    expectOk('RELEASE', undefined, await this.domainRequest('RELEASE', domid, options));
  }

  async resumeDomain(domid: number, options?: RequestOptions): Promise<void> {
    expectOk('RESUME', undefined, await this.domainRequest('RESUME', domid, options));
  }

  /** dom0: lets `domid` act with `targetDomid`'s rights (device-model stub domains). */
  async setTarget(domid: number, targetDomid: number, options?: RequestOptions): Promise<void> {
    const payload = joinStrings([decimal('SET_TARGET', domid), decimal('SET_TARGET', targetDomid)]);
    expectOk('SET_TARGET', undefined, await this.request(XsType.SET_TARGET, payload, undefined, options));
  }

  /** Privileged in Xen 4.17: an unprivileged caller gets EACCES. */
  async isDomainIntroduced(domid: number, options?: RequestOptions): Promise<boolean> {
    const reply = await this.domainRequest('IS_DOMAIN_INTRODUCED', domid, options);
    const text = parseOneString(reply);
    if (text === 'T') return true;
    if (text === 'F') return false;
    throw new XenstoreProtocolError('IS_DOMAIN_INTRODUCED', 'malformed-boolean', describeBytes(reply));
  }

  /** XS_CONTROL (alias XS_DEBUG), privileged: e.g. `control('print', 'text')`, `control('quota')`. Returns the reply text. */
  async control(command: string, args: readonly string[] = [], options?: RequestOptions): Promise<string> {
    for (const a of [command, ...args]) checkArg('CONTROL', a);
    const reply = await this.request(XsType.CONTROL, joinStrings([command, ...args]), undefined, options);
    const end = reply.indexOf(0);
    return new TextDecoder().decode(end >= 0 ? reply.subarray(0, end) : reply);
  }

  /** A request whose one argument is a domain id. */
  private domainRequest(
    operation: 'GET_DOMAIN_PATH' | 'RELEASE' | 'RESUME' | 'IS_DOMAIN_INTRODUCED',
    domid: number,
    options: RequestOptions | undefined,
  ): Promise<Uint8Array> {
    return this.request(XsType[operation], domidArg(operation, domid), undefined, options);
  }

  private allocateReqId(): number | undefined {
    // req_id 0 is what watch events carry; skip it and any id still in flight.
    for (let tries = 0; tries < 1 << 16; tries++) {
      const id = this.nextReqId;
      this.nextReqId = id >= 0xffffffff ? 1 : id + 1;
      if (!this.pending.has(id)) return id;
    }
    return undefined;
  }

  private onData(chunk: Uint8Array): void {
    if (this.closedError) return;
    const { messages, error } = this.reader.push(chunk);
    for (const m of messages) {
      if (this.closedError) return;
      this.onMessage(m);
    }
    if (error) {
      this.fail(
        new XenstoreConnectionError(
          this.transport.description,
          'protocol violation',
          new XenstoreProtocolError('read', error.reason, error.detail),
        ),
      );
    }
  }

  private onMessage(m: Message): void {
    if (m.type === XsType.WATCH_EVENT) {
      this.onEvent(m.payload);
      return;
    }
    const p = this.pending.get(m.reqId);
    if (!p) {
      this.protocolFailure('unknown-req-id', `reply ${typeName(m.type) ?? m.type} with req_id ${m.reqId}`);
      return;
    }
    this.pending.delete(m.reqId);
    if (p.abandoned) {
      this.abandonedCount--;
      this.stats.lateReplies++;
    } else {
      p.cleanup();
    }
    if (m.type !== XsType.ERROR && m.type !== p.type) {
      const error = this.protocolFailure(
        'reply-type-mismatch',
        `${typeName(m.type)} in reply to ${p.operation}`,
      );
      if (!p.abandoned) p.reject(error);
      return;
    }
    if (p.abandoned) return;
    if (m.type === XsType.ERROR) p.reject(errorFromReply(p.operation, p.path, m.payload));
    else p.resolve(m.payload);
  }

  private onEvent(payload: Uint8Array): void {
    const strings = splitStrings(payload);
    if (!strings.ok || strings.value.length < 2) {
      this.stats.malformedEvents++;
      return;
    }
    const [path, token] = strings.value as [string, string];
    const watch = this.watches.get(token);
    if (!watch) {
      this.stats.unmatchedEvents++;
      return;
    }
    const event: WatchEvent = { path, token };
    watch.deliver(event);
  }

  private protocolFailure(reason: string, detail: string): XenstoreConnectionError {
    const error = new XenstoreConnectionError(
      this.transport.description,
      'protocol violation',
      new XenstoreProtocolError('reply', reason, detail),
    );
    this.fail(error);
    return error;
  }

  private fail(error: XenstoreConnectionError): void {
    if (this.closedError) return;
    if (this.reader.midMessage && (error.reason === 'closed by peer' || error.reason === 'transport error')) {
      error = new XenstoreConnectionError(
        this.transport.description,
        `${error.reason} in the middle of a message`,
        new XenstoreProtocolError('read', 'truncated-message', error.cause?.message ?? ''),
      );
    }
    this.closedError = error;
    for (const u of this.unsubscribe.splice(0)) u();
    for (const p of this.pending.values()) {
      p.cleanup();
      if (!p.abandoned) p.reject(error);
    }
    this.pending.clear();
    for (const w of this.watches.values()) w.end(error);
    this.watches.clear();
    try {
      this.transport.close();
    } catch {
      // Closing an already-dead transport may throw; the client is closed either way.
    }
    for (const l of this.closeListeners) l(error);
  }
}

function errorFromReply(operation: string, path: string | undefined, payload: Uint8Array): Error {
  const text = parseOneString(payload);
  if (text !== undefined && isXsErrorName(text)) return new XenstoreError(operation, text, path);
  return new XenstoreError(operation, 'EUNKNOWN', path, describeBytes(payload));
}

/** A refused send (the xenbus device fails write() with an errno for refused watches) as a request error. */
function sendError(operation: string, path: string | undefined, error: unknown): Error {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && isXsErrorName(code)) return new XenstoreError(operation, code, path);
  return new XenstoreConnectionError(
    operation,
    'send failed',
    error instanceof Error ? error : new Error(String(error)),
  );
}

/** The watch's next event, bounded by `timeoutMs` and `signal` (XenstoreTimeoutError). */
function nextEvent(
  watch: XenstoreWatch,
  timeoutMs: number | undefined,
  signal: AbortSignal | undefined,
  path: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => finish(new XenstoreTimeoutError('waitFor', path, true));
    const finish = (error?: Error) => {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolve();
    };
    if (timeoutMs !== undefined)
      timer = setTimeout(
        () => finish(new XenstoreTimeoutError('waitFor', path, false, timeoutMs)),
        timeoutMs,
      );
    signal?.addEventListener('abort', onAbort, { once: true });
    watch.next().then(() => finish(), finish);
  });
}
