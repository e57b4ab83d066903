/**
 * XenstoredSim: an in-process xenstore server speaking the wire protocol, modelled on the C
 * xenstored of Xen 4.17 (tools/xenstore/xenstored_{core,domain,watch,transaction}.c at
 * 01140da4e8, Debian 12's 4.17.5+72): the node tree with per-node permissions, the quotas of
 * ./quotas.ts, watches (fired once on registration, then for changes by anyone, filtered by
 * read permission), transactions with generation-based conflict detection (EAGAIN),
 * @introduceDomain / @releaseDomain, and the error each request gets there.
 *
 * Connections: `connect({ domid })` gives a raw connection as that domain (like the shared
 * ring), `connectSocket()` a privileged socket connection as dom0 (like
 * /var/run/xenstored/socket), `openXenbusDevice(domid)` a fake /dev/xen/xenbus with the Linux
 * driver's behaviour (see ./xenbus-device.ts).
 */
import { createServer, type Server } from 'node:net';
import { type Access, canRead, canWrite, type PermissionEntry } from '../perms.ts';
import type { XenstoreTransport } from '../transport.ts';
import { XenbusTransport } from '../transports/xenbus.ts';
import {
  encodeMessage,
  joinStrings,
  type Message,
  MessageReader,
  utf8,
  XENSTORE_PAYLOAD_MAX,
  XsType,
} from '../wire.ts';
import {
  atoi,
  countNuls,
  oneArg,
  oneArgOrUndefined,
  parseLoosePermission,
  permString,
  strings,
  XsFail,
} from './arguments.ts';
import { baseName, eventPath, isChild, joinPath, parentOf } from './paths.ts';
import {
  DOMID_SELF,
  PERMISSION_RECORD_SIZE,
  RECORD_HEADER_SIZE,
  XENSTORED_4_17_QUOTAS,
  type XenstoredQuotas,
} from './quotas.ts';
import { SimTransport } from './transport.ts';
import { openSimXenbusDevice, type SimXenbusFile } from './xenbus-device.ts';

interface SimNode {
  value: Uint8Array;
  perms: PermissionEntry[];
  children: string[];
  generation: number;
}

interface SimWatch {
  /** Canonical (absolute or @special) path. */
  node: string;
  token: string;
  /** The connection's home when the watch path was given relative. */
  relativeTo: string | undefined;
}

interface SimTransaction {
  id: number;
  /** Nodes of this transaction's view: a copy, or null for a deletion. */
  overlay: Map<string, SimNode | null>;
  /** Generation of each node at first access (-1: absent), checked at commit. */
  accessed: Map<string, number>;
  watches: Map<string, boolean>; // path -> exact
  /** Permissions at first access, for firing watches of nodes the transaction removed. */
  origPerms: Map<string, PermissionEntry[]>;
  nodeCreated: boolean;
  failed: boolean;
}

export interface SimConnectionInfo {
  readonly id: number;
  readonly domid: number;
  readonly privileged: boolean;
  readonly kind: 'domain' | 'socket';
}

/** One connection to the sim: its owner gets messages through `sink` (synchronously). */
export class SimConnection implements SimConnectionInfo {
  readonly watches: SimWatch[] = [];
  readonly transactions = new Map<number, SimTransaction>();
  nextTransactionId = 1;
  closed = false;
  /** The current transaction while one request is processed. */
  tx: SimTransaction | undefined;
  readonly reader = new MessageReader(XENSTORE_PAYLOAD_MAX, true);
  /** Unflushed watch events, for xenstored's "identical event already pending" suppression. */
  pendingEvents = new Set<string>();

  constructor(
    readonly id: number,
    readonly domid: number,
    readonly kind: 'domain' | 'socket',
    readonly sink: (message: Uint8Array) => void,
    readonly onClosed: () => void,
  ) {}

  get privileged(): boolean {
    return this.kind === 'socket' || this.domid === 0;
  }

  /** Where relative paths point: /local/domain/<domid> (socket connections: dom0's). */
  get home(): string {
    return `/local/domain/${this.kind === 'socket' ? 0 : this.domid}`;
  }
}

interface SimDomain {
  domid: number;
  introduced: boolean;
  watchCount: number;
  target: number | undefined;
}

const NO_GENERATION = -1;
const validChars = /^[A-Za-z0-9\-/_@]*$/;

export interface XenstoredSimOptions {
  quotas?: Partial<XenstoredQuotas>;
  /** Create /local/domain/0 (dom0's home) as xen-init-dom0 does. Default true. */
  initDom0?: boolean;
}

export class XenstoredSim {
  readonly quotas: XenstoredQuotas;
  private readonly nodes = new Map<string, SimNode>();
  private readonly usage = new Map<number, { entries: number; memory: number }>();
  private generation = 0;
  private readonly connections = new Set<SimConnection>();
  private nextConnId = 1;
  private readonly domains = new Map<number, SimDomain>();
  private introducePerms: PermissionEntry[] = [{ domid: 0, access: 'none' }];
  private releasePerms: PermissionEntry[] = [{ domid: 0, access: 'none' }];
  /** Counters a test can look at. */
  readonly stats = { requests: 0, killedConnections: 0, eventsSent: 0, eventsSuppressed: 0 };

