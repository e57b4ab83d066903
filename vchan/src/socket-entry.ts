/**
 * `@moat/vchan/socket`: vchans as unix sockets compatible with Qubes' qubes-core-vchan-socket,
 * so every protocol runs on a host (tests, `./moat qubesdb|qrexec`, the C tools built with it).
 */
export { DEFAULT_VCHAN_SOCKET_DIR, vchanSocketName } from './paths.ts';
export {
  type ConnectVchanSocketOptions,
  connectVchanSocket,
  type ListenVchanSocketOptions,
  listenVchanSocket,
  socketVchanTransport,
  type VchanSocketPlace,
} from './socket.ts';
export { SocketVchanEndpoint, socketRingSize } from './socket-endpoint.ts';
