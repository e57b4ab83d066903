/**
 * The lab's netif guest: a unikernel domU running TypeScript that is the backend of Linux
 * clients' vifs (a driver domain named in their `backend=`, as Qubes names sys-firewall) and
 * the frontend of its own vif upstream.
 *
 * role `bridge`: @moat/netif's netback serves the clients, its netfront connects our device 0
 * upstream, and a trivial bridge passes frames with their offload metadata between them (a
 * two-port hub: no learning, no filtering), counting frames, bytes and GSO frames each way.
 *
 * role `plumbing`: only the xenbus side of a backend, written here without @moat/netif to
 * prove the lab's plumbing: for each `backend/vif/<fe>/<dev>` libxl creates, advertise
 * rx-copy, go to InitWait and write `hotplug-status` (no `xl devd` runs here: libxl in dom0
 * waits 10 s for InitWait, LIBXL_INIT_TIMEOUT); when the frontend is Connected map its two
 * ring pages and bind its event channel (the addon's gntdev and evtchn in a domU), then
 * Connected; when the toolstack asks for Closing (`online = 0`) or the frontend closes,
 * unmap and Closed.
 *
 * Both roles run `removeClosedBackends`, the part of `xl devd` a driver domain needs besides
 * its backend driver: libxl in dom0 detaches a vif by writing the backend's `online = 0` and
 * `state = 5`, waits for the backend's Closed, then waits (LIBXL_DESTROY_TIMEOUT, 10 s) for the
 * driver domain to remove the backend directory (xen tools/libs/light/libxl_device.c,
 * device_hotplug and backend_watch_callback, @ c447b7308b).
 */

import { Session } from 'node:inspector';
import {
  connectNetfront,
  type FrameMeta,
  type NetbackDevice,
  type NetDevice,
  startNetback,
} from '@moat/netif';
import { openNativeDomain, openXenbusDevice, type WritableMapping, type XenDomain } from '@moat/xen';
import { type XenstoreClient, type XenstoreWatch, xenstoreOverXenbus } from '@moat/xenstore';
import { type CpuProfile, summarizeCpuProfile } from '../cpu-profile.ts';
import { guestArgs } from '../guest.ts';
import type {
  BackendReport,
  BridgeReport,
  DirectionCounts,
  NetifCommand,
  NetifGuestArgs,
} from '../netif-lab-wire.ts';
import { encodeMessage } from '../protocol.ts';
import { serveXenstoreCommands } from './command-loop.ts';

const emit = (line: string) => process.stdout.write(`${line}\n`);
const log = (text: string) => emit(encodeMessage({ kind: 'log', text }));

interface Device {
  readonly path: string;
  readonly frontendId: number;
  readonly device: number;
  frontendPath?: string;
  rings?: { tx: number; rx: number; eventChannel: number };
  mappings: WritableMapping[];
  port?: number;
  watch?: XenstoreWatch;
  closed: boolean;
}

/** The xenbus side of a vif backend for every device libxl creates under our `backend/vif`. */
class PlumbingBackend {
  readonly devices = new Map<string, Device>();
  private busy = Promise.resolve();

  constructor(
    private readonly xs: XenstoreClient,
    private readonly domain: XenDomain,
    private readonly home: string,
  ) {}

  async start(): Promise<void> {
    await this.xs.watch(`${this.home}/backend/vif`, { onEvent: () => this.serially(() => this.scan()) });
  }

  /** Watch events come in bursts; one scan at a time keeps the state walks in order. */
  private serially(work: () => Promise<void>): void {
    this.busy = this.busy.then(work).catch((e: Error) => {
      log(`plumbing: ${e.stack ?? e.message}`);
    });
  }

  private async list(path: string): Promise<string[]> {
    return this.xs.directory(path).catch(() => []);
  }

  private async scan(): Promise<void> {
    const base = `${this.home}/backend/vif`;
    for (const fe of await this.list(base))
      for (const dev of await this.list(`${base}/${fe}`)) {
        const path = `${base}/${fe}/${dev}`;
        let d = this.devices.get(path);
        if (!d) {
          if ((await this.xs.tryRead(`${path}/frontend`)) === undefined) continue;
          d = { path, frontendId: Number(fe), device: Number(dev), mappings: [], closed: false };
          this.devices.set(path, d);
          d.frontendPath = await this.xs.tryRead(`${path}/frontend`);
          await this.xs.write(`${path}/feature-rx-copy`, '1');
          await this.xs.write(`${path}/feature-rx-flip`, '0');
          await this.xs.write(`${path}/state`, '2');
          await this.xs.write(`${path}/hotplug-status`, 'connected');
          d.watch = await this.xs.watch(`${d.frontendPath}/state`, {
            onEvent: () => this.serially(() => this.step(path)),
          });
          log(`plumbing: ${path} InitWait (frontend ${d.frontendPath})`);
        }
        await this.step(path);
      }
  }