  constructor(options: XenstoredSimOptions = {}) {
    this.quotas = { ...XENSTORED_4_17_QUOTAS, ...options.quotas };
    // setup_structure(): /, /tool, /tool/xenstored, owned by dom0 with no access for others.
    const rootPerms = (): PermissionEntry[] => [{ domid: 0, access: 'none' }];
    this.setNode('/', { value: new Uint8Array(0), perms: rootPerms(), children: ['tool'], generation: 0 });
    this.setNode('/tool', {
      value: new Uint8Array(0),
      perms: rootPerms(),
      children: ['xenstored'],
      generation: 0,
    });
    this.setNode('/tool/xenstored', {
      value: new Uint8Array(0),
      perms: rootPerms(),
      children: [],
      generation: 0,
    });
    this.domains.set(0, { domid: 0, introduced: true, watchCount: 0, target: undefined });
    if (options.initDom0 ?? true) {
      this.adminWrite('/local/domain/0/name', 'Domain-0');
      this.adminWrite('/local/domain/0/domid', '0');
    }
  }

  // ---- set-up helpers for tests (act as the toolstack, bypassing permissions) ----

  /**
   * Creates a domain as `xl create` would (libxl__domain_make, tools/libs/light/libxl_create.c):
   * introduced; /local/domain/<domid> and its `domid`, `name`, `cpu`, `memory`, `device`,
   * `control` owned by dom0 and readable by the domain; `data`, `drivers`, `feature`, `attr`,
   * `error`, `control/{shutdown,feature-poweroff,feature-reboot,feature-suspend,sysrq}` and
   * `device/suspend/event-channel` owned by the domain (11 nodes toward its quota).
   */
  createDomain(domid: number, name = `dom${domid}`): void {
    if (!Number.isInteger(domid) || domid <= 0 || domid >= DOMID_SELF)
      throw new RangeError(`bad domid ${domid}`);
    const home = `/local/domain/${domid}`;
    this.domain(domid).introduced = true;
    const ro: PermissionEntry[] = [
      { domid: 0, access: 'none' },
      { domid, access: 'read' },
    ];
    const rw: PermissionEntry[] = [{ domid, access: 'none' }];
    this.adminWrite(home, '', ro);
    this.adminWrite(`${home}/domid`, String(domid), ro);
    this.adminWrite(`${home}/name`, name, ro);
    for (const dir of ['cpu', 'memory', 'device', 'control']) this.adminWrite(`${home}/${dir}`, '', ro);
    this.adminWrite(`${home}/device/suspend/event-channel`, '', rw);
    for (const key of ['shutdown', 'feature-poweroff', 'feature-reboot', 'feature-suspend', 'sysrq']) {
      this.adminWrite(`${home}/control/${key}`, '', rw);
    }
    for (const dir of ['data', 'drivers', 'feature', 'attr', 'error'])
      this.adminWrite(`${home}/${dir}`, '', rw);
    this.fireWatches(undefined, '@introduceDomain', undefined, true, undefined);
  }

  /** Writes a node as the toolstack would, with the given permissions (default: inherited). */
  adminWrite(path: string, value: string | Uint8Array, perms?: PermissionEntry[]): void {
    const bytes = typeof value === 'string' ? utf8(value) : value;
    const view = this.globalView();
    const existing = view.get(path);
    if (existing) {
      view.put(path, {
        ...existing,
        value: bytes,
        perms: perms ? perms.map((p) => ({ ...p })) : existing.perms,
      });
    } else {
      this.createNode(undefined, view, path, bytes);
      if (perms) view.put(path, { ...view.get(path)!, perms: perms.map((p) => ({ ...p })) });
    }
  }

  /** Reads a node directly (tests), or undefined. */
  peek(path: string): { value: string; perms: PermissionEntry[]; children: string[] } | undefined {
    const n = this.nodes.get(path);
    return n
      ? {
          value: new TextDecoder().decode(n.value),
          perms: n.perms.map((p) => ({ ...p })),
          children: [...n.children],
        }
      : undefined;
  }

  /** Number of nodes owned by `domid` (what the entry quota counts). */
  entriesOwnedBy(domid: number): number {
    return this.usage.get(domid)?.entries ?? 0;
  }

  /** Every change of the global tree goes through here, keeping the per-owner counts exact. */
  private setNode(path: string, node: SimNode | undefined): void {
    const old = this.nodes.get(path);
    if (old) this.account(old.perms[0]!.domid, -1, -(this.recordSize(old) + path.length));
    if (node) {
      this.nodes.set(path, node);
      this.account(node.perms[0]!.domid, 1, this.recordSize(node) + path.length);
    } else {
      this.nodes.delete(path);
    }
  }

  private account(domid: number, entries: number, memory: number): void {
    let u = this.usage.get(domid);
    if (!u) {
      u = { entries: 0, memory: 0 };
      this.usage.set(domid, u);
    }
    u.entries += entries;
    u.memory += memory;
  }

  // ---- connections ----

  /** A raw connection as `domid` (as a guest's shared ring would be); dom0's is privileged. */
  connect(options: { domid: number }): SimTransport {
    return new SimTransport(this, options.domid, 'domain');
  }

  /** A privileged socket connection (as /var/run/xenstored/socket): acts as dom0. */
  connectSocket(): SimTransport {
    return new SimTransport(this, 0, 'socket');
  }

