/**
 * Hand-driven peers for hostile-peer tests and the fuzz target: a frontend and a backend
 * that do the xenbus handshake correctly and then let the test write anything into the
 * shared rings and notify whenever it likes.
 */
import type { DomainId, Port, SharedPages, WritableMapping } from '@moat/xen';
import type { SimDomain } from '@moat/xen/sim';
import type { XenstoreClient } from '@moat/xenstore';
import { RING_REQ_EVENT, RING_REQ_PROD, RING_RSP_EVENT, RING_RSP_PROD, XenbusState } from '../wire.ts';

/** A frontend whose rings the test writes by hand. */
export class RawFrontend {
  readonly txRing: SharedPages;
  readonly rxRing: SharedPages;
  /** Pages the test may point TX requests at (granted read-only) and RX requests at (writable). */
  readonly txPages: SharedPages;
  readonly rxPages: SharedPages;
  readonly port: Port;
  readonly tx: DataView;
  readonly rx: DataView;

  private constructor(
    readonly domain: SimDomain,
    readonly backend: DomainId,
    pages: number,
  ) {
    const sharer = domain.grantSharer;
    this.txRing = sharer.share(backend, 1);
    this.rxRing = sharer.share(backend, 1);
    this.txPages = sharer.share(backend, pages, { writable: false });
    this.rxPages = sharer.share(backend, pages);
    this.port = domain.eventChannels.allocUnbound(backend);
    this.tx = new DataView(this.txRing.buffer);
    this.rx = new DataView(this.rxRing.buffer);
    for (const v of [this.tx, this.rx]) {
      v.setUint32(RING_REQ_EVENT, 1, true);
      v.setUint32(RING_RSP_EVENT, 1, true);
    }
  }

  /**
   * Writes the frontend keys (`keys` overrides or adds any, e.g. a bogus `tx-ring-ref`) and
   * state 4 under `device/vif/<devid>`, after the backend reached InitWait.
   */
  static async connect(options: {
    domain: SimDomain;
    xenstore: XenstoreClient;
    backend: DomainId;
    devid?: number;
    pages?: number;
    keys?: Record<string, string>;
    /** Rings as a previous backend left them: both producer indexes at this value. */
    startIndex?: number;
  }): Promise<RawFrontend> {
    const f = `/local/domain/${options.domain.domid}/device/vif/${options.devid ?? 0}`;
    const xs = options.xenstore;
    const b = await xs.readString(`${f}/backend`);
    await xs.waitFor(`${b}/state`, (v) => (v === String(XenbusState.InitWait) ? true : undefined), {
      timeoutMs: 5000,
    });
    const raw = new RawFrontend(options.domain, options.backend, options.pages ?? 32);
    if (options.startIndex !== undefined)
      for (const v of [raw.tx, raw.rx]) {
        v.setUint32(RING_REQ_PROD, options.startIndex >>> 0, true);
        v.setUint32(RING_RSP_PROD, options.startIndex >>> 0, true);
      }
    const keys: Record<string, string> = {
      'tx-ring-ref': String(raw.txRing.refs[0]),
      'rx-ring-ref': String(raw.rxRing.refs[0]),
      'event-channel': String(raw.port),
      'request-rx-copy': '1',
      'feature-rx-notify': '1',
      'feature-sg': '1',
      'feature-gso-tcpv4': '1',
      'feature-gso-tcpv6': '1',
      ...options.keys,
    };
    await xs.transaction(async (tx) => {
      for (const [k, v] of Object.entries(keys)) await tx.write(`${f}/${k}`, v);
      await tx.write(`${f}/state`, String(XenbusState.Connected));
    });
    return raw;
  }

  /** Ends its grants and its channel (a frontend tearing down before it reconnects). */
  release(): void {
    for (const p of [this.txRing, this.rxRing, this.txPages, this.rxPages]) p.unshare();
    try {
      this.domain.eventChannels.unbind(this.port);
    } catch {
      // Already closed with the domain.
    }
  }

