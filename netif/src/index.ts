/**
 * `@moat/netif`: Xen network devices in TypeScript. `startNetback` serves client domains'
 * netfronts (the backend of their vifs); `connectNetfront` connects our vif to its backend
 * (the upstream netvm). Both are sans-IO over `@moat/xen`'s interfaces and a
 * `@moat/xenstore` client, so the same code runs on sim and on Xen.
 */
export {
  emptyResources,
  emptyStats,
  type FrameListener,
  type FrameMeta,
  type NetDevice,
  type NetDeviceState,
  type NetifCommonOptions,
  type NetifFeatures,
  type NetifLog,
  type NetifResources,
  type NetifStats,
  type NetifXen,
  plainMeta,
} from './device.ts';
export { NetbackDevice, type NetbackOptions, NetbackService, startNetback } from './netback.ts';
export { connectNetfront, NetfrontDevice, type NetfrontOptions } from './netfront.ts';
export * as wire from './wire.ts';