  private async step(path: string): Promise<void> {
    const d = this.devices.get(path);
    if (!d || d.closed) return;
    const online = await this.xs.tryRead(`${path}/online`);
    const own = await this.xs.tryRead(`${path}/state`);
    const front = d.frontendPath ? await this.xs.tryRead(`${d.frontendPath}/state`) : undefined;
    if (online === '0' || own === '5' || front === '5' || front === '6' || front === undefined) {
      await this.close(d);
      return;
    }
    if (front === '4' && !d.rings) {
      const f = d.frontendPath;
      const num = async (key: string) => Number(await this.xs.readString(`${f}/${key}`));
      d.rings = {
        tx: await num('tx-ring-ref'),
        rx: await num('rx-ring-ref'),
        eventChannel: await num('event-channel'),
      };
      d.mappings.push(this.domain.grantMapper.mapWritable(d.frontendId, [d.rings.tx]));
      d.mappings.push(this.domain.grantMapper.mapWritable(d.frontendId, [d.rings.rx]));
      d.port = this.domain.eventChannels.bindInterdomain(d.frontendId, d.rings.eventChannel);
      await this.xs.write(`${path}/state`, '4');
      log(`plumbing: ${path} Connected (rings ${d.rings.tx}/${d.rings.rx}, port ${d.port})`);
    }
  }

  private async close(d: Device): Promise<void> {
    d.closed = true;
    for (const m of d.mappings) m.unmap();
    d.mappings = [];
    if (d.port !== undefined) this.domain.eventChannels.unbind(d.port);
    await d.watch?.close().catch(() => undefined);
    await this.xs.write(`${d.path}/state`, '6').catch(() => undefined);
    this.devices.delete(d.path);
    log(`plumbing: ${d.path} closed`);
  }

  async report(): Promise<BackendReport[]> {
    const out: BackendReport[] = [];
    for (const d of this.devices.values())
      out.push({
        path: d.path,
        frontendId: d.frontendId,
        device: d.device,
        state: await this.xs.tryRead(`${d.path}/state`),
        frontendState: d.frontendPath ? await this.xs.tryRead(`${d.frontendPath}/state`) : undefined,
        mac: await this.xs.tryRead(`${d.path}/mac`),
        ...(d.rings ? { rings: d.rings } : {}),
        mapped: d.mappings.length === 2 && d.mappings.every((m) => m.mapped) && d.port !== undefined,
      });
    return out;
  }
}

/**
 * libxl reads the backend's `state` when its watch fires; a directory removed before that
 * read fails the detach ("wanted state 6 but it was removed": libxl_event.c devstate_callback).
 * `xl devd` removes it only after running the hotplug script's `remove`, so dom0 has read the
 * state long before; this stand-in waits as long before removing.
 */
const REMOVE_AFTER_CLOSED_MS = 2000;

/** Removes each backend directory the toolstack took offline once the backend is Closed (what xl devd does). */
async function removeClosedBackends(xs: XenstoreClient, home: string): Promise<void> {
  const base = `${home}/backend/vif`;
  const pending = new Set<string>();
  const list = (path: string) => xs.directory(path).catch(() => [] as string[]);
  let scanning = Promise.resolve();
  const scan = async () => {
    for (const fe of await list(base))
      for (const dev of await list(`${base}/${fe}`)) {
        const path = `${base}/${fe}/${dev}`;
        if (pending.has(path)) continue;
        const state = await xs.tryRead(`${path}/state`);
        const online = await xs.tryRead(`${path}/online`);
        if (state?.trim() !== '6' || online?.trim() !== '0') continue;
        pending.add(path);
        setTimeout(() => {
          void xs
            .rm(path)
            .catch((e: Error) => log(`devd: removing ${path}: ${e.message}`))
            .finally(() => pending.delete(path));
        }, REMOVE_AFTER_CLOSED_MS);
      }
  };
  await xs.watch(base, {
    onEvent: () => {
      scanning = scanning.then(scan).catch((e: Error) => {
        log(`devd: ${e.message}`);
      });
    },
  });
}

type Counts = { -readonly [K in keyof DirectionCounts]: DirectionCounts[K] };
const zero = (): Counts => ({ frames: 0, bytes: 0, gsoFrames: 0, largest: 0, dropped: 0 });

/** Passes one frame on (the device copies it before returning) and counts it. */
function forward(to: NetDevice, counts: Counts, buf: Uint8Array, off: number, len: number, meta: FrameMeta) {
  counts.frames++;
  counts.bytes += len;
  if (meta.gsoType !== 0) counts.gsoFrames++;
  if (len > counts.largest) counts.largest = len;
  if (!to.send(buf, meta, off, len)) counts.dropped++;
}

