/**
 * The VM side of the Qubes GUI protocol: a vchan server for the GUI domain on port 6000, the
 * version handshake as the C agent does it (QubesOS/qubes-gui-agent-linux @ bc845212eb42
 * `gui-agent/vmside.c` `handshake`), windows whose pixels are shared by grant refs, and input
 * from the daemon delivered to the window it names. Every daemon value is checked; a bad
 * one ends the connection (GuiProtocolError), as the daemon does for a bad agent.
 */
import type { Duplex } from 'node:stream';
import type { VchanTransport } from '@moat/vchan';
import type { DomainId, GrantSharer, SharedPages } from '@moat/xen';
import { GuiError, GuiProtocolError } from './errors.ts';
import { DaemonStreamParser } from './inbound.ts';
import { type Keymap, keymapFor } from './keymap.ts';
import type { Monitor } from './monitors.ts';
import { GuiWindow, type OpenWindowOptions, type WindowLink } from './window.ts';
import {
  AGENT_PROTOCOL_VERSION,
  encodeMessage,
  encodeVersion,
  GUI_RING_SIZE,
  GUI_VCHAN_PORT,
  type GuiMessage,
  MAX_WINDOW_HEIGHT,
  MAX_WINDOW_WIDTH,
  type Xconf,
  XEvent,
} from './wire.ts';

export type GuiLog = (level: 'info' | 'warn' | 'error', message: string) => void;

export interface GuiAgentOptions {
  transport: VchanTransport;
  /** The GUI domain: QubesDB `/qubes-gui-domain-xid`, dom0 (0) when absent. See `guiDomainFrom`. */
  guiDomain: DomainId;
  /** Pages are shared read-only with the GUI domain (gntalloc on Xen, sim on a laptop). */
  grants: GrantSharer;
  /** QubesDB `/keyboard-layout` (`layout+variant+options`), default `us`. */
  keyboardLayout?: string;
  /** Announced version; default 1.7, what Qubes 4.2 dom0s speak. */
  version?: number;
  /**
   * When the daemon goes away, listen again and announce every window to the next one, as the
   * C agent does (default true). A protocol error always ends the agent.
   */
  reconnect?: boolean;
  log?: GuiLog;
  signal?: AbortSignal;
}

export interface GuiAgentStats {
  messagesIn: number;
  messagesOut: number;
  /** Daemon messages for windows we do not have (late input for a closed window). */
  strayMessages: number;
  /** Messages skipped by length (types an agent does not act on). */
  skippedMessages: number;
  clipboardRequestsRefused: number;
  pastesIgnored: number;
  /** Daemon-driven resizes we had no pages for (the window kept its old image). */
  shareFailures: number;
  /** Daemons that connected after the first one went away. */
  reconnects: number;
  /** Messages not sent because no daemon was connected (the windows are announced again anyway). */
  droppedWhileDisconnected: number;
}

