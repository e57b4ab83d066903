/**
 * A fake /dev/xen/xenbus for a domain of XenstoredSim, behaving like the Linux driver
 * (drivers/xen/xenbus/xenbus_dev_frontend.c): every open file of a domain shares the domain's
 * one connection to xenstored; the driver
 * - refuses a write of more than 4096 bytes (EINVAL) and a header announcing more than 4080
 *   payload bytes (E2BIG);
 * - handles XS_WATCH/XS_UNWATCH itself: it registers its own watch (own token) with xenstored,
 *   fails the write() with xenstored's errno if refused, else queues a synthesized `OK`; events
 *   come back with the caller's token. Unwatching an unknown watch still answers OK;
 * - tracks transactions per open file: a tx_id not started on this file gets ENOENT, and
 *   XS_TRANSACTION_END must carry exactly `T\0` or `F\0` (else EINVAL);
 * - substitutes its own req_id on the shared connection and restores the caller's in the reply;
 * - returns from write() before the request reaches xenstored, holding its body by reference to
 *   the file's one message buffer (xenbus_dev_request_and_reply: `vec->iov_base = msg + 1`): a
 *   request still queued when the next write() refills the buffer goes out with the newer bytes
 *   under its own header. Here the queue drains in a microtask, so every request but the last
 *   of a synchronous burst is corrupted, the worst case of the race;
 * - drops the reply to an XS_TRANSACTION_END with tx_id 0 (the caller waits forever);
 * - on close, aborts the file's transactions and removes its watches.
 */
import type { XenbusDevice } from '@moat/xen';
import {
  decodeHeader,
  encodeMessage,
  Field,
  HEADER_SIZE,
  joinStrings,
  parseOneString,
  splitStrings,
  XENSTORE_PAYLOAD_MAX,
  XsType,
} from '../wire.ts';
import type { SimConnection, XenstoredSim } from './xenstored.ts';

/** A copy of `message` carrying `reqId`: the kernel renumbers requests it multiplexes onto its one connection. */
function withReqId(message: Uint8Array, reqId: number): Uint8Array {
  const copy = message.slice();
  new DataView(copy.buffer).setUint32(Field.REQ_ID, reqId, true);
  return copy;
}

const errnos: Record<string, number> = {
  EINVAL: 22,
  E2BIG: 7,
  ENOENT: 2,
  EACCES: 13,
  ENOSPC: 28,
  EEXIST: 17,
  ENOMEM: 12,
};

/** Same shape as @moat/xen's XenError (operation, errno, code). */
export class SimXenbusError extends Error {
  readonly errno: number;
  constructor(
    readonly operation: string,
    readonly code: string,
  ) {
    super(`${operation} failed: ${code}`);
    this.name = 'XenError';
    this.errno = errnos[code] ?? 0;
  }
}

interface KernelWatch {
  fd: SimXenbusFile;
  path: string;
  userToken: string;
  kernelToken: string;
}

interface Forwarded {
  fd: SimXenbusFile | undefined;
  userReqId: number;
  userTxId: number;
  type: number;
  /** Synchronous capture of the reply (kernel-internal requests). */
  capture?: (type: number, payload: Uint8Array) => void;
}

/** The kernel side: one connection per domain, shared by every open file. */
class KernelMux {
  readonly conn: SimConnection;
  readonly files = new Set<SimXenbusFile>();
  readonly watches = new Map<string, KernelWatch>();
  private readonly forwarded = new Map<number, Forwarded>();
  private readonly deferred: (() => void)[] = [];
  private flushScheduled = false;
  private nextReqId = 1;
  private nextToken = 1;

  constructor(
    private readonly sim: XenstoredSim,
    readonly domid: number,
    private readonly onGone: () => void,
  ) {
    this.conn = sim.attach(
      domid,
      'domain',
      (m) => this.fromXenstored(m),
      () => this.closed(),
    );
  }

  newToken(): string {
    return `ffff8880${(this.nextToken++).toString(16).padStart(8, '0')}`;
  }

