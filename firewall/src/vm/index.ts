/**
 * `@moat/firewall/vm`: sys-moat, the VM around the engine. `main.ts` is the image's entry;
 * `startFirewallVm` is its composition root, usable with any devices, QubesDB and agent.
 */
export type { ClientBackend, ClientVif, EthernetLink, NetworkDevices, UplinkDevice } from './devices.ts';
export { type FirewallVm, type FirewallVmOptions, startFirewallVm } from './firewall-vm.ts';
export { consoleLog, type VmLog } from './log.ts';
export { macBytes, netifDevices } from './netif-adapter.ts';
export { type ClientStatus, FirewallNetwork, type NetworkStats } from './network.ts';
export { NETWORK_KEYS, type NetworkConfig, readConnectedIps, readNetworkConfig } from './network-config.ts';
export { devicesWithoutNetif } from './no-netif.ts';
export { followRuleTrees, type RuleSink, type RuleTrees } from './rule-trees.ts';
export {
  DEFAULT_SETTINGS,
  LOG_LEVELS,
  type LogLevel,
  readSettings,
  SETTING_KEYS,
  type VmSettings,
} from './settings.ts';
export { type FirewallStatsDocument, STATS_SERVICE, statsDocument } from './stats-service.ts';

/** The VM image's entry (bundled by unikernel's firewall image build). */
export const FIREWALL_VM_ENTRY: string = new URL('./main.ts', import.meta.url).pathname;
