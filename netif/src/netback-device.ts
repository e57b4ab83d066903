/**
 * One client's vif, backend side: the xenbus walk and the connection's Xen resources. The
 * walk follows Linux drivers/net/xen-netback/xenbus.c (torvalds/linux @ v6.1) and what libxl
 * waits for (tools/libs/light/libxl_device.c, xen-project/xen @ c447b7308b13): on creation
 * we write our features, `hotplug-status = connected` (no hotplug script runs in our
 * domain) and InitWait; on frontend Connected (or Initialised) we map its rings, bind its
 * channel and go Connected; frontend Closing/Closed, or the toolstack's `online = 0` with
 * `state = 5`, disconnect us and we answer Closing/Closed; a frontend that comes back
 * (Initialising after Closed) finds us in InitWait again.
 */
import type { DomainId, Port, WritableMapping } from '@moat/xen';
import type { XenstoreClient, XenstoreWatch } from '@moat/xenstore';
import {
  emptyResources,
  emptyStats,
  type FrameListener,
  type FrameMeta,
  type NetDevice,
  type NetDeviceState,
  type NetifFeatures,
  type NetifResources,
  type NetifStats,
  type NetifXen,
} from './device.ts';
import { FrameQueue } from './frame-queue.ts';
import type { RateLimitedLog } from './log.ts';
import { type FrontendFeatures, NetbackRings, type NetbackScratch } from './netback-rings.ts';
import { onPort } from './ports.ts';
import {
  BackendKey,
  DEFAULT_MTU,
  FrontendKey,
  HOTPLUG_CONNECTED,
  MAX_FRAME,
  parseXenbusState,
  XenbusState,
  type XenbusStateValue,
} from './wire.ts';

/** What a NetbackDevice needs from its service. */
export interface NetbackContext {
  xen: NetifXen;
  xenstore: XenstoreClient;
  log: RateLimitedLog;
  scratch: NetbackScratch;
  features: Required<NetifFeatures>;
  queueBytes: number;
  /** After writing Closed with `online = 0`, remove our backend directory this much later (ms); -1 never. */
  removeClosedAfterMs: number;
  /** Called once the device has ended and released everything. */
  ended(device: NetbackDevice): void;
}

interface Connection {
  txRing: WritableMapping;
  rxRing: WritableMapping;
  port: Port;
  stopEvents: () => void;
  rings: NetbackRings;
}

export class NetbackDevice implements NetDevice {
  mac = '';
  mtu = DEFAULT_MTU;
  frontendPath = '';
  readonly frontendFeatures: FrontendFeatures = {
    sg: false,
    gsoTcpv4: false,
    gsoTcpv6: false,
    ipv6CsumOffload: false,
    rxNotify: false,
    csumOffload: true,
  };
  private readonly counters = emptyStats();
  private readonly listeners = new Set<FrameListener>();
  private readonly closeListeners = new Set<(reason: string) => void>();
  private readonly connectWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly watches: XenstoreWatch[] = [];
  private readonly queue: FrameQueue;
  private conn: Connection | undefined;
  /** Our xenbus state as last written. */
  private ours: XenbusStateValue = XenbusState.Initialising;
  private ended: string | undefined;
  /** xenstore steps run one at a time, in order. */
  private steps: Promise<void> = Promise.resolve();
  private reconsiderQueued = false;
  private serviceScheduled = false;
  private flushQueued = false;
  /**
   * A ring push asked for an event: sent once at the end of the pass, so TX and RX responses
   * of one pass cost the frontend one interrupt (one channel carries both, and Linux's
   * netfront counts an event that finds nothing new as spurious and delays its next one:
   * drivers/xen/events/events_base.c, xen_irq_lateeoi, torvalds/linux @ v6.1).
   */
  private notifyWanted = false;
  private removal: NodeJS.Timeout | undefined;

  constructor(
    private readonly ctx: NetbackContext,
    readonly peer: DomainId,
    readonly devid: number,
    readonly backendPath: string,
  ) {
    this.queue = new FrameQueue(ctx.queueBytes);
  }

