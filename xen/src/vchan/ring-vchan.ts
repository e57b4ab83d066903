import { xenError } from '../errno.ts';
import type {
  DomainId,
  Port,
  ReadOnlyMapping,
  ReadOnlyPages,
  SharedPages,
  VchanEndpoint,
  VchanProvider,
  WritableMapping,
  XenDomain,
} from '../types.ts';
import * as W from './wire.ts';

/**
 * Where a server publishes its interface page ref and event channel: the two xenstore
 * keys `<path>/ring-ref` and `<path>/event-channel` in real life. Paths reaching the
 * registry are absolute.
 */
export interface VchanRegistry {
  publish(server: DomainId, path: string, entry: { ringRef: number; port: number }): void;
  lookup(server: DomainId, path: string): { ringRef: number; port: number } | undefined;
  remove(server: DomainId, path: string): void;
}

/** Memory we can write: our own shared pages or a writable mapping. */
type WritablePages = Pick<SharedPages, 'buffer' | 'loadAcquire32' | 'storeRelease32'>;

/**
 * Byte views over a page set whose ArrayBuffer may be re-issued (sim re-issues the
 * buffer of the remaining holders when the peer unmaps): views are rebuilt when the
 * buffer object changes, which costs one identity check per access.
 */
class Bytes {
  #buffer: ArrayBuffer | undefined;
  #u8 = new Uint8Array(0);
  constructor(readonly pages: WritablePages) {}
  get u8(): Uint8Array {
    const b = this.pages.buffer;
    if (b !== this.#buffer) {
      this.#buffer = b;
      this.#u8 = new Uint8Array(b);
    }
    return this.#u8;
  }
}

/** One direction's ring bytes: where they are and how we may touch them. */
type RingData =
  | { kind: 'writable'; bytes: Bytes; offset: number }
  | { kind: 'read-only'; pages: ReadOnlyPages; offset: number };

interface Ring {
  size: number;
  /** Offsets of this ring's indexes in the interface page. */
  consAt: number;
  prodAt: number;
  data: RingData;
}

interface Parts {
  role: 'server' | 'client';
  domain: Omit<XenDomain, 'vchan'>;
  port: Port;
  iface: WritablePages;
  read: Ring;
  write: Ring;
  /** Releases grants and mappings (after the live byte was cleared and the peer told). */
  release: () => void;
}

/**
 * One end of a libxenvchan channel, written from tools/libs/vchan/io.c (xen-project/xen @ c447b7308b13):
 * free-running 32-bit byte indexes, notification only when the peer asked for it
 * (`VCHAN_NOTIFY_WRITE`/`VCHAN_NOTIFY_READ` in the notify bytes of libxenvchan.h), liveness
 * bytes (`cli_live`, `srv_live`). Never blocks: read/write move what they can and return the count.
 */
class RingEndpoint implements VchanEndpoint {
  readonly role: 'server' | 'client';
  #p: Parts | undefined;
  readonly #ifaceBytes: Bytes;
  readonly #listeners = new Set<() => void>();
  readonly #unsubscribe: () => void;

  constructor(parts: Parts) {
    this.#p = parts;
    this.role = parts.role;
    this.#ifaceBytes = new Bytes(parts.iface);
    this.#unsubscribe = parts.domain.eventChannels.onEvent((port) => {
      if (port !== parts.port) return;
      for (const l of [...this.#listeners]) l();
    });
  }

  #live(op: string): Parts {
    if (!this.#p) throw xenError(op, 'EBADF', 'vchan already closed');
    return this.#p;
  }

  // --- notification bytes (io.c request_notify / send_notify) ---
  #requestNotify(p: Parts, bit: number): void {
    const at = p.role === 'server' ? W.CLI_NOTIFY : W.SRV_NOTIFY;
    Atomics.or(this.#ifaceBytes.u8, at, bit);
  }

  #sendNotify(p: Parts, bit: number): void {
    const at = p.role === 'server' ? W.SRV_NOTIFY : W.CLI_NOTIFY;
    const prev = Atomics.and(this.#ifaceBytes.u8, at, ~bit & 0xff);
    if (prev & bit) p.domain.eventChannels.notify(p.port);
  }

