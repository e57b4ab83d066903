export { QubesDbError, QubesDbProtocolError } from './errors.ts';
export { type ConnectQubesDbOptions, connectQubesDb, QubesDb, type QubesDbSnapshot } from './vm.ts';
export type { WatchListener } from './watches.ts';
export * as qdbWire from './wire.ts';
export { QUBESDB_VCHAN_PORT } from './wire.ts';