  /**
   * A fake /dev/xen/xenbus opened in domain `domid` (Linux driver behaviour, 4080-byte payload
   * limit); every open file of a domain shares one connection, as in a real guest.
   */
  openXenbusDevice(domid: number, options: { chunkSize?: number } = {}): SimXenbusFile {
    return openSimXenbusDevice(this, domid, options);
  }

  /** A transport factory opening /dev/xen/xenbus in `domid` (the real XenbusTransport over the fake device). */
  xenbusTransportFactory(
    domid: number,
    options: { chunkSize?: number } = {},
  ): () => Promise<XenstoreTransport> {
    return async () => new XenbusTransport(this.openXenbusDevice(domid, options), `sim xenbus dom${domid}`);
  }

  /**
   * Serves the sim on a unix socket (host tests of the socket transport): each accepted
   * connection acts as dom0 through the socket, like /var/run/xenstored/socket, or as
   * `options.domid` when given (a test stand-in for a domain's connection).
   */
  listen(path: string, options: { domid?: number } = {}): Promise<Server> {
    const domid = options.domid ?? 0;
    const server = createServer((socket) => {
      // Written to the socket at once: nothing stays queued, so no event is suppressed as a duplicate.
      const conn: SimConnection = this.attach(
        domid,
        domid === 0 ? 'socket' : 'domain',
        (m) => {
          socket.write(m);
          conn.pendingEvents.clear();
        },
        () => socket.destroy(),
      );
      socket.on('data', (chunk: Buffer) => {
        this.receive(conn, new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
        this.flushed(conn);
      });
      socket.on('close', () => this.detach(conn));
      socket.on('error', () => this.detach(conn));
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve(server));
    });
  }

  /** A transport factory for `connect({ domid })` (dom0: a socket connection). */
  transportFactory(domid: number): () => Promise<XenstoreTransport> {
    return async () => (domid === 0 ? this.connectSocket() : this.connect({ domid }));
  }

  /** @internal */
  attach(
    domid: number,
    kind: 'domain' | 'socket',
    sink: (m: Uint8Array) => void,
    onClosed: () => void,
  ): SimConnection {
    if (kind === 'domain' && domid !== 0) this.domain(domid);
    const conn = new SimConnection(this.nextConnId++, domid, kind, sink, onClosed);
    this.connections.add(conn);
    return conn;
  }

  /** @internal Closes a connection as xenstored does when its peer goes away. */
  detach(conn: SimConnection): void {
    if (conn.closed) return;
    conn.closed = true;
    this.deleteAllWatches(conn);
    conn.transactions.clear();
    this.connections.delete(conn);
    conn.onClosed();
  }

  /** @internal Bytes from a connection's client. */
  receive(conn: SimConnection, bytes: Uint8Array): void {
    if (conn.closed) return;
    const { messages, error } = conn.reader.push(bytes);
    for (const m of messages) {
      if (conn.closed) return;
      this.process(conn, m);
    }
    if (error) {
      // handle_input(): a length over XENSTORE_PAYLOAD_MAX is a protocol violation; the
      // connection is ignored (a socket is dropped).
      this.stats.killedConnections++;
      this.detach(conn);
    }
  }

  /** @internal The flush of a connection's outgoing queue (events may be suppressed until then). */
  flushed(conn: SimConnection): void {
    conn.pendingEvents.clear();
  }

  // ---- request processing (process_message) ----

  private process(conn: SimConnection, m: Message): void {
    this.stats.requests++;
    const reply = (type: number, payload: Uint8Array) => {
      if (payload.length > XENSTORE_PAYLOAD_MAX) {
        this.send(conn, XsType.ERROR, m.reqId, m.txId, joinStrings(['E2BIG']));
        return;
      }
      this.send(conn, type, m.reqId, m.txId, payload);
    };
    const ack = () => reply(m.type, joinStrings(['OK']));
    const deferred: (() => void)[] = [];
    try {
      const privOnly = [
        XsType.CONTROL,
        XsType.INTRODUCE,
        XsType.RELEASE,
        XsType.IS_DOMAIN_INTRODUCED,
        XsType.RESUME,
        XsType.SET_TARGET,
      ] as number[];
      const handled = [
        ...privOnly,
        XsType.DIRECTORY,
        XsType.READ,
        XsType.GET_PERMS,
        XsType.WATCH,
        XsType.UNWATCH,
        XsType.TRANSACTION_START,
        XsType.TRANSACTION_END,
        XsType.GET_DOMAIN_PATH,
        XsType.WRITE,
        XsType.MKDIR,
        XsType.RM,
        XsType.SET_PERMS,
        XsType.RESET_WATCHES,
        XsType.DIRECTORY_PART,
      ] as number[];
      if (!handled.includes(m.type)) throw new XsFail('ENOSYS');
      if (privOnly.includes(m.type) && !conn.privileged) throw new XsFail('EACCES');
      const notid = m.type === XsType.WATCH || m.type === XsType.UNWATCH;
      conn.tx = undefined;
      if (!notid && m.txId !== 0) {
        const tx = conn.transactions.get(m.txId);
        if (!tx) throw new XsFail('ENOENT');
        conn.tx = tx;
      }
      this.dispatch(conn, m, reply, ack, deferred);
    } catch (error) {
      if (!(error instanceof XsFail)) throw error;
      this.send(conn, XsType.ERROR, m.reqId, m.txId, joinStrings([error.code]));
    } finally {
      conn.tx = undefined;
    }
    for (const d of deferred) d();
  }

