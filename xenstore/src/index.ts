export { measureXenstoreRoundTrip, type RoundTripReport } from './bench.ts';
export {
  type ClientOptions,
  type ClientStats,
  type RequestOptions,
  type TransactionOptions,
  XenstoreClient,
  XenstoreOps,
  XenstoreTransaction,
} from './client.ts';
export {
  type CaseResult,
  type ConformanceCase,
  type ConformanceTarget,
  conformanceSuite,
  runCases,
} from './conformance.ts';
export {
  XenstoreConnectionError,
  XenstoreError,
  XenstoreProtocolError,
  XenstoreTimeoutError,
  XenstoreUsageError,
} from './errors.ts';
export { hostileServerSuite, ScriptedServer } from './hostile-server.ts';
export { connectXenstoreSocket, xenstoreOverXenbus } from './open.ts';
export {
  type Access,
  canRead,
  canWrite,
  formatPermission,
  type PermissionEntry,
  type Permissions,
  parsePermission,
  parsePermissions,
  perms,
} from './perms.ts';
export { XENSTORED_4_17_QUOTAS, type XenstoredQuotas } from './sim/quotas.ts';
export { SimTransport } from './sim/transport.ts';
export { SimXenbusError, SimXenbusFile } from './sim/xenbus-device.ts';
export { SimConnection, XenstoredSim, type XenstoredSimOptions } from './sim/xenstored.ts';
export type { XenstoreTransport, XenstoreTransportFactory } from './transport.ts';
export { DEFAULT_XENSTORED_SOCKET, defaultSocketPath, SocketTransport } from './transports/socket.ts';
export { XenbusTransport } from './transports/xenbus.ts';
export type { WatchEvent, WatchOptions } from './watch.ts';
export { XenstoreWatch } from './watch.ts';
export * as wire from './wire.ts';