  get state(): NetDeviceState {
    if (this.ended !== undefined) return 'closed';
    return this.conn && this.ours === XenbusState.Connected ? 'connected' : 'connecting';
  }

  /** @internal Reads the toolstack's keys, offers our features, goes InitWait, watches both ends. */
  async start(): Promise<void> {
    const xs = this.ctx.xenstore;
    const b = this.backendPath;
    const frontend = await xs.tryRead(`${b}/${BackendKey.frontend}`);
    const frontendId = await xs.tryRead(`${b}/${BackendKey.frontendId}`);
    if (frontend === undefined || frontendId?.trim() !== String(this.peer))
      throw new Error(`${b}: no frontend, or frontend-id ${frontendId} is not ${this.peer}`);
    this.frontendPath = frontend;
    this.mac = (await xs.tryRead(`${b}/${BackendKey.mac}`)) ?? '';
    const mtu = Number((await xs.tryRead(`${b}/${BackendKey.mtu}`)) ?? DEFAULT_MTU);
    this.mtu = Number.isInteger(mtu) && mtu >= 68 && mtu <= MAX_FRAME - 14 ? mtu : DEFAULT_MTU;
    const f = this.ctx.features;
    await xs.transaction(async (tx) => {
      await tx.write(`${b}/${BackendKey.featureSg}`, f.sg ? '1' : '0');
      await tx.write(`${b}/${BackendKey.featureGsoTcpv4}`, f.gsoTcpv4 ? '1' : '0');
      await tx.write(`${b}/${BackendKey.featureGsoTcpv6}`, f.gsoTcpv6 ? '1' : '0');
      await tx.write(`${b}/${BackendKey.featureIpv6CsumOffload}`, f.ipv6CsumOffload ? '1' : '0');
      await tx.write(`${b}/${BackendKey.featureRxCopy}`, '1');
      await tx.write(`${b}/${BackendKey.featureRxFlip}`, '0');
      // libxl waits for this after InitWait; a hotplug script would write it (vif-bridge),
      // but none runs in a domU backend, so the backend itself does.
      await tx.write(`${b}/${BackendKey.hotplugStatus}`, HOTPLUG_CONNECTED);
      await tx.write(`${b}/${BackendKey.state}`, String(XenbusState.InitWait));
    });
    this.ours = XenbusState.InitWait;
    const onEvent = () => this.reconsider();
    this.watches.push(await xs.watch(`${this.frontendPath}/${FrontendKey.state}`, { onEvent }));
    this.watches.push(await xs.watch(`${b}/${BackendKey.state}`, { onEvent }));
    this.watches.push(await xs.watch(`${b}/${BackendKey.online}`, { onEvent }));
  }

  /** Coalesces watch events into one re-read of both states. */
  private reconsider(): void {
    if (this.ended !== undefined || this.reconsiderQueued) return;
    this.reconsiderQueued = true;
    this.steps = this.steps.then(async () => {
      this.reconsiderQueued = false;
      if (this.ended !== undefined) return;
      try {
        await this.walk();
      } catch (error) {
        this.ctx.log.log(`netback ${this.name}: xenbus step failed: ${(error as Error).message}`);
      }
    });
  }

  private get name(): string {
    return `vif${this.peer}.${this.devid}`;
  }