  private dispatch(
    conn: SimConnection,
    m: Message,
    reply: (type: number, payload: Uint8Array) => void,
    ack: () => void,
    deferred: (() => void)[],
  ): void {
    const p = m.payload;
    const view = conn.tx ? this.txView(conn, conn.tx) : this.globalView();
    switch (m.type) {
      case XsType.READ: {
        const { node } = this.getNode(conn, view, oneArg(p), 'read');
        reply(XsType.READ, node.value);
        return;
      }
      case XsType.DIRECTORY: {
        const { node } = this.getNode(conn, view, oneArg(p), 'read');
        reply(XsType.DIRECTORY, joinStrings(node.children));
        return;
      }
      case XsType.DIRECTORY_PART: {
        const args = strings(p);
        if (countNuls(p) !== 2 || args.length < 2) throw new XsFail('EINVAL');
        const { node } = this.getNode(conn, view, args[0], 'read');
        reply(XsType.DIRECTORY_PART, directoryPart(node, Number.parseInt(args[1]!, 10) || 0));
        return;
      }
      case XsType.GET_PERMS: {
        const { node } = this.getNode(conn, view, oneArg(p), 'read');
        reply(XsType.GET_PERMS, joinStrings(node.perms.map(permString)));
        return;
      }
      case XsType.WRITE: {
        const nul = p.indexOf(0);
        if (nul < 0) throw new XsFail('EINVAL');
        const path = new TextDecoder().decode(p.subarray(0, nul));
        const value = p.slice(nul + 1);
        const got = this.tryGetNode(conn, view, path, 'write');
        if (got.node) {
          const updated = { ...got.node, value };
          this.checkWrite(conn, updated);
          this.checkMemory(conn, this.recordSize(updated) - this.recordSize(got.node));
          view.put(got.name, updated);
        } else {
          this.createNode(conn, view, got.name, value);
        }
        this.fireWatches(conn, got.name, view.get(got.name), false, undefined);
        ack();
        return;
      }
      case XsType.MKDIR: {
        const got = this.tryGetNode(conn, view, oneArg(p), 'write');
        if (!got.node) {
          this.createNode(conn, view, got.name, new Uint8Array(0));
          this.fireWatches(conn, got.name, view.get(got.name), false, undefined);
        }
        ack();
        return;
      }
      case XsType.RM: {
        const got = this.tryGetNode(conn, view, oneArg(p), 'write');
        if (!got.node) {
          if (view.get(parentOf(got.name))) ack();
          else throw new XsFail('ENOENT');
          return;
        }
        if (got.name === '/') throw new XsFail('EINVAL');
        this.removeTree(conn, view, got.name);
        ack();
        return;
      }
      case XsType.SET_PERMS:
        this.setPerms(conn, view, p);
        ack();
        return;
      case XsType.WATCH: {
        const args = strings(p);
        if (countNuls(p) !== 2) throw new XsFail('EINVAL');
        this.addWatch(conn, args[0]!, args[1]!, ack);
        return;
      }
      case XsType.UNWATCH: {
        const args = strings(p);
        if (countNuls(p) !== 2) throw new XsFail('EINVAL');
        const node = this.canonical(conn, args[0]!);
        const i = conn.watches.findIndex((w) => w.node === node && w.token === args[1]);
        if (i < 0) throw new XsFail('ENOENT');
        conn.watches.splice(i, 1);
        this.domainWatchCount(conn, -1);
        ack();
        return;
      }
      case XsType.TRANSACTION_START: {
        if (conn.tx) throw new XsFail('EBUSY');
        // do_transaction_start: "transaction_started > quota_max_transaction" refuses.
        if (!conn.privileged && conn.transactions.size > this.quotas.transactionsPerConnection) {
          throw new XsFail('ENOSPC');
        }
        let id = conn.nextTransactionId;
        while (id === 0 || conn.transactions.has(id)) id = (id + 1) >>> 0;
        conn.nextTransactionId = (id + 1) >>> 0;
        conn.transactions.set(id, {
          id,
          overlay: new Map(),
          accessed: new Map(),
          watches: new Map(),
          origPerms: new Map(),
          nodeCreated: false,
          failed: false,
        });
        reply(XsType.TRANSACTION_START, joinStrings([String(id)]));
        return;
      }
      case XsType.TRANSACTION_END: {
        const arg = oneArgOrUndefined(p);
        if (arg !== 'T' && arg !== 'F') throw new XsFail('EINVAL');
        const tx = conn.tx;
        if (!tx) throw new XsFail('ENOENT');
        conn.transactions.delete(tx.id);
        conn.tx = undefined;
        if (arg === 'T') this.commit(conn, tx);
        ack();
        return;
      }
      case XsType.GET_DOMAIN_PATH:
        reply(XsType.GET_DOMAIN_PATH, joinStrings([`/local/domain/${atoi(oneArg(p))}`]));
        return;
      case XsType.IS_DOMAIN_INTRODUCED: {
        const domid = atoi(oneArg(p));
        const yes = domid === DOMID_SELF || this.domains.get(domid)?.introduced === true;
        reply(XsType.IS_DOMAIN_INTRODUCED, joinStrings([yes ? 'T' : 'F']));
        return;
      }
      case XsType.INTRODUCE: {
        const args = strings(p);
        if (args.length < 3) throw new XsFail('EINVAL');
        const domid = atoi(args[0]!);
        if (atoi(args[2]!) <= 0) throw new XsFail('EINVAL');
        const d = this.domain(domid);
        const fresh = !d.introduced;
        d.introduced = true;
        // domain_conn_reset(): the domain's ring connection loses its watches and transactions.
        for (const c of this.connections) {
          if (c.kind === 'domain' && c.domid === domid) {
            this.deleteAllWatches(c);
            c.transactions.clear();
          }
        }
        ack();
        if (fresh && domid !== 0)
          deferred.push(() => this.fireWatches(undefined, '@introduceDomain', undefined, true, undefined));
        return;
      }
      case XsType.RELEASE: {
        const domid = atoi(oneArg(p));
        if (domid === 0) throw new XsFail('EINVAL');
        const d = this.domains.get(domid);
        if (!d?.introduced) throw new XsFail('ENOENT');
        ack();
        deferred.push(() => this.destroyDomain(domid));
        return;
      }
      case XsType.RESUME: {
        const domid = atoi(oneArg(p));
        if (domid === 0) throw new XsFail('EINVAL');
        if (!this.domains.get(domid)?.introduced) throw new XsFail('ENOENT');
        ack();
        return;
      }
      case XsType.SET_TARGET: {
        const args = strings(p);
        if (args.length < 2) throw new XsFail('EINVAL');
        const d = this.domains.get(atoi(args[0]!));
        const t = this.domains.get(atoi(args[1]!));
        if (!d?.introduced || !t?.introduced) throw new XsFail('ENOENT');
        d.target = t.domid;
        ack();
        return;
      }
      case XsType.RESET_WATCHES:
        this.deleteAllWatches(conn);
        conn.transactions.clear();
        ack();
        return;
      case XsType.CONTROL: {
        const args = strings(p);
        const [cmd, ...rest] = args;
        if (cmd === 'check' && rest.length === 0) ack();
        else if (cmd === 'print' && rest.length === 1) ack();
        else if (cmd === 'help' && rest.length === 0)
          reply(XsType.CONTROL, joinStrings(['check\nprint <string>\nhelp\n']));
        else throw new XsFail('EINVAL');
        return;
      }
    }
    throw new XsFail('ENOSYS');
  }

