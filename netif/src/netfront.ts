/**
 * netfront: our vif, connected to its backend (the upstream netvm). The handshake follows
 * what Linux's drivers/net/xen-netfront.c does (torvalds/linux @ v6.1) and what its
 * xen-netback requires: wait for the backend's InitWait, require `feature-rx-copy`, share
 * and initialise both rings, allocate an unbound channel, write ring refs, channel and our
 * receive features in one transaction, go straight to Connected (netback ignores
 * Initialised), and wait for the backend's Connected. Backend Closing/Closed ends us.
 */
import type { DomainId, Port, SharedPages } from '@moat/xen';
import type { XenstoreWatch } from '@moat/xenstore';
import {
  emptyResources,
  emptyStats,
  type FrameListener,
  type FrameMeta,
  type NetDevice,
  type NetDeviceState,
  type NetifCommonOptions,
  type NetifFeatures,
  type NetifResources,
  type NetifStats,
} from './device.ts';
import { defaultLog, RateLimitedLog } from './log.ts';
import { NetfrontRings } from './netfront-rings.ts';
import { onPort } from './ports.ts';
import {
  BackendKey,
  DEFAULT_MTU,
  FrontendKey,
  frontendPath,
  MAX_FRAME,
  parseXenbusState,
  RX_RING_SIZE,
  TX_RING_SIZE,
  XenbusState,
} from './wire.ts';

export interface NetfrontOptions extends NetifCommonOptions {
  /** Our device (default 0). */
  devid?: number;
  /** Checked against the frontend's `backend-id` when given (default: whatever it says). */
  backendDomid?: DomainId;
  /** What we ask the backend for (default everything). */
  features?: NetifFeatures;
  /** How long to wait for the backend at each handshake step (default 30 s); close() waits at most 5 s. */
  timeoutMs?: number;
}

interface Shared {
  txRing: SharedPages;
  rxRing: SharedPages;
  txPages: SharedPages;
  rxPages: SharedPages;
}

export class NetfrontDevice implements NetDevice {
  peer: DomainId = 0;
  mac = '';
  mtu = DEFAULT_MTU;
  readonly frontendPath: string;
  backendPath = '';
  readonly backendFeatures: Required<NetifFeatures> = {
    sg: false,
    gsoTcpv4: false,
    gsoTcpv6: false,
    ipv6CsumOffload: false,
  };
  private readonly counters = emptyStats();
  private readonly listeners = new Set<FrameListener>();
  private readonly closeListeners = new Set<(reason: string) => void>();
  private readonly log: RateLimitedLog;
  private readonly watches: XenstoreWatch[] = [];
  private shared: Shared | undefined;
  private port: Port | undefined;
  private stopEvents: (() => void) | undefined;
  private rings: NetfrontRings | undefined;
  private isConnected = false;
  private ended: string | undefined;
  private connectedPromise: Promise<void> | undefined;
  private pushQueued = false;
  private serviceScheduled = false;

  /** @internal use connectNetfront */
  constructor(
    private readonly options: NetfrontOptions,
    readonly devid: number,
  ) {
    this.frontendPath = frontendPath(options.xen.domid, devid);
    this.log = new RateLimitedLog(options.log ?? defaultLog);
  }

  get state(): NetDeviceState {
    if (this.ended !== undefined) return 'closed';
    return this.isConnected ? 'connected' : 'connecting';
  }

  private get name(): string {
    return `netfront vif${this.devid}`;
  }

