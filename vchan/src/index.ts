export { VchanError } from './errors.ts';
export { vchanXenstorePath } from './paths.ts';
export {
  type VchanChannel,
  type VchanLiveness,
  VchanStream,
  type VchanStreamOptions,
  type VchanTransfer,
} from './stream.ts';
export { type VchanTransport, xenVchanTransport } from './transport.ts';
export {
  type ConnectVchanOptions,
  connectVchan,
  DEFAULT_LOCAL_BUFFER,
  type ListenVchanOptions,
  listenVchan,
  type VchanDomain,
} from './xen.ts';
export { waitForServerInXenstore, xenstoreLiveness } from './xenstore-hooks.ts';
