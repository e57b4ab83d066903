export { type LatencyFigures, measureWatchLatency, type WatchLatencyReport } from './bench.ts';
export { QubesDbDaemon, type QubesDbDaemonEvent, type QubesDbDaemonOptions } from './dom0.ts';
export { QubesDbError, QubesDbProtocolError } from './errors.ts';
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
export { type ConnectQubesDbOptions, connectQubesDb, QubesDb, type QubesDbSnapshot } from './vm.ts';
export type { WatchListener } from './watches.ts';
export * as qdbWire from './wire.ts';
export { QUBESDB_VCHAN_PORT } from './wire.ts';