  /** @internal the whole handshake; resolves once both ends are Connected. */
  async start(): Promise<void> {
    const xs = this.options.xenstore;
    const xen = this.options.xen;
    const timeoutMs = this.options.timeoutMs ?? 30_000;
    const f = this.frontendPath;
    const backend = await xs.tryRead(`${f}/${FrontendKey.backend}`);
    const backendId = (await xs.tryRead(`${f}/${FrontendKey.backendId}`))?.trim();
    if (backend === undefined || backendId === undefined || !/^[0-9]{1,5}$/.test(backendId))
      throw new Error(`${f}: the toolstack wrote no backend / backend-id`);
    if (this.options.backendDomid !== undefined && Number(backendId) !== this.options.backendDomid)
      throw new Error(`${f}: backend-id is ${backendId}, not ${this.options.backendDomid}`);
    this.peer = Number(backendId);
    this.backendPath = backend;
    this.mac = (await xs.tryRead(`${f}/${FrontendKey.mac}`))?.trim() ?? '';
    const mtu = Number((await xs.tryRead(`${f}/${FrontendKey.mtu}`)) ?? DEFAULT_MTU);
    this.mtu = Number.isInteger(mtu) && mtu >= 68 && mtu <= MAX_FRAME - 14 ? mtu : DEFAULT_MTU;
    const b = backend;

    // A backend left Closed by an earlier frontend of ours offers itself again when we
    // say Initialising (Linux netback's reconnect).
    const initial = parseXenbusState(await xs.tryRead(`${b}/${BackendKey.state}`));
    if (initial === XenbusState.Closed || initial === XenbusState.Closing)
      await xs.write(`${f}/${FrontendKey.state}`, String(XenbusState.Initialising));
    await xs.waitFor(
      `${b}/${BackendKey.state}`,
      (v) => {
        const s = parseXenbusState(v);
        return s === XenbusState.InitWait || s === XenbusState.Connected ? s : undefined;
      },
      { timeoutMs },
    );
    if ((await xs.tryRead(`${b}/${BackendKey.featureRxCopy}`))?.trim() !== '1')
      throw new Error(`${b}: the backend does not offer feature-rx-copy`);
    const offered = async (k: string) => (await xs.tryRead(`${b}/${k}`))?.trim() === '1';
    const want = this.options.features ?? {};
    const bf = this.backendFeatures;
    bf.sg = (want.sg ?? true) && (await offered(BackendKey.featureSg));
    bf.gsoTcpv4 = (want.gsoTcpv4 ?? true) && (await offered(BackendKey.featureGsoTcpv4));
    bf.gsoTcpv6 = (want.gsoTcpv6 ?? true) && (await offered(BackendKey.featureGsoTcpv6));
    bf.ipv6CsumOffload = (want.ipv6CsumOffload ?? true) && (await offered(BackendKey.featureIpv6CsumOffload));

    // Share rings and buffers, one gntalloc share each (a ring is one page).
    const sharer = xen.grantSharer;
    const shared: Partial<Shared> = {};
    try {
      shared.txRing = sharer.share(this.peer, 1);
      shared.rxRing = sharer.share(this.peer, 1);
      shared.txPages = sharer.share(this.peer, TX_RING_SIZE, { writable: false });
      shared.rxPages = sharer.share(this.peer, RX_RING_SIZE);
      this.port = xen.eventChannels.allocUnbound(this.peer);
    } finally {
      this.shared = shared as Shared;
    }
    const s = this.shared;
    this.rings = new NetfrontRings(
      s.txRing,
      s.rxRing,
      s.txPages.refs,
      s.txPages.buffer,
      s.rxPages.refs,
      s.rxPages.buffer,
      bf,
      this.counters,
      this.listeners,
    );
    this.rings.postAllRx();
    this.rings.rx.pushRequests();
    this.stopEvents = onPort(xen.eventChannels, this.port, () => {
      this.counters.eventsIn++;
      this.schedule();
    });
    const port = this.port;
    await xs.transaction(async (tx) => {
      await tx.write(`${f}/${FrontendKey.txRingRef}`, String(s.txRing.refs[0]));
      await tx.write(`${f}/${FrontendKey.rxRingRef}`, String(s.rxRing.refs[0]));
      await tx.write(`${f}/${FrontendKey.eventChannel}`, String(port));
      await tx.write(`${f}/${FrontendKey.requestRxCopy}`, '1');
      await tx.write(`${f}/${FrontendKey.featureRxNotify}`, '1');
      await tx.write(`${f}/${FrontendKey.featureSg}`, (want.sg ?? true) ? '1' : '0');
      await tx.write(`${f}/${FrontendKey.featureGsoTcpv4}`, (want.gsoTcpv4 ?? true) ? '1' : '0');
      await tx.write(`${f}/${FrontendKey.featureGsoTcpv6}`, (want.gsoTcpv6 ?? true) ? '1' : '0');
      await tx.write(
        `${f}/${FrontendKey.featureIpv6CsumOffload}`,
        (want.ipv6CsumOffload ?? true) ? '1' : '0',
      );
      await tx.write(`${f}/${FrontendKey.state}`, String(XenbusState.Connected));
    });
    await xs.waitFor(
      `${b}/${BackendKey.state}`,
      (v) => {
        const st = parseXenbusState(v);
        if (st === XenbusState.Connected) return true;
        if (st === XenbusState.Closing || st === XenbusState.Closed || v === undefined)
          throw new Error(`${b}: the backend went to state ${v ?? '(removed)'} instead of Connected`);
        return undefined;
      },
      { timeoutMs },
    );
    this.isConnected = true;
    this.watches.push(await xs.watch(`${b}/${BackendKey.state}`, { onEvent: () => this.backendChanged() }));
    this.kick();
    this.schedule();
  }

