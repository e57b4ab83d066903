/** What qubes-agents.lab.test.ts and its guest (qubes-agents.guest.ts) agree on. */
export const QUBES_AGENTS = {
  /** The domU's name, in xl and in the dom0 daemons. */
  vmName: 'qubes-agents',
  /** Bytes of stdin dom0 sends to each of moat.Sha256 and moat.Echo. */
  stdinBytes: 1024 * 1024,
  /** Seed of the stdin pattern (patternBlock in lab/src/vchan-roles.ts). */
  stdinSeed: 4,
  /** dom0 → VM → dom0 QubesDB round trips timed after the ordered writes and removals. */
  pings: 50,
  /** The bare vchan measured beside the protocols (dom0 server, the VM echoing). */
  baselinePort: 7111,
  /** Its rings: qrexec's data channel size (DATA_RING_SIZE). */
  baselineRing: 65536,
  /** Every wait inside the guests: generous, emulation on a shared machine. */
  waitMs: 420_000,
} as const;

export interface QubesAgentsArgs {
  role: 'vm' | 'dom0';
  /** dom0 only: the VM's domain id. */
  peer?: number;
}
