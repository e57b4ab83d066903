/**
 * `@moat/qubesdb/dom0`: the dom0 side for the lab and host tests: the daemon serving one VM,
 * its local socket (qubesd's protocol) and our client for it, the store they share, and the
 * two halves of the lab scenario.
 */
export { QubesDbDaemon, type QubesDbDaemonEvent, type QubesDbDaemonOptions } from './dom0.ts';
export { QubesDbLocalClient } from './local-client.ts';
export { type LocalSocketOptions, type LocalSocketServer, serveLocalSocket } from './local-socket.ts';
export {
  type Dom0HalfReport,
  runDom0Half,
  runVmHalf,
  SCENARIO_EXPECTED_EVENTS,
  SCENARIO_INITIAL,
  type VmHalfReport,
} from './scenario.ts';
export { QdbStore, watchMatches } from './store.ts';
