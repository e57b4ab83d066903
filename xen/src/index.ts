export { Errno, type ErrnoName, errnoName, xenError } from './errno.ts';
export { GNTST, grantStatusName } from './grant-status.ts';
export type { NativeAddon, NativeMapping } from './native/addon.ts';
export {
  loadNativeAddon,
  nativeAddonPath,
  openNativeDomain,
  openXenbusDevice,
  ownDomainId,
} from './native/domain.ts';
export { SharedIndex } from './native/shared-index.ts';
export { type ReadOnlyBacking, ReadOnlyView } from './readonly-view.ts';
export * from './types.ts';
export * as vchanWire from './vchan/wire.ts';