  // ---- node access (get_node, errno_from_parents, perm_for_conn) ----

  private canonical(conn: SimConnection, path: string): string {
    if (path.startsWith('/') || path.startsWith('@')) return path;
    return `${conn.home}/${path}`;
  }

  private validName(name: string): boolean {
    if (!name.startsWith('/')) return false;
    if (name.endsWith('/') && name !== '/') return false;
    if (name.includes('//')) return false;
    const m = /^\/local\/domain\/([0-9]{1,5})\//.exec(name);
    const localOff = m && Number(m[1]) <= 0xffffffff ? m[0].length : 0;
    if (name.length > localOff + this.quotas.maxPathLength) return false;
    return validChars.test(name);
  }

  private permFor(
    conn: SimConnection | undefined,
    perms: PermissionEntry[],
  ): { access: Access; owner: boolean } {
    if (!conn || conn.privileged) return { access: 'both', owner: true };
    const target = this.domains.get(conn.domid)?.target;
    const ownerId = perms[0]!.domid;
    if (ownerId === conn.domid || (target !== undefined && ownerId === target))
      return { access: 'both', owner: true };
    for (let i = 1; i < perms.length; i++) {
      const e = perms[i]!;
      if (!this.domainExists(e.domid)) continue; // XS_PERM_IGNORE: entries for absent domains
      if (e.domid === conn.domid || (target !== undefined && e.domid === target))
        return { access: e.access, owner: false };
    }
    return { access: perms[0]!.access, owner: false };
  }

  private allows(
    conn: SimConnection | undefined,
    perms: PermissionEntry[],
    want: 'read' | 'write' | 'owner',
  ): boolean {
    const p = this.permFor(conn, perms);
    if (want === 'owner') return p.owner;
    return want === 'read' ? canRead(p.access) : canWrite(p.access);
  }

  /** get_node(): the node, or XsFail(EINVAL/EACCES/ENOENT) with the parents deciding ENOENT vs EACCES. */
  private tryGetNode(
    conn: SimConnection,
    view: View,
    rawPath: string | undefined,
    want: 'read' | 'write' | 'owner',
  ): { name: string; node: SimNode | undefined } {
    if (rawPath === undefined) throw new XsFail('EINVAL');
    const name = this.canonical(conn, rawPath);
    if (!this.validName(name)) throw new XsFail('EINVAL');
    const node = view.get(name);
    if (node) {
      const ok =
        want === 'owner'
          ? this.allows(conn, node.perms, 'write') && this.allows(conn, node.perms, 'owner')
          : this.allows(conn, node.perms, want);
      if (!ok) throw new XsFail('EACCES');
      return { name, node };
    }
    // errno_from_parents(): only tell "absent" to who may see the nearest existing ancestor.
    let parent = name;
    let ancestor: SimNode | undefined;
    while (parent !== '/' && !ancestor) {
      parent = parentOf(parent);
      ancestor = view.get(parent);
    }
    const perm = want === 'read' ? 'read' : 'write';
    if (!ancestor || !this.allows(conn, ancestor.perms, perm)) throw new XsFail('EACCES');
    return { name, node: undefined };
  }

