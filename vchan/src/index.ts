export { VchanError } from './errors.ts';
export { DEFAULT_VCHAN_SOCKET_DIR, vchanSocketName, vchanXenstorePath } from './paths.ts';
export {
  type ConnectVchanSocketOptions,
  connectVchanSocket,
  type ListenVchanSocketOptions,
  listenVchanSocket,
  type VchanSocketPlace,
} from './socket.ts';
export { SocketVchanEndpoint, socketRingSize } from './socket-endpoint.ts';
export {
  type VchanChannel,
  type VchanLiveness,
  VchanStream,
  type VchanStreamOptions,
} from './stream.ts';
export { socketVchanTransport, type VchanTransport, xenVchanTransport } from './transport.ts';
export {
  type ConnectVchanOptions,
  connectVchan,
  DEFAULT_LOCAL_BUFFER,
  type ListenVchanOptions,
  listenVchan,
  type VchanDomain,
} from './xen.ts';
export { waitForServerInXenstore, xenstoreLiveness } from './xenstore-hooks.ts';
