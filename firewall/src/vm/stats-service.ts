/**
 * qrexec `moat.FirewallStats`: the engine's counters (per link: packets, bytes, drops by reason,
 * per-rule hits, fail-closed reasons; conntrack use), the resolver's, each client's state and
 * the VM's memory (node's, and the kernel's `/proc/meminfo` for the whole VM), as one JSON
 * document on stdout. Read-only; stdin is ignored.
 *
 *   dom0$ qvm-run --pass-io ... or: qrexec-client -d sys-moat root:'QUBESRPC moat.FirewallStats dom0'
 */
import { readFileSync } from 'node:fs';
import type { NetworkStats } from './network.ts';
import type { VmSettings } from './settings.ts';

export const STATS_SERVICE = 'moat.FirewallStats';
export const STATS_VERSION = 1;

export interface FirewallStatsDocument {
  version: typeof STATS_VERSION;
  uptimeMs: number;
  settings: VmSettings;
  network: NetworkStats;
  qubesdb: Record<string, number>;
  /**
   * node's CPU time since it started (µs, user and kernel), and the share of its wall-clock
   * time the event loop was busy: with the frame counters, the cost of each frame.
   */
  cpu: { userUs: number; systemUs: number; eventLoopBusy: number };
  memory: {
    rss: number;
    heapUsed: number;
    heapTotal: number;
    external: number;
    arrayBuffers: number;
    /** The kernel's view of the whole VM (`/proc/meminfo`, bytes); absent where it cannot be read. */
    system?: SystemMemory;
  };
}

/** The `/proc/meminfo` fields that say where a small VM's memory goes, in bytes. */
export interface SystemMemory {
  /** What the kernel manages: the domain's memory less the kernel image and early reservations. */
  memTotal: number;
  memFree: number;
  memAvailable: number;
  /** Page cache, with the initramfs (rootfs lives in it) and node's mapped binary from the disk. */
  cached: number;
  /** Shared memory and tmpfs/rootfs pages (the unpacked initramfs). */
  shmem: number;
  slab: number;
  pageTables: number;
  kernelStack: number;
  /** Where the rest goes, when the kernel reports it: anonymous pages (node's heap and buffers), */
  anonPages?: number;
  /** the part of the slab that cannot be reclaimed, */
  sUnreclaim?: number;
  /** and vmalloc'd kernel memory (module code, some drivers' buffers). */
  vmallocUsed?: number;
  /** The largest slab caches (`/proc/slabinfo`). */
  slabTop?: { name: string; bytes: number }[];
  /** The Xen balloon's view: the domain's pages now, and its target (drivers take pages from it). */
  balloonCurrent?: number;
  balloonTarget?: number;
}

type RequiredMemoryField = Exclude<
  keyof SystemMemory,
  'anonPages' | 'sUnreclaim' | 'vmallocUsed' | 'slabTop' | 'balloonCurrent' | 'balloonTarget'
>;

const MEMINFO_FIELDS: Record<string, RequiredMemoryField> = {
  MemTotal: 'memTotal',
  MemFree: 'memFree',
  MemAvailable: 'memAvailable',
  Cached: 'cached',
  Shmem: 'shmem',
  Slab: 'slab',
  PageTables: 'pageTables',
  KernelStack: 'kernelStack',
};

const MEMINFO_OPTIONAL: Record<string, 'anonPages' | 'sUnreclaim' | 'vmallocUsed'> = {
  AnonPages: 'anonPages',
  SUnreclaim: 'sUnreclaim',
  VmallocUsed: 'vmallocUsed',
};

/** Parses `/proc/meminfo` (`Name:   1234 kB` lines); undefined unless every required field is there. */
export function parseMeminfo(text: string): SystemMemory | undefined {
  const found: Partial<SystemMemory> = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+):\s+(\d+) kB$/.exec(line.trim());
    const name = m?.[1];
    const field = name !== undefined ? (MEMINFO_FIELDS[name] ?? MEMINFO_OPTIONAL[name]) : undefined;
    if (m?.[2] !== undefined && field) found[field] = Number(m[2]) * 1024;
  }
  const fields = Object.values(MEMINFO_FIELDS);
  return fields.every((f) => found[f] !== undefined) ? (found as SystemMemory) : undefined;
}

/** The kernel's largest slab caches by the pages they hold (`/proc/slabinfo` 2.1), bytes. */
export function parseSlabinfo(text: string, top = 6): { name: string; bytes: number }[] {
  const caches: { name: string; bytes: number }[] = [];
  for (const line of text.split('\n')) {
    // name active_objs num_objs objsize objperslab pagesperslab : tunables ... : slabdata active num shared
    const m = /^(\S+)\s+\d+\s+\d+\s+\d+\s+\d+\s+(\d+)\s+:.*:\s*slabdata\s+\d+\s+(\d+)/.exec(line);
    if (m?.[1] && m[2] && m[3]) caches.push({ name: m[1], bytes: Number(m[2]) * Number(m[3]) * 4096 });
  }
  return caches.sort((a, b) => b.bytes - a.bytes).slice(0, top);
}

const BALLOON = '/sys/devices/system/xen_memory/xen_memory0';

function readOr(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function systemMemory(): SystemMemory | undefined {
  const meminfo = readOr('/proc/meminfo');
  const parsed = meminfo === undefined ? undefined : parseMeminfo(meminfo);
  if (!parsed) return undefined;
  const slabinfo = readOr('/proc/slabinfo');
  const kb = (path: string) => {
    const n = Number(readOr(path)?.trim());
    return Number.isFinite(n) && n > 0 ? n * 1024 : undefined;
  };
  const balloonCurrent = kb(`${BALLOON}/info/current_kb`);
  const balloonTarget = kb(`${BALLOON}/target_kb`);
  return {
    ...parsed,
    ...(slabinfo ? { slabTop: parseSlabinfo(slabinfo) } : {}),
    ...(balloonCurrent !== undefined ? { balloonCurrent } : {}),
    ...(balloonTarget !== undefined ? { balloonTarget } : {}),
  };
}

export function statsDocument(
  parts: Omit<FirewallStatsDocument, 'version' | 'memory' | 'cpu'>,
): FirewallStatsDocument {
  const m = process.memoryUsage();
  const cpu = process.cpuUsage();
  const system = systemMemory();
  return {
    version: STATS_VERSION,
    ...parts,
    cpu: {
      userUs: cpu.user,
      systemUs: cpu.system,
      eventLoopBusy: Number(performance.eventLoopUtilization().utilization.toFixed(4)),
    },
    memory: {
      rss: m.rss,
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
      ...(system ? { system } : {}),
    },
  };
}