  // --- indexes (io.c raw_get_data_ready / raw_get_buffer_space): ready/space clamp to 0 on a corrupt (> size) value ---
  #rawDataReady(p: Parts): number {
    const r = p.read;
    const ready = (p.iface.loadAcquire32(r.prodAt) - p.iface.loadAcquire32(r.consAt)) >>> 0;
    return ready > r.size ? 0 : ready;
  }

  #rawBufferSpace(p: Parts): number {
    const w = p.write;
    const used = (p.iface.loadAcquire32(w.prodAt) - p.iface.loadAcquire32(w.consAt)) >>> 0;
    return used > w.size ? 0 : w.size - used;
  }

  #isOpen(p: Parts): number {
    return this.#ifaceBytes.u8[p.role === 'server' ? W.CLI_LIVE : W.SRV_LIVE]!;
  }

  dataReady(): number {
    const p = this.#live('libxenvchan_data_ready');
    this.#requestNotify(p, W.NOTIFY_WRITE);
    return this.#rawDataReady(p);
  }

  bufferSpace(): number {
    const p = this.#live('libxenvchan_buffer_space');
    this.#requestNotify(p, W.NOTIFY_READ);
    return this.#rawBufferSpace(p);
  }

  state(): 'waiting' | 'open' | 'closed' {
    const p = this.#p;
    if (!p) return 'closed';
    const live = this.#isOpen(p);
    return live === W.LIVE_WAITING ? 'waiting' : live === W.LIVE_EXITED ? 'closed' : 'open';
  }

  read(into: Uint8Array): number {
    const p = this.#live('libxenvchan_read');
    if (into.length === 0) return 0;
    const r = p.read;
    // Our consumer index is ours alone, but it sits in a page the peer can write: load it
    // once and use that value, so a peer changing it mid-read cannot make us mix offsets.
    const cons = p.iface.loadAcquire32(r.consAt);
    const ready = (prod: number) => {
      const n = (prod - cons) >>> 0;
      return n > r.size ? 0 : n;
    };
    let available = ready(p.iface.loadAcquire32(r.prodAt));
    if (available < into.length) {
      this.#requestNotify(p, W.NOTIFY_WRITE);
      available = ready(p.iface.loadAcquire32(r.prodAt));
    }
    const n = Math.min(available, into.length);
    if (n === 0) return 0; // nothing yet, or closed and drained: state() tells which
    const start = cons & (r.size - 1);
    const first = Math.min(n, r.size - start);
    this.#copyOut(r.data, start, into, 0, first);
    if (first < n) this.#copyOut(r.data, 0, into, first, n - first);
    p.iface.storeRelease32(r.consAt, (cons + n) >>> 0);
    this.#sendNotify(p, W.NOTIFY_READ);
    return n;
  }

  #copyOut(d: RingData, at: number, into: Uint8Array, intoOffset: number, length: number): void {
    if (d.kind === 'read-only') d.pages.copyTo(into, intoOffset, d.offset + at, length);
    else into.set(d.bytes.u8.subarray(d.offset + at, d.offset + at + length), intoOffset);
  }

  write(data: Uint8Array): number {
    const p = this.#live('libxenvchan_write');
    if (!this.#isOpen(p)) throw xenError('libxenvchan_write', 'EPIPE', 'the peer closed the vchan');
    if (data.length === 0) return 0;
    const w = p.write;
    if (w.data.kind !== 'writable') throw xenError('libxenvchan_write', 'EACCES', 'write ring is read-only');
    const prod = p.iface.loadAcquire32(w.prodAt); // ours alone: loaded once, as cons in read()
    const space = (cons: number) => {
      const used = (prod - cons) >>> 0;
      return used > w.size ? 0 : w.size - used;
    };
    let free = space(p.iface.loadAcquire32(w.consAt));
    if (free < data.length) {
      this.#requestNotify(p, W.NOTIFY_READ);
      free = space(p.iface.loadAcquire32(w.consAt));
    }
    const n = Math.min(free, data.length);
    if (n === 0) return 0;
    const u8 = w.data.bytes.u8;
    const start = prod & (w.size - 1);
    const first = Math.min(n, w.size - start);
    u8.set(data.subarray(0, first), w.data.offset + start);
    if (first < n) u8.set(data.subarray(first, n), w.data.offset);
    p.iface.storeRelease32(w.prodAt, (prod + n) >>> 0);
    this.#sendNotify(p, W.NOTIFY_WRITE);
    return n;
  }

  onEvent(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  close(): void {
    const p = this.#p;
    if (!p) return;
    this.#p = undefined;
    this.#unsubscribe();
    this.#listeners.clear();
    // libxenvchan_close: clear our live byte, tell the peer, then let go of everything.
    this.#ifaceBytes.u8[p.role === 'server' ? W.SRV_LIVE : W.CLI_LIVE] = W.LIVE_EXITED;
    try {
      p.domain.eventChannels.notify(p.port);
    } finally {
      p.release();
    }
  }
}

/**
 * libxenvchan's ring protocol (tools/libs/vchan/{init,io}.c, xen-project/xen @ c447b7308b13) over any XenDomain's
 * primitives: gntalloc for the server's pages, gntdev for the client's mappings, event
 * channels for notifications, and a registry standing in for the two xenstore keys.
 * Sim uses it as its VchanProvider, so sim vchan is the real protocol on sim memory.
 */
export class RingVchanProvider implements VchanProvider {
  constructor(
    readonly domain: Omit<XenDomain, 'vchan'>,
    readonly registry: VchanRegistry,
  ) {}

  /**
   * A relative path is relative to the caller's own home, as xenstore resolves it: so a
   * server publishes `data/vchan/<client>/<port>` under /local/domain/<server>, and the
   * client must name that absolute path (the Qubes wrappers do), exactly as with libxenvchan.
   */
  #absolute(path: string): string {
    return path.startsWith('/') ? path : `/local/domain/${this.domain.domid}/${path}`;
  }

  /** `buffer` is ignored: the sim has no threads, its ends always behave as unbuffered ones. */
  listen(options: { peer: DomainId; path: string; readMin: number; writeMin: number }): VchanEndpoint {
    const op = 'libxenvchan_server_init';
    const { peer } = options;
    const path = this.#absolute(options.path);
    const orders = W.selectOrders(options.readMin, options.writeMin);
    if ('reason' in orders) throw xenError(op, 'EINVAL', `ring minimum above ${W.MAX_RING_SIZE} bytes`);
    const d = this.domain;
    const cleanup: (() => void)[] = [];
    const undo = () => {
      for (const f of cleanup.reverse()) f();
    };
    try {
      const port = d.eventChannels.allocUnbound(peer);
      cleanup.push(() => d.eventChannels.unbind(port));
      const iface = d.grantSharer.share(peer, 1, { writable: true });
      cleanup.push(() => iface.unshare());
      const ifaceBytes = new Bytes(iface);
      const dv = new DataView(iface.buffer);
      dv.setUint16(W.LEFT_ORDER, orders.left, true);
      dv.setUint16(W.RIGHT_ORDER, orders.right, true);
      const u8 = ifaceBytes.u8;
      u8[W.CLI_LIVE] = W.LIVE_WAITING;
      u8[W.SRV_LIVE] = W.LIVE_CONNECTED;
      u8[W.CLI_NOTIFY] = W.NOTIFY_WRITE;
      u8[W.SRV_NOTIFY] = 0;
      let grantIndex = 0;
      const ringData = (order: number): RingData => {
        const inPage = W.inPageOffset(order);
        if (inPage !== undefined) return { kind: 'writable', bytes: ifaceBytes, offset: inPage };
        const pages = d.grantSharer.share(peer, W.ringPages(order), { writable: true });
        cleanup.push(() => pages.unshare());
        for (const ref of pages.refs) dv.setUint32(W.GRANTS + 4 * grantIndex++, ref, true);
        return { kind: 'writable', bytes: new Bytes(pages), offset: 0 };
      };
      const left = ringData(orders.left);
      const right = ringData(orders.right);
      this.registry.publish(d.domid, path, { ringRef: iface.refs[0]!, port });
      cleanup.push(() => this.registry.remove(d.domid, path));
      return new RingEndpoint({
        role: 'server',
        domain: d,
        port,
        iface,
        read: { size: 1 << orders.left, consAt: W.LEFT_CONS, prodAt: W.LEFT_PROD, data: left },
        write: { size: 1 << orders.right, consAt: W.RIGHT_CONS, prodAt: W.RIGHT_PROD, data: right },
        release: undo,
      });
    } catch (error) {
      undo();
      throw error;
    }
  }

  connect(options: { peer: DomainId; path: string }): VchanEndpoint {
    const op = 'libxenvchan_client_init';
    const { peer } = options;
    const path = this.#absolute(options.path);
    const entry = this.registry.lookup(peer, path);
    if (!entry) throw xenError(op, 'ENOENT', `domain ${peer} has not published ${path}`);
    // libxenvchan parses both keys with atoi and treats 0 as failure.
    if (entry.ringRef === 0 || entry.port === 0) throw xenError(op, 'EINVAL', `bad entry at ${path}`);
    const d = this.domain;
    const cleanup: (() => void)[] = [];
    const undo = () => {
      for (const f of cleanup.reverse()) f();
    };
    try {
      const port = d.eventChannels.bindInterdomain(peer, entry.port);
      cleanup.push(() => d.eventChannels.unbind(port));
      const iface: WritableMapping = d.grantMapper.mapWritable(peer, [entry.ringRef]);
      cleanup.push(() => iface.unmap());
      const ifaceBytes = new Bytes(iface);
      const dv = new DataView(iface.buffer);
      // Read the orders once: the server could change them under us (libxenvchan keeps a copy).
      const orders = W.checkOrders(dv.getUint16(W.LEFT_ORDER, true), dv.getUint16(W.RIGHT_ORDER, true));
      if ('reason' in orders) throw xenError(op, 'EINVAL', orders.reason);
      let grantIndex = 0;
      const grants = (count: number): number[] => {
        const refs: number[] = [];
        for (let i = 0; i < count; i++) refs.push(dv.getUint32(W.GRANTS + 4 * grantIndex++, true));
        return refs;
      };
      // LEFT is the client's write ring (mapped RW); RIGHT its read ring (mapped RO).
      let left: RingData;
      const leftInPage = W.inPageOffset(orders.left);
      if (leftInPage !== undefined) left = { kind: 'writable', bytes: ifaceBytes, offset: leftInPage };
      else {
        const m = d.grantMapper.mapWritable(peer, grants(W.ringPages(orders.left)));
        cleanup.push(() => m.unmap());
        left = { kind: 'writable', bytes: new Bytes(m), offset: 0 };
      }
      let right: RingData;
      const rightInPage = W.inPageOffset(orders.right);
      if (rightInPage !== undefined) right = { kind: 'writable', bytes: ifaceBytes, offset: rightInPage };
      else {
        const m: ReadOnlyMapping = d.grantMapper.mapReadOnly(peer, grants(W.ringPages(orders.right)));
        cleanup.push(() => m.unmap());
        right = { kind: 'read-only', pages: m.pages, offset: 0 };
      }
      const u8 = ifaceBytes.u8;
      u8[W.CLI_LIVE] = W.LIVE_CONNECTED;
      u8[W.SRV_NOTIFY] = W.NOTIFY_WRITE;
      const endpoint = new RingEndpoint({
        role: 'client',
        domain: d,
        port,
        iface,
        read: { size: 1 << orders.right, consAt: W.RIGHT_CONS, prodAt: W.RIGHT_PROD, data: right },
        write: { size: 1 << orders.left, consAt: W.LEFT_CONS, prodAt: W.LEFT_PROD, data: left },
        release: undo,
      });
      d.eventChannels.notify(port);
      return endpoint;
    } catch (error) {
      undo();
      throw error;
    }
  }
}