  private getNode(
    conn: SimConnection,
    view: View,
    rawPath: string | undefined,
    want: 'read' | 'write' | 'owner',
  ) {
    const got = this.tryGetNode(conn, view, rawPath, want);
    if (!got.node) throw new XsFail('ENOENT');
    return got as { name: string; node: SimNode };
  }

  // ---- quotas ----

  private recordSize(node: SimNode): number {
    let childLen = 0;
    for (const c of node.children) childLen += c.length + 1; // names are ASCII (valid_chars)
    return RECORD_HEADER_SIZE + PERMISSION_RECORD_SIZE * node.perms.length + node.value.length + childLen;
  }

  /** write_node_raw(): an unprivileged writer's record must stay below quota_max_entry_size. */
  private checkWrite(conn: SimConnection | undefined, node: SimNode): void {
    if (conn && !conn.privileged && this.recordSize(node) >= this.quotas.maxEntrySize)
      throw new XsFail('ENOSPC');
  }

  /** domain_memory_add() for a node growing by `delta` bytes (EIO, see XenstoredQuotas.memoryPerDomain). */
  private checkMemory(conn: SimConnection, delta: number): void {
    if (!conn.privileged && delta > 0 && this.memoryOf(conn.domid, delta) >= this.quotas.memoryPerDomain) {
      throw new XsFail('EIO');
    }
  }

  private memoryOf(domid: number, extra = 0): number {
    let total = extra + (this.usage.get(domid)?.memory ?? 0);
    for (const c of this.connections) {
      if (c.domid !== domid || c.kind !== 'domain') continue;
      for (const w of c.watches) total += w.node.length + w.token.length;
    }
    return total;
  }

  private domain(domid: number): SimDomain {
    let d = this.domains.get(domid);
    if (!d) {
      d = { domid, introduced: false, watchCount: 0, target: undefined };
      this.domains.set(domid, d);
    }
    return d;
  }

  private domainExists(domid: number): boolean {
    return this.domains.get(domid)?.introduced === true;
  }

  private domainWatchCount(conn: SimConnection, delta: number): void {
    if (conn.kind !== 'domain') return;
    const d = this.domain(conn.domid);
    d.watchCount = Math.max(0, d.watchCount + delta);
  }

  // ---- modifications ----

  /** construct_node() + create_node(): missing ancestors are created with inherited permissions. */
  private createNode(conn: SimConnection | undefined, view: View, name: string, value: Uint8Array): void {
    const missing: string[] = [];
    let at = name;
    let parent: SimNode | undefined;
    while (!parent) {
      missing.push(at);
      if (at === '/') throw new XsFail('ENOENT');
      at = parentOf(at);
      parent = view.get(at);
    }
    const unprivileged = conn !== undefined && !conn.privileged;
    if (unprivileged) {
      const owned = this.entriesOwnedBy(conn.domid);
      if (owned + missing.length > this.quotas.entriesPerDomain) throw new XsFail('ENOSPC');
    }
    // Build every new node first, check the size quota on each record written, then apply.
    const writes: [string, SimNode][] = [];
    let parentName = at;
    let parentNode: SimNode = { ...parent, children: [...parent.children] };
    for (let i = missing.length - 1; i >= 0; i--) {
      const childName = missing[i]!;
      parentNode.children.push(baseName(childName));
      writes.push([parentName, parentNode]);
      const perms = parentNode.perms.map((p) => ({ ...p }));
      if (unprivileged) perms[0] = { domid: conn.domid, access: perms[0]!.access };
      const node: SimNode = {
        value: i === 0 ? value : new Uint8Array(0),
        perms,
        children: [],
        generation: 0,
      };
      parentName = childName;
      parentNode = node;
    }
    writes.push([parentName, parentNode]);
    for (const [, n] of writes) this.checkWrite(conn, n);
    if (unprivileged) {
      let extra = 0;
      for (const [p, n] of writes) extra += this.recordSize(n) + p.length;
      // do_tdb_write() refuses with ENOMEM, which write_node_raw() turns into EIO.
      if (this.memoryOf(conn.domid, extra) >= this.quotas.memoryPerDomain) throw new XsFail('EIO');
    }
    if (conn?.tx) {
      conn.tx.nodeCreated = true;
      const touched = new Set([...conn.tx.accessed.keys()]);
      for (const [p] of writes) touched.add(p);
      if (!conn.privileged && touched.size > this.quotas.nodesPerTransaction) {
        conn.tx.failed = true;
        throw new XsFail('ENOSPC');
      }
    }
    for (const [p, n] of writes) view.put(p, n);
  }

  /** rm_node(): children first; watches fire for each node (exact below the removed one). */
  private removeTree(conn: SimConnection, view: View, name: string): void {
    const visit = (path: string, root: boolean) => {
      const node = view.get(path);
      if (!node) return;
      for (const child of node.children) visit(joinPath(path, child), false);
      this.fireWatches(conn, path, node, !root, undefined);
      view.del(path);
    };
    visit(name, true);
    const parentName = parentOf(name);
    const parent = view.get(parentName);
    if (parent) {
      view.put(parentName, { ...parent, children: parent.children.filter((c) => c !== baseName(name)) });
    }
  }

