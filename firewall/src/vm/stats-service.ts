/**
 * qrexec `moat.FirewallStats`: the engine's counters (per link: packets, bytes, drops by reason,
 * per-rule hits, fail-closed reasons; conntrack use), the resolver's, each client's state and
 * the VM's memory, as one JSON document on stdout. Read-only; stdin is ignored.
 *
 *   dom0$ qvm-run --pass-io ... or: qrexec-client -d sys-moat root:'QUBESRPC moat.FirewallStats dom0'
 */
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
  memory: { rss: number; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number };
}

export function statsDocument(
  parts: Omit<FirewallStatsDocument, 'version' | 'memory'>,
): FirewallStatsDocument {
  const m = process.memoryUsage();
  return {
    version: STATS_VERSION,
    ...parts,
    memory: {
      rss: m.rss,
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
    },
  };
}
