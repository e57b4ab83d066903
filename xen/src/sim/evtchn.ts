import { xenError } from '../errno.ts';
import type { DomainId, EventChannels, Port } from '../types.ts';

type PortState =
  | { kind: 'unbound'; remote: DomainId }
  | { kind: 'interdomain'; remote: DomainId; remotePort: Port };

/** What the event channels of one domain need from the hypervisor. */
export interface EvtchnHub {
  channels(domid: DomainId): SimEventChannels | undefined;
}

/**
 * One domain's event channels with Xen's semantics: ports start at 1, an unbound port
 * waits for one named domain, notify on a port whose peer closed is silently dropped,
 * and a pending port is delivered once (asynchronously, setImmediate) and masked until
 * its listeners returned, so notifications while masked coalesce into one more event.
 */
export class SimEventChannels implements EventChannels {
  readonly #ports = new Map<Port, PortState>();
  readonly #pending = new Set<Port>();
  readonly #masked = new Set<Port>();
  readonly #listeners = new Set<(port: Port) => void>();
  #scheduled = false;
  #closed = false;

  constructor(
    readonly domid: DomainId,
    readonly hub: EvtchnHub,
    /** The domain's event channel limit (Xen's max_evtchn_port, default 1023 here). */
    readonly maxPort = 1023,
  ) {}

  #live(op: string): void {
    if (this.#closed) throw xenError(op, 'EBADF', 'event channels closed');
  }

  #allocPort(op: string): Port {
    for (let p = 1; p <= this.maxPort; p++) if (!this.#ports.has(p)) return p;
    throw xenError(op, 'ENOSPC', `all ${this.maxPort} ports in use`);
  }

  allocUnbound(remote: DomainId): Port {
    const op = 'xenevtchn_bind_unbound_port';
    this.#live(op);
    const port = this.#allocPort(op);
    this.#ports.set(port, { kind: 'unbound', remote });
    return port;
  }

  bindInterdomain(remote: DomainId, remotePort: Port): Port {
    const op = 'xenevtchn_bind_interdomain';
    this.#live(op);
    const peer = this.hub.channels(remote);
    if (!peer) throw xenError(op, 'ESRCH', `no domain ${remote}`);
    const state = peer.#ports.get(remotePort);
    // Xen: the remote port must be unbound and reserved for us, else EINVAL.
    if (state?.kind !== 'unbound' || state.remote !== this.domid)
      throw xenError(
        op,
        'EINVAL',
        `port ${remotePort} of domain ${remote} is not unbound for domain ${this.domid}`,
      );
    const port = this.#allocPort(op);
    this.#ports.set(port, { kind: 'interdomain', remote, remotePort });
    peer.#ports.set(remotePort, { kind: 'interdomain', remote: this.domid, remotePort: port });
    return port;
  }

  notify(port: Port): void {
    const op = 'xenevtchn_notify';
    this.#live(op);
    const state = this.#ports.get(port);
    if (!state) throw xenError(op, 'ENOTCONN', `port ${port} is not bound`);
    if (state.kind !== 'interdomain') return; // Xen drops sends on an unbound port
    this.hub.channels(state.remote)?.raise(state.remotePort);
  }

  unbind(port: Port): void {
    const op = 'xenevtchn_unbind';
    this.#live(op);
    if (!this.#ports.has(port)) throw xenError(op, 'ENOTCONN', `port ${port} is not bound`);
    this.#close(port);
  }

  #close(port: Port): void {
    const state = this.#ports.get(port);
    this.#ports.delete(port);
    this.#pending.delete(port);
    this.#masked.delete(port);
    if (state?.kind === 'interdomain') {
      // The peer's end goes back to unbound (for us), as Xen's evtchn_close does.
      const peer = this.hub.channels(state.remote);
      if (peer) peer.#ports.set(state.remotePort, { kind: 'unbound', remote: this.domid });
    }
  }

  /** Called by a peer's notify: marks the port pending and schedules delivery. */
  raise(port: Port): void {
    if (this.#closed || !this.#ports.has(port)) return;
    this.#pending.add(port);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#listeners.size === 0) return;
    this.#scheduled = true;
    setImmediate(() => this.#deliver());
  }

  #deliver(): void {
    this.#scheduled = false;
    if (this.#closed) return;
    const ready = [...this.#pending].filter((p) => !this.#masked.has(p));
    for (const port of ready) {
      this.#pending.delete(port);
      this.#masked.add(port);
      for (const listener of [...this.#listeners]) {
        try {
          listener(port);
        } catch (error) {
          // A listener's bug must not stop delivery to the others: report it the way an
          // EventEmitter would, as an uncaught exception, after this round.
          queueMicrotask(() => {
            throw error;
          });
        }
      }
      this.#masked.delete(port); // unmask: a notify that came meanwhile is delivered next round
    }
    if ([...this.#pending].some((p) => !this.#masked.has(p))) this.#schedule();
  }

  onEvent(listener: (port: Port) => void): () => void {
    this.#listeners.add(listener);
    if (this.#pending.size > 0) this.#schedule();
    return () => {
      this.#listeners.delete(listener);
    };
  }

  close(): void {
    if (this.#closed) return;
    for (const port of [...this.#ports.keys()]) this.#close(port);
    this.#closed = true;
    this.#listeners.clear();
  }

  /** For tests and diagnostics: what a port is bound to (evtchn_status). */
  status(port: Port): 'closed' | 'unbound' | 'interdomain' {
    return this.#ports.get(port)?.kind ?? 'closed';
  }
}