  private setPerms(conn: SimConnection, view: View, p: Uint8Array): void {
    const args = strings(p);
    const count = countNuls(p);
    if (count < 2) throw new XsFail('EINVAL');
    const n = count - 1;
    if (!conn.privileged && n > this.quotas.permsPerNode) throw new XsFail('ENOSPC');
    const parsed: PermissionEntry[] = [];
    for (const text of args.slice(1, 1 + n)) {
      const e = parseLoosePermission(text);
      if (!e) throw new XsFail('EINVAL');
      parsed.push(e);
    }
    if (parsed.length !== n) throw new XsFail('EINVAL');
    const path = args[0]!;
    // The owner entry naming a domain that does not exist is refused (XS_PERM_IGNORE on p[0]).
    if (!this.domainExists(parsed[0]!.domid)) throw new XsFail('ENOENT');
    if (path.startsWith('@')) {
      const current =
        path === '@introduceDomain'
          ? this.introducePerms
          : path === '@releaseDomain'
            ? this.releasePerms
            : undefined;
      if (!current) throw new XsFail('EINVAL');
      if (!this.allows(conn, current, 'write') || !this.allows(conn, current, 'owner'))
        throw new XsFail('EACCES');
      if (path === '@introduceDomain') this.introducePerms = parsed;
      else this.releasePerms = parsed;
      return;
    }
    const { name, node } = this.getNode(conn, view, path, 'owner');
    if (!conn.privileged && parsed[0]!.domid !== node.perms[0]!.domid) throw new XsFail('EPERM');
    const updated = { ...node, perms: parsed };
    this.checkWrite(conn, updated);
    const old = node.perms;
    view.put(name, updated);
    this.fireWatches(conn, name, updated, false, old);
  }

  // ---- transactions ----

  private globalView(): View {
    return {
      get: (path) => this.nodes.get(path),
      put: (path, node) => {
        node.generation = ++this.generation;
        this.setNode(path, node);
      },
      del: (path) => {
        this.setNode(path, undefined);
        ++this.generation;
      },
    };
  }

  private txView(conn: SimConnection, tx: SimTransaction): View {
    const touch = (path: string) => {
      if (tx.accessed.has(path)) return;
      if (!conn.privileged && tx.accessed.size >= this.quotas.nodesPerTransaction) {
        tx.failed = true;
        throw new XsFail('ENOSPC');
      }
      const current = this.nodes.get(path);
      tx.accessed.set(path, current?.generation ?? NO_GENERATION);
      if (current)
        tx.origPerms.set(
          path,
          current.perms.map((p) => ({ ...p })),
        );
    };
    return {
      get: (path) => {
        touch(path);
        if (tx.overlay.has(path)) return tx.overlay.get(path) ?? undefined;
        const n = this.nodes.get(path);
        return n ? { ...n, perms: n.perms.map((p) => ({ ...p })), children: [...n.children] } : undefined;
      },
      put: (path, node) => {
        touch(path);
        tx.overlay.set(path, node);
      },
      del: (path) => {
        touch(path);
        tx.overlay.set(path, null);
      },
    };
  }

  /** do_transaction_end("T"): fail → ENOMEM, entry quota → ENOSPC, conflict → EAGAIN, else apply. */
  private commit(conn: SimConnection, tx: SimTransaction): void {
    if (tx.failed) throw new XsFail('ENOMEM');
    for (const [path, gen] of tx.accessed) {
      if ((this.nodes.get(path)?.generation ?? NO_GENERATION) !== gen) throw new XsFail('EAGAIN');
    }
    if (tx.nodeCreated && !conn.privileged) {
      let owned = this.entriesOwnedBy(conn.domid);
      for (const [path, node] of tx.overlay) {
        const before = this.nodes.get(path);
        if (before && before.perms[0]!.domid === conn.domid) owned--;
        if (node && node.perms[0]!.domid === conn.domid) owned++;
      }
      if (owned >= this.quotas.entriesPerDomain) throw new XsFail('ENOSPC');
    }
    const view = this.globalView();
    for (const [path, node] of tx.overlay) {
      if (node) view.put(path, node);
      else view.del(path);
    }
    for (const [path, exact] of tx.watches) {
      this.fireWatches(undefined, path, this.nodes.get(path), exact, tx.origPerms.get(path));
    }
  }

  // ---- watches ----

  private addWatch(conn: SimConnection, rawPath: string, token: string, ack: () => void): void {
    let node: string;
    let relativeTo: string | undefined;
    if (rawPath.startsWith('@')) {
      if (rawPath.length > 2048) throw new XsFail('EINVAL');
      node = rawPath;
    } else {
      node = this.canonical(conn, rawPath);
      if (!rawPath.startsWith('/')) relativeTo = conn.home;
      if (!this.validName(node)) throw new XsFail('EINVAL');
    }
    if (conn.watches.some((w) => w.node === node && w.token === token)) throw new XsFail('EEXIST');
    // do_watch(): "domain_watch(conn) > quota_nb_watch_per_domain" refuses.
    if (
      !conn.privileged &&
      conn.kind === 'domain' &&
      this.domain(conn.domid).watchCount > this.quotas.watchesPerDomain
    ) {
      throw new XsFail('E2BIG');
    }
    if (
      !conn.privileged &&
      this.memoryOf(conn.domid, node.length + token.length) >= this.quotas.memoryPerDomain
    ) {
      throw new XsFail('ENOMEM');
    }
    const watch: SimWatch = { node, token, relativeTo };
    conn.watches.push(watch);
    this.domainWatchCount(conn, 1);
    ack();
    // "We fire once up front": after the acknowledgement.
    this.sendEvent(conn, eventPath(watch, node), token);
  }

