import { xenError } from '../errno.ts';
import { ReadOnlyView } from '../readonly-view.ts';
import {
  type DomainId,
  type EventChannels,
  type GrantCopier,
  type GrantCopySegment,
  type GrantMapper,
  type GrantRef,
  type GrantSharer,
  type Port,
  type ReadOnlyMapping,
  type SharedPages,
  type VchanEndpoint,
  type VchanProvider,
  type WritableMapping,
  type XenbusDevice,
  type XenDomain,
  XenError,
} from '../types.ts';
import {
  loadNativeAddon,
  type NativeAddon,
  type NativeEvtchn,
  type NativeMapping,
  type NativeVchan,
  type NativeXenbus,
  nativeAddonPath,
} from './addon.ts';
import { SharedIndex } from './shared-index.ts';

export { loadNativeAddon, nativeAddonPath };

/** Runs each listener, reporting a throwing one as an uncaught exception without stopping the rest. */
function callAll<A extends unknown[]>(listeners: Iterable<(...args: A) => void>, ...args: A): void {
  for (const l of [...listeners]) {
    try {
      l(...args);
    } catch (error) {
      queueMicrotask(() => {
        throw error;
      });
    }
  }
}

class NativeEventChannels implements EventChannels {
  #h: NativeEvtchn | undefined;
  readonly #listeners = new Set<(port: Port) => void>();
  #started = false;

  constructor(handle: NativeEvtchn) {
    this.#h = handle;
  }

  #live(op: string): NativeEvtchn {
    if (!this.#h) throw xenError(op, 'EBADF', 'event channels closed');
    return this.#h;
  }

  allocUnbound(remote: DomainId): Port {
    return this.#live('xenevtchn_bind_unbound_port').bindUnbound(remote);
  }
  bindInterdomain(remote: DomainId, remotePort: Port): Port {
    return this.#live('xenevtchn_bind_interdomain').bindInterdomain(remote, remotePort);
  }
  notify(port: Port): void {
    this.#live('xenevtchn_notify').notify(port);
  }
  unbind(port: Port): void {
    this.#live('xenevtchn_unbind').unbind(port);
  }
  onEvent(listener: (port: Port) => void): () => void {
    const h = this.#live('evtchn poll');
    this.#listeners.add(listener);
    if (!this.#started) {
      this.#started = true;
      // Ports stay masked (the kernel masks on delivery) until every listener ran.
      h.start((ports) => {
        for (const port of ports) {
          callAll(this.#listeners, port);
          try {
            this.#h?.unmask(port);
          } catch (error) {
            // A listener may have unbound the port (the evtchn driver then says ENOTCONN):
            // there is nothing left to unmask. Anything else is a real failure.
            if (!(error instanceof XenError && error.code === 'ENOTCONN')) throw error;
          }
        }
      });
    }
    return () => {
      this.#listeners.delete(listener);
    };
  }
  close(): void {
    this.#h?.close();
    this.#h = undefined;
    this.#listeners.clear();
  }
}

/**
 * A writable gntdev mapping or our gntalloc pages: the addon's external ArrayBuffer,
 * with shared indexes through SharedIndex (Atomics on an Int32Array, see
 * shared-index.ts for the measurement that chose it).
 */
export class NativeWritable implements WritableMapping, SharedPages {
  readonly #m: NativeMapping;
  readonly #index: SharedIndex;
  readonly buffer: ArrayBuffer;

  constructor(
    m: NativeMapping,
    readonly refs: readonly GrantRef[],
    readonly what: string,
  ) {
    this.#m = m;
    this.buffer = m.buffer;
    this.#index = new SharedIndex(this.buffer, what);
  }
  get mapped(): boolean {
    return this.#m.mapped;
  }
  #check(op: string): void {
    if (!this.#m.mapped) throw xenError(`${this.what} ${op}`, 'EBADF', 'already unmapped');
  }
  loadAcquire32(offset: number): number {
    this.#check('loadAcquire32');
    return this.#index.load(offset);
  }
  storeRelease32(offset: number, value: number): void {
    this.#check('storeRelease32');
    this.#index.store(offset, value);
  }
  unmap(): void {
    this.#m.unmap();
  }
  unshare(): void {
    this.#m.unmap();
  }
}

export class NativeReadOnly implements ReadOnlyMapping {
  readonly pages: ReadOnlyView;
  readonly #m: NativeMapping;
  constructor(m: NativeMapping) {
    this.#m = m;
    this.pages = new ReadOnlyView(
      {
        byteLength: m.byteLength,
        readU8: (o) => m.readU8(o),
        readU16: (o) => m.readU16(o),
        readU32: (o) => m.readU32(o),
        loadAcquire32: (o) => m.load32(o),
        copyTo: (t, to, o, l) => m.copyTo(t, to, o, l),
      },
      'read-only mapping',
    );
  }
  unmap(): void {
    this.pages.release();
    this.#m.unmap();
  }
}

/** The largest local buffer a pumped vchan end may ask for (each way). */
export const MAX_VCHAN_BUFFER = 16 * 1024 * 1024;

function vchanBuffer(bytes: number | undefined): number {
  const n = bytes ?? 0;
  if (!Number.isInteger(n) || n < 0 || n > MAX_VCHAN_BUFFER) {
    throw new RangeError(`vchan buffer must be an integer in 0..${MAX_VCHAN_BUFFER} bytes, got ${n}`);
  }
  return n;
}

class NativeVchanEndpoint implements VchanEndpoint {
  #v: NativeVchan | undefined;
  readonly #listeners = new Set<() => void>();
  #started = false;