  private async walk(): Promise<void> {
    const xs = this.ctx.xenstore;
    const b = this.backendPath;
    // A removed frontend directory may read as EACCES (its parent is not ours to read): absent.
    const frontState = parseXenbusState(
      await xs.tryRead(`${this.frontendPath}/${FrontendKey.state}`).catch((error: { code?: string }) => {
        if (error.code === 'EACCES') return undefined;
        throw error;
      }),
    );
    const online = (await xs.tryRead(`${b}/${BackendKey.online}`))?.trim();
    const backState = parseXenbusState(await xs.tryRead(`${b}/${BackendKey.state}`));
    if (this.ended !== undefined) return;
    if (backState === undefined && frontState === undefined) return; // being removed: the service ends us
    const toolstackClosing =
      online === '0' && backState === XenbusState.Closing && this.ours !== XenbusState.Closing;
    const frontGone =
      frontState === undefined || frontState === XenbusState.Closed || frontState === XenbusState.Unknown;
    if (toolstackClosing || (online === '0' && this.ours === XenbusState.Closing)) {
      this.disconnect();
      this.ours = XenbusState.Closing;
      if (frontGone || frontState === XenbusState.Closing) {
        await this.setState(XenbusState.Closed);
        this.scheduleRemoval();
      }
      return;
    }
    if (online === '0' && backState === XenbusState.Closed) {
      this.scheduleRemoval();
      return;
    }
    switch (frontState) {
      case XenbusState.Initialised:
      case XenbusState.Connected:
        if (this.ours === XenbusState.InitWait) await this.connect();
        return;
      case XenbusState.Closing:
        this.disconnect();
        if (this.ours !== XenbusState.Closing && this.ours !== XenbusState.Closed)
          await this.setState(XenbusState.Closing);
        return;
      case XenbusState.Closed:
      case XenbusState.Unknown:
      case undefined:
        this.disconnect();
        if (this.ours !== XenbusState.Closed && this.ours !== XenbusState.InitWait)
          await this.setState(XenbusState.Closed);
        return;
      case XenbusState.Initialising:
        // A frontend that starts again after Closed: offer ourselves again (Linux's reconnect).
        if (this.ours === XenbusState.Closed || this.ours === XenbusState.Closing) {
          this.disconnect();
          if (online !== '0') await this.setState(XenbusState.InitWait);
        }
        return;
      default:
        return;
    }
  }

  /**
   * What `xl devd` does in a driver domain (tools/libs/light/libxl_device.c,
   * backend_watch_callback → remove_device, xen-project/xen @ c447b7308b13): once the
   * backend is Closed with `online = 0`, remove its directory; libxl in dom0 waits for that
   * (LIBXL_DESTROY_TIMEOUT, 10 s) to finish a detach. Done a little later, not at once:
   * libxl must first have read Closed, and fails the detach if the node is gone before
   * (seen in the lab). The scan that then misses the directory ends this device.
   */
  private scheduleRemoval(): void {
    if (this.removal || this.ctx.removeClosedAfterMs < 0 || this.ended !== undefined) return;
    this.removal = setTimeout(() => {
      this.removal = undefined;
      if (this.ended !== undefined) return;
      this.ctx.xenstore.rm(this.backendPath).catch((error: { code?: string; message: string }) => {
        if (error.code !== 'ENOENT')
          this.ctx.log.log(`netback ${this.name}: removing ${this.backendPath}: ${error.message}`);
      });
    }, this.ctx.removeClosedAfterMs);
  }

  private async setState(state: XenbusStateValue): Promise<void> {
    this.ours = state;
    // Never recreate a directory the toolstack removed (the write would make nodes we own).
    if (!(await this.ctx.xenstore.exists(this.backendPath))) return;
    await this.ctx.xenstore.write(`${this.backendPath}/${BackendKey.state}`, String(state));
  }