  private backendChanged(): void {
    if (this.ended !== undefined) return;
    this.options.xenstore
      .tryRead(`${this.backendPath}/${BackendKey.state}`)
      .then((v) => {
        const s = parseXenbusState(v);
        if (v === undefined || s === XenbusState.Closing || s === XenbusState.Closed)
          return this.shutdown(`the backend is ${v === undefined ? 'gone' : `in state ${s}`}`, false);
      })
      .catch((error: Error) => this.log.log(`${this.name}: reading the backend's state: ${error.message}`));
  }

  private kick(): void {
    if (this.port === undefined || this.ended !== undefined) return;
    this.counters.eventsOut++;
    try {
      this.options.xen.eventChannels.notify(this.port);
    } catch (error) {
      this.fatal(`notify failed: ${(error as Error).message}`);
    }
  }

  private schedule(): void {
    if (this.serviceScheduled || !this.rings || this.ended !== undefined) return;
    this.serviceScheduled = true;
    setImmediate(() => {
      this.serviceScheduled = false;
      this.service();
    });
  }

  private service(): void {
    const rings = this.rings;
    if (!rings || this.ended !== undefined) return;
    let r: ReturnType<NetfrontRings['receive']>;
    try {
      r = rings.receive();
    } catch (error) {
      this.fatal(`ring access failed: ${(error as Error).message}`);
      return;
    }
    if (!r.ok) {
      this.fatal(r.reason);
      return;
    }
    if (this.ended !== undefined) return;
    this.pushAndNotify();
    if (r.more) this.schedule();
  }

  /**
   * Publishes the RX buffers and TX requests written so far and sends one event if either
   * ring's event index asked for one: a pass costs the backend at most one interrupt (one
   * channel carries both; Linux's netback takes an event that finds no new work as spurious
   * and delays the next: xen_irq_lateeoi, torvalds/linux @ v6.1).
   */
  private pushAndNotify(): void {
    const rings = this.rings;
    if (!rings || this.ended !== undefined) return;
    const rx = rings.rx.pushRequests();
    const tx = rings.tx.pushRequests();
    if (rx || tx) this.kick();
  }

  private fatal(reason: string): void {
    this.counters.fatalErrors++;
    this.log.log(`${this.name}: disconnecting from backend ${this.peer}: ${reason}`);
    this.shutdown(reason, false).catch(() => undefined);
  }

  send(buf: Uint8Array, meta?: FrameMeta, off = 0, len = buf.length - off): boolean {
    const rings = this.rings;
    if (!rings || !this.isConnected || this.ended !== undefined || !rings.enqueue(buf, off, len, meta)) {
      this.counters.txDropped++;
      return false;
    }
    if (!this.pushQueued) {
      this.pushQueued = true;
      queueMicrotask(() => {
        this.pushQueued = false;
        this.pushAndNotify();
      });
    }
    return true;
  }