  constructor(
    v: NativeVchan,
    readonly role: 'server' | 'client',
  ) {
    this.#v = v;
  }
  #live(op: string): NativeVchan {
    if (!this.#v) throw xenError(op, 'EBADF', 'vchan already closed');
    return this.#v;
  }
  read(into: Uint8Array): number {
    const n = this.#live('libxenvchan_read').read(into);
    return Math.max(n, 0); // closed and drained: state() says 'closed'
  }
  write(data: Uint8Array): number {
    const n = this.#live('libxenvchan_write').write(data);
    if (n < 0) throw xenError('libxenvchan_write', 'EPIPE', 'the peer closed the vchan');
    return n;
  }
  dataReady(): number {
    return this.#live('libxenvchan_data_ready').dataReady();
  }
  bufferSpace(): number {
    return this.#live('libxenvchan_buffer_space').bufferSpace();
  }
  state(): 'waiting' | 'open' | 'closed' {
    const s = this.#v?.isOpen() ?? 0;
    return s === 2 ? 'waiting' : s === 0 ? 'closed' : 'open';
  }
  onEvent(listener: () => void): () => void {
    const v = this.#live('vchan poll');
    this.#listeners.add(listener);
    if (!this.#started) {
      this.#started = true;
      v.start(() => callAll(this.#listeners));
    }
    return () => {
      this.#listeners.delete(listener);
    };
  }
  close(): void {
    this.#v?.close();
    this.#v = undefined;
    this.#listeners.clear();
  }
}

class NativeXenbusDevice implements XenbusDevice {
  #x: NativeXenbus | undefined;
  readonly #data = new Set<(chunk: Uint8Array) => void>();
  readonly #errors = new Set<(error: Error) => void>();
  #started = false;

  constructor(x: NativeXenbus) {
    this.#x = x;
  }
  write(message: Uint8Array): void {
    if (!this.#x) throw xenError('write /dev/xen/xenbus', 'EBADF', 'device closed');
    this.#x.write(message);
  }
  #start(): void {
    if (this.#started || !this.#x) return;
    this.#started = true;
    this.#x.start(
      (chunk) => callAll(this.#data, chunk),
      (error) => callAll(this.#errors, error),
    );
  }
  onData(listener: (chunk: Uint8Array) => void): () => void {
    this.#data.add(listener);
    this.#start();
    return () => {
      this.#data.delete(listener);
    };
  }
  onError(listener: (error: Error) => void): () => void {
    this.#errors.add(listener);
    this.#start();
    return () => {
      this.#errors.delete(listener);
    };
  }
  close(): void {
    this.#x?.close();
    this.#x = undefined;
  }
}

class NativeDomain implements XenDomain {
  readonly eventChannels: EventChannels;
  readonly grantMapper: GrantMapper;
  readonly grantSharer: GrantSharer;
  readonly grantCopier: GrantCopier;
  readonly vchan: VchanProvider;

  constructor(
    a: NativeAddon,
    events: NativeEvtchn,
    readonly domid: DomainId,
  ) {
    this.eventChannels = new NativeEventChannels(events);
    this.grantMapper = {
      mapWritable: (domain, refs) =>
        new NativeWritable(a.mapGrants(domain, [...refs], true), [...refs], 'gntdev mapping'),
      mapReadOnly: (domain, refs) => new NativeReadOnly(a.mapGrants(domain, [...refs], false)),
    };
    this.grantSharer = {
      share: (domain, pageCount, options) => {
        const { refs, mapping } = a.shareGrants(domain, pageCount, options?.writable ?? true);
        return new NativeWritable(mapping, refs, 'gntalloc pages');
      },
    };
    this.grantCopier = {
      copy: (segments: readonly GrantCopySegment[]) =>
        a.grantCopy(
          segments.map((s) =>
            s.direction === 'from-grant'
              ? {
                  toGrant: false,
                  domain: s.domain,
                  ref: s.ref,
                  offset: s.offset,
                  length: s.length,
                  buffer: s.target,
                  bufferOffset: s.targetOffset,
                }
              : {
                  toGrant: true,
                  domain: s.domain,
                  ref: s.ref,
                  offset: s.offset,
                  length: s.length,
                  buffer: s.source,
                  bufferOffset: s.sourceOffset,
                },
          ),
        ),
    };
    this.vchan = {
      listen: (o) =>
        new NativeVchanEndpoint(
          a.serverInit(o.peer, o.path, o.readMin, o.writeMin, vchanBuffer(o.buffer)),
          'server',
        ),
      connect: (o) => new NativeVchanEndpoint(a.clientInit(o.peer, o.path, vchanBuffer(o.buffer)), 'client'),
    };
  }
}

/**
 * This domain on real Xen. Opens /dev/xen/evtchn at once (so on a host without Xen it
 * throws XenError('open /dev/xen/evtchn', ENOENT)); gntdev and gntalloc are opened on
 * first use. The domain id is `options.domid` or read from xenstore (ownDomainId()).
 */
export function openNativeDomain(options: { domid?: DomainId } = {}): XenDomain {
  const a = loadNativeAddon();
  const events = new a.Evtchn(); // fails first, and clearly, where there is no Xen
  try {
    return new NativeDomain(a, events, options.domid ?? a.ownDomainId());
  } catch (error) {
    events.close();
    throw error;
  }
}

/** /dev/xen/xenbus (a domU's xenstore connection), non-blocking. */
export function openXenbusDevice(path = '/dev/xen/xenbus'): XenbusDevice {
  return new NativeXenbusDevice(new (loadNativeAddon().Xenbus)(path));
}

/**
 * Our own domain id: libxenstore's xs_read of the relative key `domid` (as libxenvchan
 * does), i.e. /local/domain/<self>/domid written by the toolstack. Blocks once on
 * xenstore; call it at start-up.
 */
export function ownDomainId(): DomainId {
  return loadNativeAddon().ownDomainId();
}