  /** Reads the frontend's rings, channel and features, maps and binds, goes Connected. */
  private async connect(): Promise<void> {
    const xs = this.ctx.xenstore;
    const f = this.frontendPath;
    const read = (k: string) => xs.tryRead(`${f}/${k}`);
    const flag = async (k: string) => (await read(k))?.trim() === '1';
    const txRef = decimal(await read(FrontendKey.txRingRef));
    const rxRef = decimal(await read(FrontendKey.rxRingRef));
    let port = decimal(await read(FrontendKey.eventChannel));
    const queues = await read(FrontendKey.multiQueueNumQueues);
    if (txRef === undefined || rxRef === undefined)
      return this.refuse(`frontend wrote no valid tx-ring-ref/rx-ring-ref`);
    if (port === undefined) {
      const split = await read(FrontendKey.eventChannelTx);
      return this.refuse(
        split !== undefined
          ? 'frontend uses split event channels, which we do not offer'
          : 'frontend wrote no valid event-channel',
      );
    }
    if (queues !== undefined && queues.trim() !== '1')
      return this.refuse(`frontend asks for ${queues} queues; we offer one`);
    if (!(await flag(FrontendKey.requestRxCopy)))
      return this.refuse('frontend did not ask for rx-copy (the only receive mode)');
    const ff = this.frontendFeatures;
    ff.rxNotify = await flag(FrontendKey.featureRxNotify);
    ff.sg = await flag(FrontendKey.featureSg);
    ff.gsoTcpv4 = await flag(FrontendKey.featureGsoTcpv4);
    ff.gsoTcpv6 = await flag(FrontendKey.featureGsoTcpv6);
    ff.ipv6CsumOffload = await flag(FrontendKey.featureIpv6CsumOffload);
    ff.csumOffload = !(await flag(FrontendKey.featureNoCsumOffload));
    if (this.ended !== undefined || this.conn) return;
    const xen = this.ctx.xen;
    let txRing: WritableMapping | undefined;
    let rxRing: WritableMapping | undefined;
    let local: Port | undefined;
    try {
      txRing = xen.grantMapper.mapWritable(this.peer, [txRef]);
      rxRing = xen.grantMapper.mapWritable(this.peer, [rxRef]);
      local = xen.eventChannels.bindInterdomain(this.peer, port);
    } catch (error) {
      txRing?.unmap();
      rxRing?.unmap();
      return this.refuse(`cannot map its rings or bind its channel: ${(error as Error).message}`);
    }
    port = local;
    const rings = new NetbackRings(
      txRing,
      rxRing,
      this.peer,
      ff,
      xen.grantCopier,
      this.ctx.scratch,
      this.counters,
      this.listeners,
      () => {
        this.notifyWanted = true;
      },
    );
    let attached = false;
    try {
      attached = rings.attach();
    } catch {
      attached = false;
    }
    if (!attached) {
      txRing.unmap();
      rxRing.unmap();
      try {
        xen.eventChannels.unbind(local);
      } catch {
        // Gone with its domain.
      }
      return this.refuse('its rings hold impossible indexes (req_prod more than a ring past rsp_prod)');
    }
    const stopEvents = onPort(xen.eventChannels, local, () => {
      this.counters.eventsIn++;
      this.schedule();
    });
    this.conn = { txRing, rxRing, port: local, stopEvents, rings };
    await this.setState(XenbusState.Connected);
    if (this.ended !== undefined || !this.conn) return;
    for (const w of this.connectWaiters.splice(0)) w.resolve();
    this.schedule();
  }

  /** A frontend we cannot serve: log, and Closing so it knows (as xenbus_dev_fatal). */
  private async refuse(reason: string): Promise<void> {
    this.counters.fatalErrors++;
    this.ctx.log.log(`netback ${this.name}: refusing frontend: ${reason}`);
    this.disconnect();
    await this.setState(XenbusState.Closing);
  }

  /** Sends the event a ring push asked for during this pass, if any. */
  private notifyIfWanted(): void {
    if (!this.notifyWanted) return;
    this.notifyWanted = false;
    this.kick();
  }

  private kick(): void {
    const c = this.conn;
    if (!c) return;
    this.counters.eventsOut++;
    try {
      this.ctx.xen.eventChannels.notify(c.port);
    } catch (error) {
      this.fatal(`notify failed: ${(error as Error).message}`);
    }
  }

  /** Runs the rings on the next turn (so several events and sends make one pass). */
  private schedule(): void {
    if (this.serviceScheduled || !this.conn) return;
    this.serviceScheduled = true;
    setImmediate(() => {
      this.serviceScheduled = false;
      this.service();
    });
  }

  private service(): void {
    const c = this.conn;
    if (!c) return;
    let more = false;
    try {
      const r = c.rings.receive();
      if (!r.ok) {
        this.fatal(r.reason);
        return;
      }
      more = r.more;
      if (!this.conn) return; // a listener closed us
      const t = c.rings.transmit(this.queue);
      if (!t.ok) {
        this.fatal(t.reason);
        return;
      }
      more ||= t.more;
    } catch (error) {
      // Mappings gone under us (the client was destroyed): end this client only.
      this.fatal(`ring access failed: ${(error as Error).message}`);
      return;
    }
    this.notifyIfWanted();
    if (more) this.schedule();
  }

