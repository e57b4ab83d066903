/**
 * dom0's view of a running sys-moat: its `moat.FirewallStats` document, read through our dom0
 * qrexec daemon (guests/firewall-stats-dom0.guest.ts) on demand, and what takes the VM's memory
 * according to it.
 */
import { bundleEntry } from './bundle.ts';
import type { ProfileSummary } from './cpu-profile.ts';
import { LabError } from './errors.ts';
import type { FirewallStatsCommand, FirewallStatsServeArgs, MoatStatsDoc } from './firewall-life-wire.ts';
import type { Lab } from './lab.ts';

export type { MoatStatsDoc } from './firewall-life-wire.ts';

const STATS_DOM0 = new URL('./guests/firewall-stats-dom0.guest.ts', import.meta.url).pathname;

/** dom0's qrexec daemon for one sys-moat, calling `moat.FirewallStats` on demand. */
export interface MoatStats {
  read(): Promise<MoatStatsDoc>;
  /** Where sys-moat's node spends the next `ms` (moat.CpuProfile, summed up in dom0). */
  profile(ms: number, top?: number): Promise<ProfileSummary>;
  /** Ends dom0's process (bounded). */
  stop(): Promise<void>;
}

let statsInstances = 0;

/** Connects dom0's qrexec daemon to a running sys-moat's agent (waits for the agent). */
export async function moatStats(
  lab: Lab,
  peer: number,
  name: string,
  startupTimeoutMs = 600_000,
): Promise<MoatStats> {
  const bundle = await bundleEntry(STATS_DOM0);
  const dir = `/moat-lab/fwstats/${++statsInstances}`;
  const args: FirewallStatsServeArgs = { peer, name, dir, startupTimeoutMs };
  const handle = lab.runInDom0(bundle, {
    args: args as unknown as Record<string, unknown>,
    timeoutMs: 24 * 3600_000,
  });
  const connected = await handle.result('connected', { timeoutMs: startupTimeoutMs + 60_000 });
  if (!connected.ok) throw new LabError(name, `dom0's qrexec daemon did not connect: ${connected.error}`);
  let seq = 0;
  const send = async (command: FirewallStatsCommand, timeoutMs = 180_000): Promise<unknown> => {
    const n = ++seq;
    const written = await lab.exec(['xenstore-write', `${dir}/${n}`, JSON.stringify(command)]);
    if (written.code !== 0)
      throw new LabError(name, `writing stats command ${n} failed: ${written.lines.join(' | ')}`);
    const result = await handle.result(`cmd ${n}`, { timeoutMs });
    if (!result.ok) throw new LabError(name, `moat.FirewallStats failed: ${result.error}`);
    return result.data;
  };
  return {
    async read() {
      return ((await send({ op: 'stats' })) as { doc: MoatStatsDoc }).doc;
    },
    async profile(ms, top = 15) {
      return (await send({ op: 'profile', ms, top }, ms + 180_000)) as ProfileSummary;
    },
    async stop() {
      await send({ op: 'close' }).catch(() => undefined);
      await handle.finished({ timeoutMs: 60_000 }).catch(() => undefined);
    },
  };
}

/** What takes sys-moat's memory at one setting (bytes; from moat.FirewallStats after the pings). */
export interface MoatMemoryBreakdown {
  /** The domain's memory less what its kernel manages: kernel image, page tables of the direct map, reservations. */
  readonly kernelReserved: number;
  /** /proc/meminfo MemTotal - MemAvailable: what is really in use. */
  readonly inUse: number;
  /** /proc/meminfo MemAvailable: what the kernel could still hand out. */
  readonly memAvailable: number;
  /** The unpacked initramfs and other tmpfs pages (Shmem). */
  readonly initramfs: number;
  readonly slab: number;
  /** Of which the kernel cannot reclaim (0 where the VM does not report it). */
  readonly slabUnreclaimable: number;
  readonly pageTables: number;
  readonly kernelStack: number;
  /** vmalloc'd kernel memory: module code, driver buffers (0 where not reported). */
  readonly vmalloc: number;
  /** Anonymous pages: node's heap and buffers, the bulk of what it really uses (0 where not reported). */
  readonly anonPages: number;
  /** node's resident set (its binary's pages from the disk included). */
  readonly nodeRss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  /** Buffers outside the JS heap: ring pages' views, packet buffers (ArrayBuffers among them). */
  readonly external: number;
  readonly conntrackEntries: number;
  /** The conntrack table's limit (vm-config or the engine's default). */
  readonly conntrackMax: number;
}

export function memoryBreakdown(memoryMb: number, doc: MoatStatsDoc): MoatMemoryBreakdown {
  const m = doc.memory;
  const s = m.system;
  return {
    kernelReserved: s ? memoryMb * 2 ** 20 - s.memTotal : 0,
    inUse: s ? s.memTotal - s.memAvailable : 0,
    memAvailable: s?.memAvailable ?? 0,
    initramfs: s?.shmem ?? 0,
    slab: s?.slab ?? 0,
    slabUnreclaimable: s?.sUnreclaim ?? 0,
    pageTables: s?.pageTables ?? 0,
    kernelStack: s?.kernelStack ?? 0,
    vmalloc: s?.vmallocUsed ?? 0,
    anonPages: s?.anonPages ?? 0,
    nodeRss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    conntrackEntries: doc.network.engine?.conntrack.size ?? 0,
    conntrackMax: doc.network.engine?.conntrack.max ?? 0,
  };
}