  onFrame(listener: FrameListener): () => void {
    // A listener that throws is our user's bug, not the peer's: log it, never cut the peer.
    const guarded: FrameListener = (buf, off, len, meta) => {
      try {
        listener(buf, off, len, meta);
      } catch (error) {
        this.log.log(`${this.name}: a frame listener threw: ${(error as Error).message}`);
      }
    };
    this.listeners.add(guarded);
    return () => this.listeners.delete(guarded);
  }

  onClose(listener: (reason: string) => void): () => void {
    if (this.ended !== undefined) {
      const reason = this.ended;
      queueMicrotask(() => listener(reason));
      return () => undefined;
    }
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  connected(): Promise<void> {
    if (this.ended !== undefined) return Promise.reject(new Error(`${this.name} ended: ${this.ended}`));
    return this.connectedPromise ?? Promise.resolve();
  }

  /** @internal */
  setConnecting(p: Promise<void>): void {
    this.connectedPromise = p;
  }

  stats(): NetifStats {
    return { ...this.counters };
  }

  resources(): NetifResources {
    const r = emptyResources();
    const s = this.shared;
    if (s) for (const p of [s.txRing, s.rxRing, s.txPages, s.rxPages]) if (p) r.grants += p.refs.length;
    if (this.port !== undefined) r.eventChannels = 1;
    r.watches = this.watches.length;
    return r;
  }

  /** TX pages the backend has not answered yet. */
  get txInFlight(): number {
    return this.rings?.txInFlight ?? 0;
  }

  /** Closing, wait (briefly) for the backend to close, Closed, and everything freed. */
  async close(): Promise<void> {
    await this.shutdown('closed by us', true);
  }

  private async shutdown(reason: string, polite: boolean): Promise<void> {
    if (this.ended !== undefined) return;
    this.ended = reason;
    this.isConnected = false;
    const xs = this.options.xenstore;
    const f = this.frontendPath;
    const watches = this.watches.splice(0);
    await Promise.all(watches.map((w) => w.close().catch(() => undefined)));
    const writeState = async (s: number) => {
      if (xs.connected && (await xs.exists(f).catch(() => false)))
        await xs.write(`${f}/${FrontendKey.state}`, String(s)).catch(() => undefined);
    };
    if (polite && this.backendPath) {
      await writeState(XenbusState.Closing);
      await xs
        .waitFor(
          `${this.backendPath}/${BackendKey.state}`,
          (v) => {
            const s = parseXenbusState(v);
            return v === undefined || s === XenbusState.Closing || s === XenbusState.Closed
              ? true
              : undefined;
          },
          { timeoutMs: Math.min(this.options.timeoutMs ?? 5_000, 5_000) },
        )
        .catch(() => undefined);
    }
    await writeState(XenbusState.Closed);
    this.release();
    for (const l of [...this.closeListeners]) l(reason);
    this.closeListeners.clear();
  }

  /** Frees the channel and every shared page. */
  private release(): void {
    this.rings = undefined;
    this.stopEvents?.();
    this.stopEvents = undefined;
    if (this.port !== undefined) {
      try {
        this.options.xen.eventChannels.unbind(this.port);
      } catch {
        // The channel went with the backend's domain; nothing left to free.
      }
      this.port = undefined;
    }
    const s = this.shared;
    this.shared = undefined;
    if (s) for (const p of [s.txRing, s.rxRing, s.txPages, s.rxPages]) p?.unshare();
  }
}

/** Connects our device `devid` (default 0) and resolves once both ends are Connected. */
export async function connectNetfront(options: NetfrontOptions): Promise<NetfrontDevice> {
  const device = new NetfrontDevice(options, options.devid ?? 0);
  const started = device.start();
  device.setConnecting(started);
  try {
    await started;
  } catch (error) {
    await device.close().catch(() => undefined);
    throw error;
  }
  return device;
}