  /** A protocol violation: this client loses its connection; nobody else notices. */
  private fatal(reason: string): void {
    this.counters.fatalErrors++;
    this.ctx.log.log(`netback ${this.name}: disconnecting client: ${reason}`);
    this.disconnect();
    this.ours = XenbusState.Closing;
    this.steps = this.steps.then(() => this.setState(XenbusState.Closing)).catch(() => undefined);
  }

  private disconnect(): void {
    const c = this.conn;
    if (!c) return;
    this.conn = undefined;
    this.notifyWanted = false;
    this.queue.clear();
    c.stopEvents();
    try {
      this.ctx.xen.eventChannels.unbind(c.port);
    } catch {
      // The client's domain is gone and took the channel with it; nothing left to free.
    }
    c.txRing.unmap();
    c.rxRing.unmap();
  }

  send(buf: Uint8Array, meta?: FrameMeta, off = 0, len = buf.length - off): boolean {
    if (!this.conn || len <= 0 || len > MAX_FRAME || !this.queue.push(buf, off, len, meta)) {
      this.counters.txDropped++;
      return false;
    }
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => {
        this.flushQueued = false;
        this.flush();
      });
    }
    return true;
  }

  private flush(): void {
    const c = this.conn;
    if (!c) return;
    try {
      const t = c.rings.transmit(this.queue);
      if (!t.ok) {
        this.fatal(t.reason);
        return;
      }
      this.notifyIfWanted();
      if (t.more) this.schedule();
    } catch (error) {
      this.fatal(`ring access failed: ${(error as Error).message}`);
    }
  }

  onFrame(listener: FrameListener): () => void {
    // A listener that throws is our user's bug, not the peer's: log it, never cut the peer.
    const guarded: FrameListener = (buf, off, len, meta) => {
      try {
        listener(buf, off, len, meta);
      } catch (error) {
        this.ctx.log.log(`${this.name}: a frame listener threw: ${(error as Error).message}`);
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
    if (this.ended !== undefined)
      return Promise.reject(new Error(`netback ${this.name} ended: ${this.ended}`));
    if (this.state === 'connected') return Promise.resolve();
    return new Promise((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
  }

  stats(): NetifStats {
    return { ...this.counters };
  }

  resources(): NetifResources {
    const r = emptyResources();
    if (this.conn) {
      r.mappings = 2;
      r.eventChannels = 1;
    }
    r.watches = this.watches.length;
    return r;
  }

  /** Stops serving this client: Closed, everything released. */
  async close(): Promise<void> {
    if (this.ended !== undefined) return;
    this.disconnect();
    await this.steps.catch(() => undefined);
    await this.setState(XenbusState.Closed).catch(() => undefined);
    await this.end('closed by us');
  }

  /** @internal The toolstack removed the device (detach, or the client was destroyed). */
  async destroy(reason: string): Promise<void> {
    if (this.ended !== undefined) return;
    this.disconnect();
    await this.end(reason);
  }

  private async end(reason: string): Promise<void> {
    if (this.ended !== undefined) return;
    this.ended = reason;
    if (this.removal) clearTimeout(this.removal);
    this.removal = undefined;
    this.disconnect();
    this.ctx.ended(this);
    const watches = this.watches.splice(0);
    await Promise.all(watches.map((w) => w.close().catch(() => undefined)));
    for (const w of this.connectWaiters.splice(0))
      w.reject(new Error(`netback ${this.name} ended: ${reason}`));
    for (const l of [...this.closeListeners]) l(reason);
    this.closeListeners.clear();
  }

  /** Why the device ended, once it has. */
  get endReason(): string | undefined {
    return this.ended;
  }

  /** Accumulated counters to fold into the service's totals. */
  get counterSnapshot(): NetifStats {
    return this.counters;
  }
}

/** A strict decimal uint32 from xenstore, or undefined. */
function decimal(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (!/^[0-9]{1,10}$/.test(t)) return undefined;
  const n = Number(t);
  return n <= 0xffffffff ? n : undefined;
}