  /** The xenbus thread's write list: `send` runs later, in order. */
  defer(send: () => void): void {
    this.deferred.push(send);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => this.flushDeferred());
  }

  private flushDeferred(): void {
    this.flushScheduled = false;
    for (const send of this.deferred.splice(0)) send();
  }

  forward(message: Uint8Array, f: Forwarded): void {
    // Kernel-internal requests queue behind the files' requests already written.
    this.flushDeferred();
    const id = this.nextReqId++;
    this.forwarded.set(id, f);
    this.sim.receive(this.conn, withReqId(message, id));
  }

  private fromXenstored(m: Uint8Array): void {
    // Handed to the files at once: nothing stays queued in xenstored for this connection.
    this.conn.pendingEvents.clear();
    const h = decodeHeader(m);
    if (!h.ok) return;
    const payload = m.subarray(HEADER_SIZE, HEADER_SIZE + h.value.len);
    if (h.value.type === XsType.WATCH_EVENT) {
      const s = splitStrings(payload);
      if (!s.ok || s.value.length < 2) return;
      const w = this.watches.get(s.value[1]!);
      if (w) w.fd.push(encodeMessage(XsType.WATCH_EVENT, 0, 0, joinStrings([s.value[0]!, w.userToken])));
      return;
    }
    const f = this.forwarded.get(h.value.reqId);
    if (!f) return;
    this.forwarded.delete(h.value.reqId);
    if (f.capture) {
      f.capture(h.value.type, payload);
      return;
    }
    if (!f.fd || f.fd.isClosed) return;
    if (f.type === XsType.TRANSACTION_START && h.value.type === XsType.TRANSACTION_START) {
      const id = Number(parseOneString(payload));
      if (Number.isInteger(id) && id > 0) f.fd.transactions.add(id);
    }
    if (f.type === XsType.TRANSACTION_END) {
      // xenbus_dev_queue_reply(): an END for a transaction this file does not hold (tx_id 0)
      // hits WARN_ON and the reply is never queued.
      if (!f.fd.transactions.delete(f.userTxId)) return;
    }
    f.fd.push(withReqId(m, f.userReqId));
  }

  private closed(): void {
    for (const f of [...this.files]) f.fail(new SimXenbusError('xenbus read', 'EIO'));
    this.onGone();
  }
}

const muxes = new WeakMap<XenstoredSim, Map<number, KernelMux>>();

/** Opens a fake /dev/xen/xenbus in domain `domid` of `sim`. */
export function openSimXenbusDevice(
  sim: XenstoredSim,
  domid: number,
  options: { chunkSize?: number } = {},
): SimXenbusFile {
  let perSim = muxes.get(sim);
  if (!perSim) {
    perSim = new Map();
    muxes.set(sim, perSim);
  }
  let mux = perSim.get(domid);
  if (!mux) {
    const created: KernelMux = new KernelMux(sim, domid, () => perSim!.delete(domid));
    mux = created;
    perSim.set(domid, mux);
  }
  const file = new SimXenbusFile(mux, options.chunkSize);
  mux.files.add(file);
  return file;
}

export class SimXenbusFile implements XenbusDevice {
  readonly transactions = new Set<number>();
  /** The driver's per-file message buffer (header included). */
  private readonly buffer = new Uint8Array(XENSTORE_PAYLOAD_MAX);
  private readonly dataListeners = new Set<(chunk: Uint8Array) => void>();
  private readonly errorListeners = new Set<(error: Error) => void>();
  private outbox: Uint8Array[] = [];
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly mux: KernelMux,
    /** Deliver reads in pieces of this many bytes (the driver may split and join messages). */
    private readonly chunkSize?: number,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  write(message: Uint8Array): void {
    if (this.closed) throw new SimXenbusError('xenbus write', 'EBADF');
    if (message.length > XENSTORE_PAYLOAD_MAX) throw new SimXenbusError('xenbus write', 'EINVAL');
    const h = decodeHeader(message);
    if (!h.ok) throw new SimXenbusError('xenbus write', 'EINVAL');
    if (HEADER_SIZE + h.value.len > XENSTORE_PAYLOAD_MAX) throw new SimXenbusError('xenbus write', 'E2BIG');
    if (message.length !== HEADER_SIZE + h.value.len) throw new SimXenbusError('xenbus write', 'EINVAL');
    const { type, reqId, txId } = h.value;
    const payload = message.subarray(HEADER_SIZE);
    const reply = (t: number, text: string) => this.push(encodeMessage(t, reqId, txId, joinStrings([text])));
    if (type === XsType.WATCH || type === XsType.UNWATCH) {
      const s = splitStrings(payload.subarray(0, payload.lastIndexOf(0) + 1));
      if (!s.ok || s.value.length < 2) {
        reply(XsType.ERROR, 'EINVAL');
        return;
      }
      const [path, token] = s.value as [string, string];
      if (type === XsType.WATCH) this.registerWatch(path, token);
      else this.unregisterWatch(path, token);
      reply(type, 'OK');
      return;
    }
    if (txId !== 0 && !this.transactions.has(txId)) {
      reply(XsType.ERROR, 'ENOENT');
      return;
    }
    if (
      type === XsType.TRANSACTION_END &&
      !(payload.length === 2 && (payload[0] === 0x54 || payload[0] === 0x46) && payload[1] === 0)
    ) {
      reply(XsType.ERROR, 'EINVAL');
      return;
    }
    // u->u.buffer: this write's bytes replace the previous message's, whose request may still
    // be waiting to be sent.
    this.buffer.set(message);
    const header = message.slice(0, HEADER_SIZE);
    const len = h.value.len;
    this.mux.defer(() => {
      const sent = new Uint8Array(HEADER_SIZE + len);
      sent.set(header);
      sent.set(this.buffer.subarray(HEADER_SIZE, HEADER_SIZE + len), HEADER_SIZE);
      this.mux.forward(sent, { fd: this, userReqId: reqId, userTxId: txId, type });
    });
  }

