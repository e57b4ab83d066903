/**
 * `@moat/netif/sim`: test tools. `SimVifToolstack` creates and removes vif devices in an
 * XenstoredSim as libxl does; `SimNetifWorld` holds a hypervisor, xenstored, our backend
 * domain and client domains, with Xen-level resource counts; `simNetifPair` builds a
 * netback domain and a netfront domain, attached and connected; `RawFrontend` and
 * `RawBackend` are peers whose rings a test writes by hand.
 */
export { RawBackend, RawFrontend } from './raw-peers.ts';
export { type SimNetifPair, type SimVifOptions, SimVifToolstack, simNetifPair } from './toolstack.ts';
export { type SimClient, SimNetifWorld } from './world.ts';
