/**
 * What the host and dom0's stats bundle (guests/firewall-stats-dom0.guest.ts) share, and the part
 * of sys-moat's `moat.FirewallStats` document (firewall/src/vm/stats-service.ts, version 1) the
 * lab reads. The lab does not import the firewall package: it reads the VM from outside, as dom0.
 */

export interface FirewallStatsServeArgs {
  /** sys-moat's domain id and name. */
  readonly peer: number;
  readonly name: string;
  /** dom0 xenstore directory the host writes commands to (one per process). */
  readonly dir: string;
  /** Until the VM's qrexec agent answers. */
  readonly startupTimeoutMs: number;
}

/** `profile`: `moat.CpuProfile+<ms>`, answered as a ProfileSummary (cpu-profile.ts) of `top` functions. */
export type FirewallStatsCommand =
  | { op: 'stats' }
  | { op: 'profile'; ms: number; top?: number }
  | { op: 'close' };

/** The fields of `moat.FirewallStats` the lab reads (bytes; counts). */
export interface MoatStatsDoc {
  readonly version: number;
  readonly uptimeMs: number;
  readonly network: {
    readonly role: string;
    readonly uplink: { readonly state: string; readonly connects: number; readonly lastError?: string };
    readonly clients: readonly { name: string; domid: number; ip: string; state: string; link?: number }[];
    readonly engine?: { readonly conntrack: { size: number; max: number } };
  };
  readonly memory: {
    readonly rss: number;
    readonly heapUsed: number;
    readonly heapTotal: number;
    readonly external: number;
    readonly arrayBuffers: number;
    readonly system?: {
      readonly memTotal: number;
      readonly memFree: number;
      readonly memAvailable: number;
      readonly cached: number;
      readonly shmem: number;
      readonly slab: number;
      readonly pageTables: number;
      readonly kernelStack: number;
      readonly anonPages?: number;
      readonly sUnreclaim?: number;
      readonly vmallocUsed?: number;
      readonly slabTop?: readonly { readonly name: string; readonly bytes: number }[];
      readonly balloonCurrent?: number;
      readonly balloonTarget?: number;
    };
  };
}
