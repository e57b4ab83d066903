import type { XenDomain } from '../types.ts';

export type SimDomain = XenDomain & { readonly name: string };

/** In-process Xen: several domains with grant tables and event channels. (stub: being written) */
export class SimHypervisor {
  createDomain(_options?: { name?: string }): SimDomain {
    throw new Error('SimHypervisor: not implemented yet');
  }
}