/** `/qubes-gui-domain-xid` as the C agent's startup script reads it: a domain id, 0 when absent. */
export function guiDomainFrom(value: string | undefined): DomainId {
  if (value === undefined || value === '') return 0;
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) >= 0x7ff0) {
    throw new GuiError('guiDomainFrom', 'EINVAL', `/qubes-gui-domain-xid is ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** What the agent reads from QubesDB (a `QubesDb` from @moat/qubesdb fits). */
export interface GuiSettingsSource {
  read(path: string): string | undefined;
  watch?(path: string, listener: (changedPath: string) => void): () => void;
}

/**
 * Starts the agent the way the C agent's startup reads its settings: the GUI domain from
 * `/qubes-gui-domain-xid` (dom0 when absent) and the keyboard layout from `/keyboard-layout`,
 * followed when it changes (as `qubes-keymap.sh` does with qubesdb-watch).
 */
export async function startGuiAgent(
  options: Omit<GuiAgentOptions, 'guiDomain' | 'keyboardLayout'> & { qubesdb: GuiSettingsSource },
): Promise<GuiAgent> {
  const { qubesdb, ...rest } = options;
  const agent = await GuiAgent.start({
    ...rest,
    guiDomain: guiDomainFrom(qubesdb.read('/qubes-gui-domain-xid')),
    keyboardLayout: qubesdb.read('/keyboard-layout') || 'us',
  });
  const unwatch = qubesdb.watch?.('/keyboard-layout', () => {
    agent.setKeyboardLayout(qubesdb.read('/keyboard-layout') || 'us');
  });
  if (unwatch) void agent.ended.then(unwatch);
  return agent;
}

export class GuiAgent {
  readonly stats: GuiAgentStats = {
    messagesIn: 0,
    messagesOut: 0,
    strayMessages: 0,
    skippedMessages: 0,
    clipboardRequestsRefused: 0,
    pastesIgnored: 0,
    shareFailures: 0,
    reconnects: 0,
    droppedWhileDisconnected: 0,
  };
  #stream: Duplex | undefined;
  #parser: DaemonStreamParser;
  /** Which connection the stream handlers belong to (a late event of an old one is ignored). */
  #generation = 0;
  /** The connected daemon knows every window (messages for them may go out). */
  #announced = false;
  readonly #options: GuiAgentOptions;
  readonly #windows = new Map<number, GuiWindow>();
  readonly #link: WindowLink;
  readonly #log: GuiLog;
  #keymap: Keymap;
  #nextId = 1;
  #version = 0;
  #xconf: Xconf | undefined;
  #monitors: Monitor[] = [];
  #monitorListeners = new Set<(monitors: readonly Monitor[]) => void>();
  #focused: number | undefined;
  readonly #keysDown = new Set<number>();
  #ended: { promise: Promise<Error | undefined>; resolve: (error?: Error) => void };
  #error: Error | undefined;
  #handshake: { resolve: () => void; reject: (error: Error) => void } | undefined;

  private constructor(options: GuiAgentOptions) {
    this.#options = options;
    this.#log = options.log ?? (() => {});
    this.#parser = new DaemonStreamParser(options.version ?? AGENT_PROTOCOL_VERSION);
    this.#keymap = keymapFor(options.keyboardLayout ?? 'us', this.#log);
    let resolve: (error?: Error) => void = () => {};
    this.#ended = { promise: new Promise((r) => (resolve = r)), resolve: (e) => resolve(e) };
    const agent = this;
    this.#link = {
      get version() {
        return agent.#version;
      },
      send: (message: GuiMessage) => this.#send(message),
      share: (pageCount: number): SharedPages =>
        options.grants.share(options.guiDomain, pageCount, { writable: false }),
      shareFailed: (error: unknown) => {
        this.stats.shareFailures++;
        this.#log('warn', `gui: no pages for a resize from the daemon: ${String(error)}`);
      },
      forget: (window: GuiWindow) => {
        if (this.#windows.get(window.id) === window) this.#windows.delete(window.id);
      },
    };
  }

  /** Listens for the GUI daemon, and resolves after the handshake. */
  static async start(options: GuiAgentOptions): Promise<GuiAgent> {
    const agent = new GuiAgent(options);
    options.signal?.addEventListener('abort', () => agent.close(), { once: true });
    await agent.#connect();
    agent.#announced = true;
    return agent;
  }

  /** True while a daemon is connected, through the handshake and told about every window. */
  get connected(): boolean {
    return this.#announced && !this.#error;
  }

  /** The negotiated protocol version. */
  get version(): number {
    return this.#version;
  }
  /** The daemon's screen (root window) as sent in the handshake. */
  get screen(): Xconf {
    return this.#xconf!;
  }
  /** Monitors from the last `qubes.SetMonitorLayout` call, or one monitor covering the screen. */
  get monitors(): readonly Monitor[] {
    if (this.#monitors.length > 0) return this.#monitors;
    const { w, h } = this.screen;
    return [{ x: 0, y: 0, width: Math.min(w, MAX_WINDOW_WIDTH), height: Math.min(h, MAX_WINDOW_HEIGHT) }];
  }
  /** Windows open now. */
  get windows(): readonly GuiWindow[] {
    return [...this.#windows.values()];
  }
  /** Pages shared with the GUI domain now, over every window. */
  get sharedPages(): number {
    let n = 0;
    for (const w of this.#windows.values()) n += w.sharedPages;
    return n;
  }
  /** Resolves when the connection ends: undefined when we closed it, else why it ended. */
  get ended(): Promise<Error | undefined> {
    return this.#ended.promise;
  }

  setMonitors(monitors: readonly Monitor[]): void {
    this.#monitors = monitors.map((m) => ({ ...m }));
    for (const listener of this.#monitorListeners) listener(this.#monitors);
  }

  onMonitorsChanged(listener: (monitors: readonly Monitor[]) => void): () => void {
    this.#monitorListeners.add(listener);
    return () => this.#monitorListeners.delete(listener);
  }

  setKeyboardLayout(layout: string): void {
    this.#keymap = keymapFor(layout, this.#log);
  }

  /** The key table in use (`de(nodeadkeys)`). */
  get keyboardLayout(): string {
    return this.#keymap.layout;
  }

  openWindow(options: OpenWindowOptions): GuiWindow {
    if (this.#error)
      throw new GuiError('openWindow', 'ECLOSED', `the GUI connection ended: ${this.#error.message}`);
    const id = this.#allocateId();
    const window = new GuiWindow(id, this.#link, options);
    this.#windows.set(id, window);
    return window;
  }

  /** Ends the connection (the daemon then closes the VM's windows). */
  close(): void {
    this.#end(undefined);
  }

  #allocateId(): number {
    // Ids stay taken until the daemon echoed their destroy, so its late messages never reach a new window.
    for (let tries = 0; tries < 0x10000; tries++) {
      const id = this.#nextId;
      this.#nextId = this.#nextId >= 0x7fffffff ? 1 : this.#nextId + 1;
      if (!this.#windows.has(id)) return id;
    }
    throw new GuiError('openWindow', 'ENOSPC', 'no free window id');
  }

  #send(message: GuiMessage): void {
    if (this.#error) return;
    if (!this.connected) {
      this.stats.droppedWhileDisconnected++;
      return;
    }
    this.stats.messagesOut++;
    this.#stream!.write(encodeMessage(message));
  }

  /** Listens, waits for a daemon, does the handshake; rejects if the connection fails before it is through. */
  async #connect(): Promise<void> {
    const stream = await this.#options.transport.listen({
      peer: this.#options.guiDomain,
      port: GUI_VCHAN_PORT,
      readMin: GUI_RING_SIZE,
      writeMin: GUI_RING_SIZE,
    });
    if (this.#error) {
      stream.destroy();
      throw this.#error;
    }
    const generation = ++this.#generation;
    this.#stream = stream;
    this.#parser = new DaemonStreamParser(this.#options.version ?? AGENT_PROTOCOL_VERSION);
    const ready = new Promise<void>((resolve, reject) => {
      this.#handshake = { resolve, reject };
    });
    const current = () => generation === this.#generation;
    stream.on('data', (chunk: Buffer) => {
      if (current()) this.#receive(chunk);
    });
    stream.on('error', (error: Error) => {
      if (current()) this.#lost(error);
    });
    stream.on('close', () => {
      if (current()) this.#lost(new GuiError('read', 'ECONNRESET', 'the GUI daemon disconnected'));
    });
    stream.write(encodeVersion(this.#parser.ownVersion));
    await ready;
  }

  /** The daemon went away (not a protocol error): listen again and announce every window, or end. */
  #lost(error: Error): void {
    if (this.#error) return;
    if (this.#options.reconnect === false || this.#handshake) {
      // A connection that fails during its own handshake ends the agent (start() reports it).
      this.#end(error);
      return;
    }
    this.#log('warn', `gui: ${error.message}; waiting for the GUI daemon again`);
    this.#generation++;
    this.#announced = false;
    this.#stream?.destroy();
    this.#stream = undefined;
    this.#focused = undefined;
    this.#keysDown.clear();
    this.#connect().then(
      () => {
        if (this.#error) return;
        this.stats.reconnects++;
        // Anything drawn since the handshake was dropped; the announcements redraw it all.
        this.#announced = true;
        for (const window of [...this.#windows.values()]) window.reannounce();
      },
      (failure: unknown) => this.#end(failure instanceof Error ? failure : new Error(String(failure))),
    );
  }

  #receive(chunk: Uint8Array): void {
    if (this.#error) return;
    this.#parser.push(chunk);
    try {
      for (let item = this.#parser.next(); item; item = this.#parser.next()) {
        if (item.kind === 'handshake') {
          this.#version = item.version;
          this.#xconf = item.xconf;
          this.#handshake?.resolve();
          this.#handshake = undefined;
        } else if (item.kind === 'skipped') {
          this.stats.skippedMessages++;
          this.#log(
            'warn',
            `gui: skipped message type ${item.header.type} (${item.header.untrustedLength} bytes)`,
          );
        } else {
          this.stats.messagesIn++;
          this.#dispatch(item.message);
        }
      }
    } catch (error) {
      this.#end(error instanceof Error ? error : new Error(String(error)));
    }
  }

  #dispatch(m: GuiMessage): void {
    if (m.kind === 'keymap-notify') {
      this.#keymapNotify(m.keys);
      return;
    }
    if (m.kind === 'clipboard-req') {
      // We have no clipboard to give: answer as the C agent does with no selection owner (empty data).
      this.stats.clipboardRequestsRefused++;
      this.#send({ kind: 'clipboard-data', window: m.window, data: new Uint8Array(0) });
      return;
    }
    if (m.kind === 'clipboard-data') {
      this.stats.pastesIgnored++;
      return;
    }
    const window = this.#windows.get(m.window);
    if (!window) {
      this.stats.strayMessages++;
      return;
    }
    const push = window.events.push.bind(window.events);
    switch (m.kind) {
      case 'keypress': {
        const pressed = m.eventType === XEvent.KeyPress;
        if (!pressed && m.eventType !== XEvent.KeyRelease) this.#bad(m, `key event type ${m.eventType}`);
        if (m.keycode < 8 || m.keycode > 255) this.#bad(m, `keycode ${m.keycode}`);
        if (pressed) this.#keysDown.add(m.keycode);
        else this.#keysDown.delete(m.keycode);
        const { keysym, text } = this.#keymap.lookup(m.keycode, m.state);
        push({
          type: 'key',
          pressed,
          keycode: m.keycode,
          state: m.state & 0xffff,
          keysym,
          text: pressed ? text : '',
        });
        return;
      }
      case 'button': {
        const pressed = m.eventType === XEvent.ButtonPress;
        if (!pressed && m.eventType !== XEvent.ButtonRelease)
          this.#bad(m, `button event type ${m.eventType}`);
        if (m.button < 1 || m.button > 255) this.#bad(m, `button ${m.button}`);
        checkPoint(m, m.x, m.y);
        const wheel = WHEEL[m.button];
        if (wheel) {
          if (pressed) push({ type: 'wheel', ...wheel, x: m.x, y: m.y, state: m.state & 0xffff });
          return;
        }
        push({ type: 'button', pressed, button: m.button, x: m.x, y: m.y, state: m.state & 0xffff });
        return;
      }
      case 'motion':
        checkPoint(m, m.x, m.y);
        push({ type: 'motion', x: m.x, y: m.y, state: m.state & 0xffff });
        return;
      case 'crossing': {
        const enter = m.eventType === XEvent.EnterNotify;
        if (!enter && m.eventType !== XEvent.LeaveNotify) this.#bad(m, `crossing event type ${m.eventType}`);
        checkPoint(m, m.x, m.y);
        push({ type: enter ? 'enter' : 'leave', x: m.x, y: m.y, state: m.state & 0xffff });
        return;
      }
      case 'focus': {
        const focused = m.eventType === XEvent.FocusIn;
        if (!focused && m.eventType !== XEvent.FocusOut) this.#bad(m, `focus event type ${m.eventType}`);
        if (focused) this.#focused = m.window;
        else if (this.#focused === m.window) this.#focused = undefined;
        push({ type: 'focus', focused });
        return;
      }
      case 'configure': {
        const bad =
          m.width < 1 ||
          m.height < 1 ||
          m.width > MAX_WINDOW_WIDTH ||
          m.height > MAX_WINDOW_HEIGHT ||
          Math.abs(m.x) > 65535 ||
          Math.abs(m.y) > 65535;
        if (bad) this.#bad(m, `configure ${m.x},${m.y} ${m.width}x${m.height}`);
        window.configuredByDaemon({ x: m.x, y: m.y, width: m.width, height: m.height });
        return;
      }
      case 'close':
        push({ type: 'close-request' });
        return;
      case 'window-dump-ack':
        if (!window.dumpAcknowledged()) this.#bad(m, 'MSG_WINDOW_DUMP_ACK with no dump outstanding');
        return;
      case 'destroy':
        // The daemon's acknowledgement (≥ 1.5) of our destroy; it never destroys on its own.
        if (window.isOpen) this.#bad(m, 'MSG_DESTROY for a window we did not destroy');
        window.destroyed();
        return;
      case 'map':
      case 'window-flags':
      case 'resize':
      case 'execute':
        // The WM mapped it / changed its state; MSG_RESIZE and MSG_EXECUTE are obsolete. Nothing to do.
        return;
      default:
        this.#bad(m, 'not a daemon message');
    }
  }

  /** MSG_KEYMAP_NOTIFY: keys we saw pressed that are up in dom0 now get their release (focus moved away mid-press). */
  #keymapNotify(keys: Uint8Array): void {
    for (const keycode of [...this.#keysDown]) {
      if ((keys[keycode >> 3]! >> (keycode & 7)) & 1) continue;
      this.#keysDown.delete(keycode);
      const window = this.#focused === undefined ? undefined : this.#windows.get(this.#focused);
      const { keysym } = this.#keymap.lookup(keycode, 0);
      window?.events.push({ type: 'key', pressed: false, keycode, state: 0, keysym, text: '' });
    }
  }

  #bad(m: GuiMessage, detail: string): never {
    throw new GuiProtocolError('agent', 'bad-value', `${m.kind} for window ${m.window}: ${detail}`);
  }

  #end(error: Error | undefined): void {
    if (this.#error) return;
    this.#error = error ?? new GuiError('close', 'ECLOSED', 'the agent closed the connection');
    if (error) this.#log('error', `gui: ${error.message}`);
    this.#handshake?.reject(this.#error);
    this.#handshake = undefined;
    for (const window of [...this.#windows.values()]) window.disconnected();
    this.#generation++;
    this.#announced = false;
    this.#stream?.destroy();
    this.#stream = undefined;
    this.#ended.resolve(error);
  }
}

const WHEEL: Record<number, { dx: number; dy: number } | undefined> = {
  4: { dx: 0, dy: -1 },
  5: { dx: 0, dy: 1 },
  6: { dx: -1, dy: 0 },
  7: { dx: 1, dy: 0 },
};

/** Pointer coordinates are window-relative but may lie outside it (a grab); bound them all the same. */
function checkPoint(m: GuiMessage, x: number, y: number): void {
  if (Math.abs(x) > 65535 || Math.abs(y) > 65535) {
    throw new GuiProtocolError('agent', 'bad-value', `${m.kind} for window ${m.window} at ${x},${y}`);
  }
}
