/**
 * `./moat bench netif-sim`: the lab bench's path on SimHypervisor, on the host, so a change
 * to the data path is measured in seconds and profiled with `node --cpu-prof`. A client's
 * netfront sends 64 KiB GSO frames into a middle domain (our netback for the client, our
 * netfront upstream, a hub between them as lab/src/guests/netif.guest.ts has) and on to a
 * netvm's netback, which answers every second frame with a 66-byte ACK-sized frame back to
 * the client; the client keeps `window` frames in flight, clocked by those answers, as TCP
 * is. The baseline in the same run is the same traffic with the client attached to the
 * netvm directly (one pair, no middle): the middle's own cost is the difference.
 */
import type { DomainId } from '@moat/xen';
import { type SimDomain, SimHypervisor } from '@moat/xen/sim';
import { XenstoreClient } from '@moat/xenstore';
import { XenstoredSim } from '@moat/xenstore/sim';
import type { FrameMeta, NetDevice } from '../device.ts';
import { type NetbackDevice, startNetback } from '../netback.ts';
import { connectNetfront } from '../netfront.ts';
import { XEN_NETIF_GSO_TYPE_TCPV4 } from '../wire.ts';
import { SimVifToolstack } from './toolstack.ts';

export interface NetifSimPathFigures {
  readonly frames: number;
  readonly seconds: number;
  /** Process CPU time (user + system) over the run, seconds. */
  readonly cpuSeconds: number;
  /** Data bytes per second of wall time (a loaded host inflates it: read cpu figures). */
  readonly mbytePerS: number;
  /** Data bytes per second of CPU time (the machine's load does not change it much). */
  readonly mbytePerCpuS: number;
  /** CPU time per data frame, µs, over the whole path (every domain runs in this process). */
  readonly cpuUsPerFrame: number;
  /** Notifications sent by every device on the path, per data frame. */
  readonly eventsPerFrame: number;
  /** Grant-copy calls on the path per data frame. */
  readonly copyCallsPerFrame: number;
}

export interface NetifSimBenchFigures {
  readonly frameBytes: number;
  readonly window: number;
  readonly direct: NetifSimPathFigures;
  readonly middle: NetifSimPathFigures;
  /** middle / direct in MB per CPU second: what the middle domain's hop costs (1: nothing). */
  readonly ratio: number;
}

const ACK_BYTES = 66;
const dataMeta: FrameMeta = {
  csumBlank: true,
  dataValidated: true,
  gsoType: XEN_NETIF_GSO_TYPE_TCPV4,
  gsoSize: 1448,
};
const ackMeta: FrameMeta = { csumBlank: true, dataValidated: true, gsoType: 0, gsoSize: 0 };

interface Node {
  domain: SimDomain;
  xs: XenstoreClient;
}

class World {
  readonly hv = new SimHypervisor();
  readonly xsd = new XenstoredSim();
  readonly toolstack = new SimVifToolstack(this.xsd);
  readonly nodes: Node[] = [];

  add(name: string): Node {
    const domain = this.hv.createDomain({ name });
    this.xsd.createDomain(domain.domid, domain.name);
    const n = { domain, xs: new XenstoreClient(this.xsd.connect({ domid: domain.domid })) };
    this.nodes.push(n);
    return n;
  }

  /** `backend` serves `frontend`'s vif 0; resolves with both ends connected. */
  async link(frontend: Node, backend: Node): Promise<{ front: NetDevice; back: NetbackDevice }> {
    let resolveBack: (d: NetbackDevice) => void = () => undefined;
    const ready = new Promise<NetbackDevice>((r) => {
      resolveBack = r;
    });
    await startNetback({
      xen: backend.domain,
      xenstore: backend.xs,
      log: () => undefined,
      removeClosedAfterMs: 0,
      onDevice: (d) => resolveBack(d),
    });
    await this.toolstack.attach({
      frontend: frontend.domain.domid,
      backend: backend.domain.domid as DomainId,
    });
    const front = await connectNetfront({
      xen: frontend.domain,
      xenstore: frontend.xs,
      log: () => undefined,
    });
    const back = await ready;
    await back.connected();
    return { front, back };
  }

  close(): void {
    this.toolstack.close();
    for (const n of this.nodes) n.xs.close();
  }
}

