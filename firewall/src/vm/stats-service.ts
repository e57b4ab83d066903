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
}

const MEMINFO_FIELDS: Record<string, keyof SystemMemory> = {
  MemTotal: 'memTotal',
  MemFree: 'memFree',
  MemAvailable: 'memAvailable',
  Cached: 'cached',
  Shmem: 'shmem',
  Slab: 'slab',
  PageTables: 'pageTables',
  KernelStack: 'kernelStack',
};

/** Parses `/proc/meminfo` (`Name:   1234 kB` lines); undefined unless every field is there. */
export function parseMeminfo(text: string): SystemMemory | undefined {
  const found: Partial<SystemMemory> = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+):\s+(\d+) kB$/.exec(line.trim());
    const field = m?.[1] !== undefined ? MEMINFO_FIELDS[m[1]] : undefined;
    if (m?.[2] !== undefined && field) found[field] = Number(m[2]) * 1024;
  }
  const fields = Object.values(MEMINFO_FIELDS);
  return fields.every((f) => found[f] !== undefined) ? (found as SystemMemory) : undefined;
}

function systemMemory(): SystemMemory | undefined {
  try {
    return parseMeminfo(readFileSync('/proc/meminfo', 'utf8'));
  } catch {
    return undefined;
  }
}

export function statsDocument(
  parts: Omit<FirewallStatsDocument, 'version' | 'memory'>,
): FirewallStatsDocument {
  const m = process.memoryUsage();
  const system = systemMemory();
  return {
    version: STATS_VERSION,
    ...parts,
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
