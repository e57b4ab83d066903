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
  XenstoreConnectionError,
  XenstoreError,
  XenstoreProtocolError,
  XenstoreTimeoutError,
  XenstoreUsageError,
} from './errors.ts';
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
export type { XenstoreTransport, XenstoreTransportFactory } from './transport.ts';
export { DEFAULT_XENSTORED_SOCKET, defaultSocketPath, SocketTransport } from './transports/socket.ts';
export { XenbusTransport } from './transports/xenbus.ts';
export type { WatchEvent, WatchOptions } from './watch.ts';
export { XenstoreWatch } from './watch.ts';
export * as wire from './wire.ts';