  private deleteAllWatches(conn: SimConnection): void {
    this.domainWatchCount(conn, -conn.watches.length);
    conn.watches.length = 0;
  }

  /** fire_watches(): queued inside a transaction; otherwise to every permitted matching watch. */
  private fireWatches(
    conn: SimConnection | undefined,
    name: string,
    node: SimNode | undefined,
    exact: boolean,
    oldPerms: PermissionEntry[] | undefined,
  ): void {
    if (conn?.tx) {
      const prev = conn.tx.watches.get(name);
      conn.tx.watches.set(name, prev === undefined ? exact : prev && exact);
      return;
    }
    const special = name.startsWith('@');
    for (const c of this.connections) {
      if (special) {
        const perms = name === '@introduceDomain' ? this.introducePerms : this.releasePerms;
        if (!this.allows(c, perms, 'read')) continue;
      } else if (!this.watchPermitted(c, name, node, oldPerms)) {
        continue;
      }
      for (const w of c.watches) {
        const match = exact ? name === w.node : isChild(name, w.node);
        if (match) this.sendEvent(c, eventPath(w, name), w.token, special);
      }
    }
  }

  /** watch_permitted(): the watcher may read the node (old or new permissions) or its parent. */
  private watchPermitted(
    c: SimConnection,
    name: string,
    node: SimNode | undefined,
    oldPerms: PermissionEntry[] | undefined,
  ): boolean {
    if (oldPerms && this.allows(c, oldPerms, 'read')) return true;
    const n = node ?? this.nodes.get(name);
    if (!n) return false;
    if (this.allows(c, n.perms, 'read')) return true;
    const parent = this.nodes.get(parentOf(name));
    return parent !== undefined && this.allows(c, parent.perms, 'read');
  }

  private sendEvent(conn: SimConnection, path: string, token: string, special = false): void {
    const payload = joinStrings([path, token]);
    if (payload.length > XENSTORE_PAYLOAD_MAX) return;
    // send_event(): an identical (non-special) event still queued is not sent twice.
    const key = `${path}\0${token}`;
    if (!special && conn.pendingEvents.has(key)) {
      this.stats.eventsSuppressed++;
      return;
    }
    conn.pendingEvents.add(key);
    this.stats.eventsSent++;
    this.send(conn, XsType.WATCH_EVENT, 0, 0, payload);
  }

  private destroyDomain(domid: number): void {
    const d = this.domains.get(domid);
    if (!d) return;
    d.introduced = false;
    for (const c of [...this.connections]) if (c.kind === 'domain' && c.domid === domid) this.detach(c);
    // domain_tree_remove() without --keep-orphans: the domain's nodes go.
    const owned = [...this.nodes.entries()].filter(([, n]) => n.perms[0]!.domid === domid).map(([p]) => p);
    owned.sort((a, b) => a.length - b.length);
    const view = this.globalView();
    for (const path of owned) {
      if (!this.nodes.has(path)) continue;
      const removeRec = (p: string) => {
        const n = this.nodes.get(p);
        if (!n) return;
        for (const c of n.children) removeRec(joinPath(p, c));
        view.del(p);
      };
      removeRec(path);
      const parent = this.nodes.get(parentOf(path));
      if (parent)
        view.put(parentOf(path), {
          ...parent,
          children: parent.children.filter((c) => c !== baseName(path)),
        });
    }
    const strip = (perms: PermissionEntry[]) => {
      const out = perms.filter((p, i) => i === 0 || p.domid !== domid);
      if (out[0]!.domid === domid) out[0] = { domid: 0, access: out[0]!.access };
      return out;
    };
    this.introducePerms = strip(this.introducePerms);
    this.releasePerms = strip(this.releasePerms);
    d.watchCount = 0;
    this.fireWatches(undefined, '@releaseDomain', undefined, true, undefined);
  }

  private send(conn: SimConnection, type: number, reqId: number, txId: number, payload: Uint8Array): void {
    if (conn.closed) return;
    conn.sink(encodeMessage(type, reqId, txId, payload));
  }
}

interface View {
  get(path: string): SimNode | undefined;
  put(path: string, node: SimNode): void;
  del(path: string): void;
}

function directoryPart(node: SimNode, off: number): Uint8Array {
  // send_directory_part(): "<generation>\0" then as many children as fit; the last part ends
  // with an extra empty string.
  const gen = utf8(String(Math.max(0, node.generation)));
  const children = joinStrings(node.children);
  const genLen = gen.length + 1;
  if (off >= children.length) return joinStrings([String(Math.max(0, node.generation)), '']);
  const maxLen = XENSTORE_PAYLOAD_MAX - genLen - 1;
  let len = 0;
  let at = off;
  while (at < children.length) {
    const end = children.indexOf(0, at);
    const nameLen = end - at;
    if (len + nameLen >= maxLen) break;
    len += nameLen + 1;
    at = end + 1;
  }
  const complete = off + len === children.length;
  const out = new Uint8Array(genLen + len + (complete ? 1 : 0));
  out.set(gen, 0);
  out.set(children.subarray(off, off + len), genLen);
  return out;
}