  /** Writes `req_prod` of the TX ring (or RX ring) as is. */
  setTxReqProd(value: number): void {
    this.txRing.storeRelease32(RING_REQ_PROD, value >>> 0);
  }
  setRxReqProd(value: number): void {
    this.rxRing.storeRelease32(RING_REQ_PROD, value >>> 0);
  }
  txRspProd(): number {
    return this.txRing.loadAcquire32(RING_RSP_PROD);
  }
  rxRspProd(): number {
    return this.rxRing.loadAcquire32(RING_RSP_PROD);
  }
  notify(): void {
    this.domain.eventChannels.notify(this.port);
  }
  /** Offset of TX slot `i` / RX slot `i` in their ring pages. */
  static txSlot(i: number): number {
    return 64 + (i & 255) * 12;
  }
  static rxSlot(i: number): number {
    return 64 + (i & 255) * 8;
  }
}

/** A backend whose rings the test writes by hand (for hostile-backend tests of netfront). */
export class RawBackend {
  private constructor(
    readonly txRing: WritableMapping,
    readonly rxRing: WritableMapping,
    readonly port: Port,
    readonly domain: SimDomain,
    readonly tx: DataView,
    readonly rx: DataView,
  ) {}

  /**
   * Offers a backend for the frontend's vif: InitWait with rx-copy (and sg/gso unless told
   * otherwise), waits for the frontend's Connected, maps its rings, binds, goes Connected.
   */
  static async serve(options: {
    domain: SimDomain;
    xenstore: XenstoreClient;
    frontend: DomainId;
    devid?: number;
    features?: boolean;
  }): Promise<RawBackend> {
    const xs = options.xenstore;
    const b = `/local/domain/${options.domain.domid}/backend/vif/${options.frontend}/${options.devid ?? 0}`;
    const on = (options.features ?? true) ? '1' : '0';
    await xs.transaction(async (tx) => {
      await tx.write(`${b}/feature-rx-copy`, '1');
      await tx.write(`${b}/feature-sg`, on);
      await tx.write(`${b}/feature-gso-tcpv4`, on);
      await tx.write(`${b}/feature-gso-tcpv6`, on);
      await tx.write(`${b}/hotplug-status`, 'connected');
      await tx.write(`${b}/state`, String(XenbusState.InitWait));
    });
    const f = await xs.readString(`${b}/frontend`);
    await xs.waitFor(`${f}/state`, (v) => (v === String(XenbusState.Connected) ? true : undefined), {
      timeoutMs: 5000,
    });
    const txRef = Number(await xs.readString(`${f}/tx-ring-ref`));
    const rxRef = Number(await xs.readString(`${f}/rx-ring-ref`));
    const remotePort = Number(await xs.readString(`${f}/event-channel`));
    const txRing = options.domain.grantMapper.mapWritable(options.frontend, [txRef]);
    const rxRing = options.domain.grantMapper.mapWritable(options.frontend, [rxRef]);
    const port = options.domain.eventChannels.bindInterdomain(options.frontend, remotePort);
    await xs.write(`${b}/state`, String(XenbusState.Connected));
    return new RawBackend(
      txRing,
      rxRing,
      port,
      options.domain,
      new DataView(txRing.buffer),
      new DataView(rxRing.buffer),
    );
  }

  setTxRspProd(value: number): void {
    this.txRing.storeRelease32(RING_RSP_PROD, value >>> 0);
  }
  setRxRspProd(value: number): void {
    this.rxRing.storeRelease32(RING_RSP_PROD, value >>> 0);
  }
  txReqProd(): number {
    return this.txRing.loadAcquire32(RING_REQ_PROD);
  }
  rxReqProd(): number {
    return this.rxRing.loadAcquire32(RING_REQ_PROD);
  }
  notify(): void {
    this.domain.eventChannels.notify(this.port);
  }
}
