/**
 * Stand-in devices until `@moat/netif` is wired in (netif-adapter.ts): the uplink cannot
 * connect (the VM retries with backoff and says why) and no client vif is ever reported.
 * The agents, QubesDB, rules and stats all run as in the full VM.
 */
import type { ClientBackend, NetworkDevices, UplinkDevice } from './devices.ts';
import type { VmLog } from './log.ts';

export function devicesWithoutNetif(log: VmLog): NetworkDevices {
  const uplink: UplinkDevice = {
    connect: () => Promise.reject(new Error('no netfront in this build (netif not wired in yet)')),
  };
  const clients: ClientBackend = {
    start: async () =>
      log.warn('no netback in this build (netif not wired in yet): client vifs are not served'),
    stop: async () => {},
  };
  return { uplink, clients };
}
