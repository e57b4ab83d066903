/**
 * No network devices: what sys-moat runs with on a host without Xen (main.ts with vchan-socket).
 * The uplink cannot connect (the VM retries with backoff and says why) and no client vif is
 * ever reported; the agents, QubesDB, rules and stats run as in the full VM.
 */
import type { ClientBackend, NetworkDevices, UplinkDevice } from './devices.ts';
import type { VmLog } from './log.ts';

export function devicesWithoutNetif(log: VmLog): NetworkDevices {
  const uplink: UplinkDevice = {
    connect: () => Promise.reject(new Error('no netfront: not running on Xen')),
  };
  const clients: ClientBackend = {
    start: async () => log.warn('no netback: not running on Xen; client vifs are not served'),
    stop: async () => {},
  };
  return { uplink, clients };
}
