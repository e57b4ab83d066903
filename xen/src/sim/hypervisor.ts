import { xenError } from '../errno.ts';
import type {
  DomainId,
  GrantCopier,
  GrantCopySegment,
  GrantMapper,
  GrantRef,
  GrantSharer,
  ReadOnlyMapping,
  SharedPages,
  VchanProvider,
  WritableMapping,
  XenDomain,
} from '../types.ts';
import { RingVchanProvider, type VchanRegistry } from '../vchan/ring-vchan.ts';
import { SimEventChannels } from './evtchn.ts';
import { SimGrantTable, simGrantCopy, simMapReadOnly, simMapWritable, simShare } from './memory.ts';

/** One domain of a SimHypervisor: a XenDomain plus what tests want to look at. */
export interface SimDomain extends XenDomain {
  readonly name: string;
  readonly eventChannels: SimEventChannels;
  readonly alive: boolean;
}

export interface SimHypervisorOptions {
  /** Pages one domain may share at once (gntalloc's `limit`; Linux default 1024). */
  gntallocLimit?: number;
  /** Highest event channel port per domain. */
  maxPort?: number;
}

/**
 * The in-memory registry sim vchan publishes ring refs and ports in, keyed by absolute
 * path like the xenstore keys it stands for. (The full xenstore model is XenstoredSim in
 * @moat/xenstore.) A lookup by a domain other than the one that published finds nothing,
 * as a lookup of keys under another domain's home that were never written.
 */
class SimVchanRegistry implements VchanRegistry {
  readonly #entries = new Map<string, { server: DomainId; ringRef: number; port: number }>();
  publish(server: DomainId, path: string, entry: { ringRef: number; port: number }): void {
    this.#entries.set(path, { server, ...entry });
  }
  lookup(server: DomainId, path: string) {
    const e = this.#entries.get(path);
    return e && e.server === server ? { ringRef: e.ringRef, port: e.port } : undefined;
  }
  remove(server: DomainId, path: string): void {
    if (this.#entries.get(path)?.server === server) this.#entries.delete(path);
  }
}

class SimDomainImpl implements SimDomain {
  readonly eventChannels: SimEventChannels;
  readonly grantTable: SimGrantTable;
  readonly grantMapper: GrantMapper;
  readonly grantSharer: GrantSharer;
  readonly grantCopier: GrantCopier;
  readonly vchan: VchanProvider;
  alive = true;

  constructor(
    readonly hv: SimHypervisor,
    readonly domid: DomainId,
    readonly name: string,
    registry: VchanRegistry,
    options: SimHypervisorOptions,
  ) {
    this.eventChannels = new SimEventChannels(domid, hv, options.maxPort);
    this.grantTable = new SimGrantTable(domid, options.gntallocLimit ?? 1024);
    const self = this;
    this.grantMapper = {
      mapWritable(domain: DomainId, refs: readonly GrantRef[]): WritableMapping {
        self.#live('xengnttab_map_grant_refs');
        return simMapWritable(hv, domid, domain, refs);
      },
      mapReadOnly(domain: DomainId, refs: readonly GrantRef[]): ReadOnlyMapping {
        self.#live('xengnttab_map_grant_refs');
        return simMapReadOnly(hv, domid, domain, refs);
      },
    };
    this.grantSharer = {
      share(domain: DomainId, pageCount: number, options?: { writable?: boolean }): SharedPages {
        self.#live('xengntshr_share_pages');
        return simShare(self.grantTable, domain, pageCount, options?.writable ?? true);
      },
    };
    this.grantCopier = {
      copy(segments: readonly GrantCopySegment[]): Int16Array {
        self.#live('xengnttab_grant_copy');
        return simGrantCopy(hv, domid, segments);
      },
    };
    this.vchan = new RingVchanProvider(this, registry);
  }

  #live(op: string): void {
    if (!this.alive) throw xenError(op, 'ESRCH', `domain ${this.domid} was destroyed`);
  }
}

/**
 * Xen in one process: several domains (dom0 and domUs), each a XenDomain with grant
 * tables (permissions per grantee, read-only grants), event channels (asynchronous
 * delivery) and libxenvchan (the real ring protocol over those grants and channels).
 */
export class SimHypervisor {
  readonly #domains = new Map<DomainId, SimDomainImpl>();
  readonly #registry = new SimVchanRegistry();
  #nextDomid = 1;

  constructor(readonly options: SimHypervisorOptions = {}) {
    this.#domains.set(0, new SimDomainImpl(this, 0, 'dom0', this.#registry, options));
  }

  get dom0(): SimDomain {
    return this.#domains.get(0)!;
  }

  /** Creates a domU with the next free domain id. */
  createDomain(options: { name?: string } = {}): SimDomain {
    const domid = this.#nextDomid++;
    const d = new SimDomainImpl(this, domid, options.name ?? `domu${domid}`, this.#registry, this.options);
    this.#domains.set(domid, d);
    return d;
  }

  domain(domid: DomainId): SimDomain {
    const d = this.#domains.get(domid);
    if (!d) throw xenError('sim domain', 'ESRCH', `no domain ${domid}`);
    return d;
  }

  /** Like `xl destroy`: closes its event channels and ends its grants; mappers keep their pages. */
  destroyDomain(domid: DomainId): void {
    const d = this.#domains.get(domid);
    if (!d) throw xenError('sim destroy domain', 'ESRCH', `no domain ${domid}`);
    d.eventChannels.close();
    d.grantTable.revokeAll();
    d.alive = false;
    this.#domains.delete(domid);
  }

  /** @internal grant tables of live domains */
  table(domid: DomainId): SimGrantTable | undefined {
    return this.#domains.get(domid)?.grantTable;
  }

  /** @internal event channels of live domains */
  channels(domid: DomainId): SimEventChannels | undefined {
    return this.#domains.get(domid)?.eventChannels;
  }
}