/** V8's sampling profiler in this process (node:inspector), for `./moat bench netif`. */
const profiler = {
  session: undefined as Session | undefined,
  post<T>(method: string, params?: object): Promise<T> {
    const session = this.session;
    if (!session) return Promise.reject(new Error('the profiler is not running'));
    return new Promise((resolve, reject) =>
      session.post(method, params, (error, result) => (error ? reject(error) : resolve(result as T))),
    );
  },
  async start(intervalUs: number): Promise<void> {
    if (this.session) throw new Error('the profiler is already running');
    this.session = new Session();
    this.session.connect();
    await this.post('Profiler.enable');
    await this.post('Profiler.setSamplingInterval', { interval: intervalUs });
    await this.post('Profiler.start');
  },
  async stop(): Promise<CpuProfile> {
    const { profile } = await this.post<{ profile: CpuProfile }>('Profiler.stop');
    this.session?.disconnect();
    this.session = undefined;
    return profile;
  },
};

interface Bridge {
  report(): BridgeReport;
  resetCounts(): void;
}

/** netback for the clients, netfront upstream, and the hub between them. */
async function startBridge(domain: XenDomain, xs: XenstoreClient): Promise<Bridge> {
  let counts = { up: zero(), down: zero() };
  const clients = new Set<NetbackDevice>();
  let upstream: NetDevice | undefined;
  // Serving first: the toolstack waits only 10 s for a new client device's InitWait.
  const netback = await startNetback({
    xen: domain,
    xenstore: xs,
    log,
    onDevice: (device) => {
      clients.add(device);
      device.onClose((reason) => {
        clients.delete(device);
        log(`bridge: client ${device.peer}/${device.devid} closed: ${reason}`);
      });
      device.onFrame((buf, off, len, meta) => {
        if (upstream) forward(upstream, counts.up, buf, off, len, meta);
      });
    },
  });
  const front = await connectNetfront({ xen: domain, xenstore: xs, log, devid: 0, timeoutMs: 300_000 });
  upstream = front;
  front.onFrame((buf, off, len, meta) => {
    for (const client of clients)
      if (client.state === 'connected') forward(client, counts.down, buf, off, len, meta);
  });
  front.onClose((reason) => log(`bridge: upstream closed: ${reason}`));
  return {
    report: () => ({
      counts,
      netback: netback.resources(),
      netfront: front.resources(),
      clients: netback.devices().map((d) => ({ peer: d.peer, devid: d.devid, state: d.state })),
      stats: { netback: { ...netback.stats() }, netfront: { ...front.stats() } },
    }),
    resetCounts: () => {
      counts = { up: zero(), down: zero() };
    },
  };
}

async function main(): Promise<void> {
  const start = performance.now();
  try {
    const args = guestArgs() as unknown as NetifGuestArgs;
    const domain = openNativeDomain();
    const xs = xenstoreOverXenbus(openXenbusDevice());
    const home = `/local/domain/${domain.domid}`;
    const backend = new PlumbingBackend(xs, domain, home);
    await removeClosedBackends(xs, home);
    if (args.role === 'plumbing') await backend.start();
    const bridge = args.role === 'bridge' ? await startBridge(domain, xs) : undefined;
    const needBridge = () => {
      if (!bridge) throw new Error(`no bridge in role ${args.role}`);
      return bridge;
    };
    await serveXenstoreCommands(async (raw) => {
      const c = raw as NetifCommand;
      switch (c.op) {
        case 'bridge':
          return needBridge().report();
        case 'reset-counts':
          needBridge().resetCounts();
          return {};
        case 'backends':
          return { devices: await backend.report() };
        case 'frontend': {
          const f = `${home}/device/vif/${c.device ?? 0}`;
          const backendPath = await xs.tryRead(`${f}/backend`);
          return {
            backend: backendPath,
            backendId: await xs.tryRead(`${f}/backend-id`),
            mac: await xs.tryRead(`${f}/mac`),
            state: await xs.tryRead(`${f}/state`),
            backendState: backendPath ? await xs.tryRead(`${backendPath}/state`) : undefined,
            backendFeatureRxCopy: backendPath
              ? await xs.tryRead(`${backendPath}/feature-rx-copy`)
              : undefined,
          };
        }
        case 'profile-start':
          await profiler.start(c.intervalUs ?? 1000);
          return {};
        case 'profile-stop':
          return summarizeCpuProfile(await profiler.stop(), c.top ?? 15);
        case 'poweroff':
          setTimeout(() => process.exit(0), 100);
          return { bye: true };
      }
    });
    emit(
      encodeMessage({
        kind: 'result',
        name: 'up',
        ok: true,
        ms: Math.round(performance.now() - start),
        data: { domid: domain.domid, role: args.role },
      }),
    );
  } catch (error) {
    const e = error as Error;
    emit(encodeMessage({ kind: 'result', name: 'up', ok: false, ms: 0, error: e.stack ?? e.message }));
    emit(encodeMessage({ kind: 'done', ok: false, results: 1 }));
    process.exit(1);
  }
}

void main();
