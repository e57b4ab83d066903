import { xenError } from '../errno.ts';
import type { DomainId, XenbusDevice, XenDomain } from '../types.ts';

export function nativeAddonPath(): string {
  return new URL('../../build/Release/moat_xen.node', import.meta.url).pathname;
}
export function loadNativeAddon(): unknown {
  throw xenError('load native addon', 'ENOSYS', 'not implemented yet');
}
export function openNativeDomain(): XenDomain {
  throw xenError('open /dev/xen/evtchn', 'ENOSYS', 'not implemented yet');
}
export function openXenbusDevice(_path = '/dev/xen/xenbus'): XenbusDevice {
  throw xenError('open /dev/xen/xenbus', 'ENOSYS', 'not implemented yet');
}
export function ownDomainId(): DomainId {
  throw xenError('own domain id', 'ENOSYS', 'not implemented yet');
}