/** Runs `frames` data frames from `send` to the sink, ACK-clocked; resolves when all arrived. */
function drive(
  clientOut: NetDevice,
  clientIn: NetDevice,
  sinkIn: NetDevice,
  sinkOut: NetDevice,
  devices: readonly NetDevice[],
  frames: number,
  frameBytes: number,
  window: number,
): Promise<NetifSimPathFigures> {
  const data = new Uint8Array(frameBytes);
  for (let i = 0; i < frameBytes; i++) data[i] = (i * 31) & 0xff;
  const ack = new Uint8Array(ACK_BYTES).fill(0xac);
  let sent = 0;
  let arrived = 0;
  let acked = 0;
  const eventsBefore = devices.reduce((a, d) => a + d.stats().eventsOut, 0);
  const copiesBefore = devices.reduce((a, d) => a + d.stats().copyBatches, 0);
  const cpu = process.cpuUsage();
  const start = performance.now();
  return new Promise((resolve, reject) => {
    let retry = false;
    const stuck = setTimeout(
      // A lost wake-up or a frame lost for good: say where it stopped rather than hang.
      () => reject(new Error(`stalled at ${arrived} of ${frames} frames (${sent} sent, ${acked} acked)`)),
      120_000,
    );
    const pump = () => {
      while (sent < frames && sent - acked < window) {
        if (!clientOut.send(data, dataMeta)) {
          // Its TX ring is full: try again once the backend has answered.
          if (!retry) {
            retry = true;
            setImmediate(() => {
              retry = false;
              pump();
            });
          }
          return;
        }
        sent++;
      }
    };
    sinkIn.onFrame((_b, _o, len) => {
      if (len === ACK_BYTES) return;
      arrived++;
      if (arrived % 2 === 0 || arrived === frames) sinkOut.send(ack, ackMeta);
      if (arrived !== frames) return;
      clearTimeout(stuck);
      const seconds = (performance.now() - start) / 1000;
      const used = process.cpuUsage(cpu);
      const cpuSeconds = (used.user + used.system) / 1e6;
      const events = devices.reduce((a, d) => a + d.stats().eventsOut, 0) - eventsBefore;
      const copies = devices.reduce((a, d) => a + d.stats().copyBatches, 0) - copiesBefore;
      resolve({
        frames,
        seconds: round(seconds, 3),
        cpuSeconds: round(cpuSeconds, 3),
        mbytePerS: round((frames * frameBytes) / seconds / 1e6, 1),
        mbytePerCpuS: round((frames * frameBytes) / cpuSeconds / 1e6, 1),
        cpuUsPerFrame: round((cpuSeconds * 1e6) / frames, 1),
        eventsPerFrame: round(events / frames, 2),
        copyCallsPerFrame: round(copies / frames, 2),
      });
    });
    clientIn.onFrame((_b, _o, len) => {
      if (len === ACK_BYTES) acked = Math.min(sent, acked + 2);
      pump();
    });
    pump();
  });
}

const round = (x: number, digits: number) => Number(x.toFixed(digits));

export async function runNetifSimBench(
  options: { frames?: number; frameBytes?: number; window?: number } = {},
): Promise<NetifSimBenchFigures> {
  const frames = options.frames ?? 4000;
  const frameBytes = options.frameBytes ?? 65226;
  const window = options.window ?? 16;

  const w1 = new World();
  let direct: NetifSimPathFigures;
  try {
    const client = w1.add('client');
    const netvm = w1.add('netvm');
    const { front, back } = await w1.link(client, netvm);
    direct = await drive(front, front, back, back, [front, back], frames, frameBytes, window);
  } finally {
    w1.close();
  }

  const w2 = new World();
  let middle: NetifSimPathFigures;
  try {
    const client = w2.add('client');
    const mid = w2.add('middle');
    const netvm = w2.add('netvm');
    const up = await w2.link(mid, netvm);
    const down = await w2.link(client, mid);
    // The hub of guests/netif.guest.ts: each side's frames to the other, with their metadata.
    down.back.onFrame((b, o, n, m) => up.front.send(b, m, o, n));
    up.front.onFrame((b, o, n, m) => down.back.send(b, m, o, n));
    middle = await drive(
      down.front,
      down.front,
      up.back,
      up.back,
      [down.front, down.back, up.front, up.back],
      frames,
      frameBytes,
      window,
    );
  } finally {
    w2.close();
  }
  return { frameBytes, window, direct, middle, ratio: round(middle.mbytePerCpuS / direct.mbytePerCpuS, 3) };
}
