/** `@moat/xen/sim`: an in-process model of the Xen primitives, for tests anywhere. */

export { RingVchanProvider, type VchanRegistry } from '../vchan/ring-vchan.ts';
export { SimEventChannels } from './evtchn.ts';
export { type SimDomain, SimHypervisor, type SimHypervisorOptions } from './hypervisor.ts';