  onData(listener: (chunk: Uint8Array) => void): () => void {
    this.dataListeners.add(listener);
    return () => this.dataListeners.delete(listener);
  }

  onError(listener: (error: Error) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const id of this.transactions) {
      this.mux.forward(encodeMessage(XsType.TRANSACTION_END, 0, id, joinStrings(['F'])), {
        fd: undefined,
        userReqId: 0,
        userTxId: id,
        type: XsType.TRANSACTION_END,
        capture: () => undefined,
      });
    }
    this.transactions.clear();
    for (const w of [...this.mux.watches.values()]) if (w.fd === this) this.dropKernelWatch(w);
    this.mux.files.delete(this);
  }

  /** @internal */
  push(message: Uint8Array): void {
    if (this.closed) return;
    this.outbox.push(message);
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  /** @internal The domain's connection died (e.g. released). */
  fail(error: Error): void {
    if (this.closed) return;
    this.closed = true;
    queueMicrotask(() => {
      for (const l of this.errorListeners) l(error);
    });
  }

  private flush(): void {
    this.scheduled = false;
    if (this.closed) return;
    const all = this.outbox;
    this.outbox = [];
    let size = 0;
    for (const m of all) size += m.length;
    const joined = new Uint8Array(size);
    let at = 0;
    for (const m of all) {
      joined.set(m, at);
      at += m.length;
    }
    const step = this.chunkSize && this.chunkSize > 0 ? this.chunkSize : joined.length;
    for (let i = 0; i < joined.length; i += step) {
      const chunk = joined.slice(i, i + step);
      for (const l of this.dataListeners) l(chunk);
    }
  }

  private registerWatch(path: string, userToken: string): void {
    const w: KernelWatch = { fd: this, path, userToken, kernelToken: this.mux.newToken() };
    // The watch is routable before xenstored answers: its first event comes right after the OK.
    this.mux.watches.set(w.kernelToken, w);
    let result: { type: number; payload: Uint8Array } | undefined;
    this.mux.forward(encodeMessage(XsType.WATCH, 0, 0, joinStrings([path, w.kernelToken])), {
      fd: undefined,
      userReqId: 0,
      userTxId: 0,
      type: XsType.WATCH,
      capture: (type, payload) => {
        result = { type, payload };
      },
    });
    if (!result || result.type === XsType.ERROR) {
      this.mux.watches.delete(w.kernelToken);
      // register_xenbus_watch() failed: write() returns its errno.
      throw new SimXenbusError(
        'xenbus write (XS_WATCH)',
        (result && parseOneString(result.payload)) ?? 'EIO',
      );
    }
  }

  private unregisterWatch(path: string, userToken: string): void {
    for (const w of this.mux.watches.values()) {
      if (w.fd === this && w.path === path && w.userToken === userToken) {
        this.dropKernelWatch(w);
        return;
      }
    }
  }

  private dropKernelWatch(w: KernelWatch): void {
    this.mux.watches.delete(w.kernelToken);
    this.mux.forward(encodeMessage(XsType.UNWATCH, 0, 0, joinStrings([w.path, w.kernelToken])), {
      fd: undefined,
      userReqId: 0,
      userTxId: 0,
      type: XsType.UNWATCH,
      capture: () => undefined,
    });
  }
}
