/**
 * Fake network devices for the VM's host tests: links that record what the engine sends and
 * inject what a peer would send, an uplink whose connection the test controls, and a backend
 * whose vifs the test adds and removes (a vif's handshake can be made to never finish).
 */
import { type FrameMeta, plainMeta } from '../engine/config.ts';
import type { ClientBackend, ClientLink, ClientVif, EthernetLink, UplinkDevice } from './devices.ts';

export class FakeLink implements EthernetLink {
  readonly sent: Uint8Array[] = [];
  closed = false;
  private frameHandler: ((buf: Uint8Array, off: number, len: number, meta: FrameMeta) => void) | undefined;
  private downHandler: ((reason: string) => void) | undefined;

  constructor(
    readonly mac: Uint8Array,
    readonly mtu = 1500,
  ) {}

  send(buf: Uint8Array, off: number, len: number): void {
    this.sent.push(buf.slice(off, off + len));
  }
  onFrame(handler: (buf: Uint8Array, off: number, len: number, meta: FrameMeta) => void): void {
    this.frameHandler = handler;
  }
  onDown(handler: (reason: string) => void): void {
    this.downHandler = handler;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
  /** A frame from the peer. */
  inject(frame: Uint8Array): void {
    if (!this.frameHandler) throw new Error('no frame handler yet');
    this.frameHandler(frame, 0, frame.length, plainMeta());
  }
  /** The peer went away. */
  down(reason: string): void {
    this.downHandler?.(reason);
  }
  take(): Uint8Array[] {
    return this.sent.splice(0);
  }
}

export class FakeUplink implements UplinkDevice {
  readonly links: FakeLink[] = [];
  connects = 0;
  fail: string | undefined;
  constructor(readonly mac: Uint8Array) {}
  async connect(): Promise<EthernetLink> {
    this.connects += 1;
    if (this.fail) throw new Error(this.fail);
    const link = new FakeLink(this.mac);
    this.links.push(link);
    return link;
  }
  get current(): FakeLink {
    const link = this.links.at(-1);
    if (!link) throw new Error('the uplink never connected');
    return link;
  }
}

export class FakeClientLink extends FakeLink implements ClientLink {
  constructor(
    readonly clientMac: Uint8Array,
    readonly ip: string,
  ) {
    super(new Uint8Array([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]));
  }
}

export class FakeVif implements ClientVif {
  readonly name: string;
  link: FakeClientLink | undefined;
  aborted = false;
  constructor(
    readonly domid: number,
    readonly handle: number,
    readonly mac: Uint8Array,
    readonly ip: string,
    /** false: the client's netfront never answers; 'fails': the handshake fails. */
    private readonly completes: boolean | 'fails' = true,
  ) {
    this.name = `vif${domid}.${handle}`;
  }
  connect(signal: AbortSignal): Promise<ClientLink> {
    return new Promise((resolve, reject) => {
      signal.addEventListener('abort', () => {
        this.aborted = true;
        reject(new Error(`${this.name}: aborted`));
      });
      if (!this.completes) return;
      if (this.completes === 'fails') {
        reject(new Error(`${this.name}: frontend closed during the handshake`));
        return;
      }
      this.link = new FakeClientLink(this.mac, this.ip);
      resolve(this.link);
    });
  }
}

export class FakeBackend implements ClientBackend {
  private listener: { added(vif: ClientVif): void; removed(vif: ClientVif): void } | undefined;
  stopped = false;
  async start(listener: { added(vif: ClientVif): void; removed(vif: ClientVif): void }): Promise<void> {
    this.listener = listener;
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
  add(vif: FakeVif): void {
    this.listener?.added(vif);
  }
  remove(vif: FakeVif): void {
    this.listener?.removed(vif);
  }
}
