import { xenError } from '../errno.ts';
import type { DomainId, VchanEndpoint, VchanProvider, XenDomain } from '../types.ts';

/** Where a server publishes its interface page ref and event channel (xenstore in real life). */
export interface VchanRegistry {
  publish(server: DomainId, path: string, entry: { ringRef: number; port: number }): void;
  lookup(server: DomainId, path: string): { ringRef: number; port: number } | undefined;
  remove(server: DomainId, path: string): void;
}

/** libxenvchan's ring protocol over any XenDomain's primitives. (stub: being written) */
export class RingVchanProvider implements VchanProvider {
  constructor(
    readonly domain: Omit<XenDomain, 'vchan'>,
    readonly registry: VchanRegistry,
  ) {}
  listen(_options: { peer: DomainId; path: string; readMin: number; writeMin: number }): VchanEndpoint {
    throw xenError('libxenvchan_server_init', 'ENOSYS', 'not implemented yet');
  }
  connect(_options: { peer: DomainId; path: string }): VchanEndpoint {
    throw xenError('libxenvchan_client_init', 'ENOSYS', 'not implemented yet');
  }
}
