export { Errno, type ErrnoName, errnoName, xenError } from './errno.ts';
export { GNTST, grantStatusName } from './grant-status.ts';
export {
  loadNativeAddon,
  nativeAddonPath,
  openNativeDomain,
  openXenbusDevice,
  ownDomainId,
} from './native/domain.ts';
export { type ReadOnlyBacking, ReadOnlyView } from './readonly-view.ts';
export { type SimDomain, SimHypervisor } from './sim/hypervisor.ts';
export * from './types.ts';
export { RingVchanProvider, type VchanRegistry } from './vchan/ring-vchan.ts';
export * as vchanWire from './vchan/wire.ts';
