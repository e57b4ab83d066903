/**
 * netback: the backend of client domains' vifs. NetbackService watches our `backend/vif`
 * directory, where the toolstack creates `<frontend-domid>/<devid>` for each client vif
 * whose backend is our domain (a Qubes netvm's role); each becomes a NetbackDevice, and
 * when the toolstack removes the directory (detach, or the client was destroyed) the
 * device ends and frees everything.
 */
import type { DomainId } from '@moat/xen';
import type { XenstoreWatch } from '@moat/xenstore';
import {
  addResources,
  emptyResources,
  emptyStats,
  type NetifCommonOptions,
  type NetifFeatures,
  type NetifResources,
  type NetifStats,
} from './device.ts';
import { defaultLog, RateLimitedLog } from './log.ts';
import { type NetbackContext, NetbackDevice } from './netback-device.ts';
import { NetbackScratch } from './netback-rings.ts';

export { NetbackDevice } from './netback-device.ts';
export type { FrontendFeatures } from './netback-rings.ts';

export interface NetbackOptions extends NetifCommonOptions {
  /** Our domain id (default `xen.domid`): we serve `/local/domain/<domid>/backend/vif`. */
  domid?: DomainId;
  /** Called for each client device as soon as the toolstack created it (before it connects). */
  onDevice?: (device: NetbackDevice) => void;
  /** What we offer (default: everything: sg, gso-tcpv4/6, ipv6 checksum offload). */
  features?: NetifFeatures;
  /**
   * `xl devd`'s part: remove a backend directory this long (ms) after it went Closed with
   * `online = 0` (default 2000; libxl in dom0 waits up to 10 s for it). -1: never (when a
   * real xl devd runs beside us).
   */
  removeClosedAfterMs?: number;
}

const STAT_KEYS = Object.keys(emptyStats()) as (keyof NetifStats)[];

export class NetbackService {
  readonly domid: DomainId;
  /** `/local/domain/<domid>/backend/vif` */
  readonly root: string;
  private readonly live = new Map<string, NetbackDevice>();
  /** Devices closed by our user: not served again until the toolstack removes them. */
  private readonly excluded = new Set<string>();
  private readonly deviceListeners = new Set<(device: NetbackDevice) => void>();
  private readonly endedTotals = emptyStats();
  private readonly ctx: NetbackContext;
  private watch: XenstoreWatch | undefined;
  private scanning: Promise<void> = Promise.resolve();
  private scanQueued = false;
  private closed = false;

  /** @internal use startNetback */
  constructor(options: NetbackOptions) {
    this.domid = options.domid ?? options.xen.domid;
    this.root = `/local/domain/${this.domid}/backend/vif`;
    if (options.onDevice) this.deviceListeners.add(options.onDevice);
    const f = options.features ?? {};
    this.ctx = {
      xen: options.xen,
      xenstore: options.xenstore,
      log: new RateLimitedLog(options.log ?? defaultLog),
      scratch: new NetbackScratch(),
      features: {
        sg: f.sg ?? true,
        gsoTcpv4: f.gsoTcpv4 ?? true,
        gsoTcpv6: f.gsoTcpv6 ?? true,
        ipv6CsumOffload: f.ipv6CsumOffload ?? true,
      },
      queueBytes: options.queueBytes ?? 1 << 20,
      removeClosedAfterMs: options.removeClosedAfterMs ?? 2000,
      ended: (d) => this.deviceEnded(d),
    };
  }

  /** @internal */
  async start(): Promise<void> {
    this.watch = await this.ctx.xenstore.watch(this.root, { onEvent: () => this.rescan() });
    this.rescan();
    await this.scanning;
  }

  /** The devices live now. */
  devices(): NetbackDevice[] {
    return [...this.live.values()];
  }

  /** Called for each new client device. Returns a function that removes the listener. */
  onDevice(listener: (device: NetbackDevice) => void): () => void {
    this.deviceListeners.add(listener);
    return () => this.deviceListeners.delete(listener);
  }

  /** Sums over live devices and those already gone. */
  stats(): NetifStats {
    const total = { ...this.endedTotals };
    for (const d of this.live.values()) {
      const s = d.counterSnapshot;
      for (const k of STAT_KEYS) total[k] += s[k];
    }
    return total;
  }

  /** The service's own watch plus every live device's. */
  resources(): NetifResources {
    const r = emptyResources();
    if (this.watch && !this.watch.closed) r.watches++;
    for (const d of this.live.values()) addResources(r, d.resources());
    return r;
  }

  /** Closes every device and stops watching. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.watch?.close().catch(() => undefined);
    await this.scanning.catch(() => undefined);
    await Promise.all([...this.live.values()].map((d) => d.close()));
  }

  private rescan(): void {
    if (this.closed || this.scanQueued) return;
    this.scanQueued = true;
    this.scanning = this.scanning.then(async () => {
      this.scanQueued = false;
      if (this.closed) return;
      try {
        await this.scan();
      } catch (error) {
        this.ctx.log.log(`netback: scanning ${this.root} failed: ${(error as Error).message}`);
      }
    });
  }

  private async scan(): Promise<void> {
    const xs = this.ctx.xenstore;
    const present = new Set<string>();
    for (const fe of await listOrEmpty(xs, this.root)) {
      if (!/^[1-9][0-9]{0,4}$/.test(fe)) continue;
      for (const dev of await listOrEmpty(xs, `${this.root}/${fe}`)) {
        if (!/^(0|[1-9][0-9]{0,8})$/.test(dev)) continue;
        const key = `${fe}/${dev}`;
        present.add(key);
        if (this.live.has(key) || this.excluded.has(key) || this.closed) continue;
        const device = new NetbackDevice(this.ctx, Number(fe), Number(dev), `${this.root}/${key}`);
        this.live.set(key, device);
        try {
          await device.start();
        } catch (error) {
          this.ctx.log.log(`netback vif${fe}.${dev}: cannot start: ${(error as Error).message}`);
          await device.destroy(`cannot start: ${(error as Error).message}`);
          continue;
        }
        for (const l of this.deviceListeners) l(device);
      }
    }
    for (const [key, device] of this.live)
      if (!present.has(key)) await device.destroy('the toolstack removed the device');
    for (const key of this.excluded) if (!present.has(key)) this.excluded.delete(key);
  }

  private deviceEnded(device: NetbackDevice): void {
    const key = `${device.peer}/${device.devid}`;
    if (this.live.get(key) !== device) return;
    this.live.delete(key);
    if (device.endReason === 'closed by us' && !this.closed) this.excluded.add(key);
    const s = device.counterSnapshot;
    for (const k of STAT_KEYS) this.endedTotals[k] += s[k];
  }
}

async function listOrEmpty(xs: NetbackContext['xenstore'], path: string): Promise<string[]> {
  try {
    return await xs.directory(path);
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return [];
    throw error;
  }
}

/** Starts serving: nothing is written until the toolstack creates a device under our `backend/vif`. */
export async function startNetback(options: NetbackOptions): Promise<NetbackService> {
  const service = new NetbackService(options);
  await service.start();
  return service;
}
