/**
 * A SimHypervisor and an XenstoredSim with one backend domain (ours, running netback) and
 * any number of client domains, plus counts of what each domain holds at the Xen level,
 * for leak checks that do not trust our own bookkeeping.
 */
import type { DomainId } from '@moat/xen';
import { type SimDomain, SimHypervisor } from '@moat/xen/sim';
import { XenstoreClient } from '@moat/xenstore';
import { type SimTransport, XenstoredSim } from '@moat/xenstore/sim';
import { SimVifToolstack } from './toolstack.ts';

export interface SimClient {
  domain: SimDomain;
  xenstore: XenstoreClient;
}

export class SimNetifWorld {
  readonly hv = new SimHypervisor();
  readonly xs = new XenstoredSim();
  readonly toolstack: SimVifToolstack;
  readonly backend: SimClient;
  private readonly clients: SimClient[] = [];

  constructor(backendName = 'sys-moat') {
    this.toolstack = new SimVifToolstack(this.xs);
    this.backend = this.addDomain(backendName);
  }

  /** A new domain known to both the hypervisor and xenstored, with its own xenstore connection. */
  addDomain(name?: string): SimClient {
    const domain = this.hv.createDomain(name === undefined ? {} : { name });
    this.xs.createDomain(domain.domid, domain.name);
    const c = { domain, xenstore: new XenstoreClient(this.xs.connect({ domid: domain.domid })) };
    this.clients.push(c);
    return c;
  }

  /** `xl destroy`: the domain's channels closed, grants ended, vif directories removed. */
  async destroy(client: SimClient, devids: number[] = [0]): Promise<void> {
    client.xenstore.close();
    this.hv.destroyDomain(client.domain.domid);
    for (const devid of devids)
      await this.toolstack.remove({
        frontend: client.domain.domid,
        backend: this.backend.domain.domid,
        devid,
      });
  }

  /** Grant refs `domid` currently shares (its sim grant table, scanned). */
  liveGrants(domid: DomainId): number {
    const table = this.hv.table(domid);
    if (!table) return 0;
    let n = 0;
    for (let ref = 0; ref < 4096; ref++) if (table.lookup(ref)) n++;
    return n;
  }

  /** Event channel ports `domid` has open (unbound or bound). */
  openPorts(domid: DomainId): number {
    const channels = this.hv.channels(domid);
    if (!channels) return 0;
    let n = 0;
    for (let p = 1; p <= channels.maxPort; p++) if (channels.status(p) !== 'closed') n++;
    return n;
  }

  /** Watches xenstored holds for this client's connection. */
  static watchesOf(client: SimClient): number {
    return (client.xenstore.transport as SimTransport).connection.watches.length;
  }

  close(): void {
    this.toolstack.close();
    for (const c of this.clients) if (c.xenstore.connected) c.xenstore.close();
  }
}
