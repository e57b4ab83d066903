/**
 * `@moat/netif/sim`: test tools. `SimVifToolstack` creates and removes vif devices in an
 * XenstoredSim as libxl does; `simNetifPair` builds a netback domain and a netfront domain
 * on a SimHypervisor, attached and connected.
 */
export { type SimNetifPair, type SimVifOptions, SimVifToolstack, simNetifPair } from './toolstack.ts';
