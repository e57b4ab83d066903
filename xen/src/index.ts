export { type CaseResult, runCases, within } from './cases.ts';
export { type XenConformanceCase, type XenConformanceTarget, xenConformanceSuite } from './conformance.ts';
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
export { type IndexBenchFigures, measureIndexAccess } from './native/index-bench.ts';
export { SharedIndex } from './native/shared-index.ts';
export { type ReadOnlyBacking, ReadOnlyView } from './readonly-view.ts';
export { SimEventChannels } from './sim/evtchn.ts';
export { type SimDomain, SimHypervisor, type SimHypervisorOptions } from './sim/hypervisor.ts';
export * from './types.ts';
export { RingVchanProvider, type VchanRegistry } from './vchan/ring-vchan.ts';
export * as vchanWire from './vchan/wire.ts';
