/**
 * A strict GUI daemon for the lab (dom0 side), written from qubes-gui-protocol.h and the
 * checks of Qubes' daemon (QubesOS/qubes-gui-daemon @ 95e379e14a4a `gui-daemon/xside.c`
 * `handle_message` and the handlers it calls; REFUSALS lists them). It reads the agent struct
 * by struct as that daemon does, refuses what it refuses (and its VERIFY cases) with a
 * GuiProtocolError naming the reason, maps each window's grant refs read-only, keeps each
 * window's image as the daemon would show it, and injects input.
 */
import type { VchanStream, VchanTransport } from '@moat/vchan';
import type { DomainId, GrantMapper, ReadOnlyMapping } from '@moat/xen';
import { ExactReader } from '../byte-queue.ts';
import { GuiProtocolError } from '../errors.ts';
import {
  CONFIGURE_SIZE,
  CREATE_SIZE,
  CURSOR_DEFAULT,
  CURSOR_SIZE,
  CURSOR_X11,
  CURSOR_X11_MAX,
  cString,
  DAEMON_PROTOCOL_VERSION,
  decodeBody,
  decodeHeader,
  decodeVersion,
  encodeMessage,
  encodeVersion,
  encodeXconf,
  FULLSCREEN_WINDOW_ID,
  formatVersion,
  GUI_VCHAN_PORT,
  type GuiMessage,
  HEADER_SIZE,
  MAP_INFO_SIZE,
  MAX_CLIPBOARD_BUFFER_SIZE,
  MAX_CLIPBOARD_SIZE,
  MAX_GRANT_REFS_COUNT,
  MAX_MFN_COUNT,
  MAX_WINDOW_HEIGHT,
  MAX_WINDOW_WIDTH,
  MIN_BIDIRECTIONAL_MSG_DESTROY,
  MIN_BIDIRECTIONAL_NEGOTIATION_VERSION,
  MIN_CLIPBOARD_4X,
  MIN_MSG_WINDOW_DUMP_ACK,
  MIN_STRICT_LENGTH_VERSION,
  Msg,
  msgName,
  PAGE_SIZE,
  type Rect,
  SHM_CMD_SIZE,
  SHMIMAGE_SIZE,
  versionMajor,
  versionMinor,
  versionWord,
  WINDOW_DUMP_HDR_SIZE,
  WINDOW_DUMP_TYPE_GRANT_REFS,
  WINDOW_FLAG_DEMANDS_ATTENTION,
  WINDOW_FLAG_FULLSCREEN,
  WINDOW_FLAG_MINIMIZE,
  WINDOW_FLAGS_SIZE,
  WINDOW_HINTS_SIZE,
  WMCLASS_SIZE,
  WMNAME_SIZE,
  XEvent,
  xconfFor,
} from '../wire.ts';
import { encodePngFromBgrx } from './png.ts';

export interface GuiDaemonOptions {
  transport: VchanTransport;
  /** The VM whose agent we connect to (vchan client, port 6000). */
  vmDomain: DomainId;
  grants: GrantMapper;
  /** The root window size sent as xconf. Default 1920x1080, depth 24. */
  screen?: { width: number; height: number };
  /** Highest version we speak; default 1.8. */
  version?: number;
  /** Per-VM clipboard limit (Qubes default 64000). */
  clipboardBufferSize?: number;
  timeoutMs?: number;
  /** How long `waitFor` waits when not told (default 10 s; the lab's emulated guests need more). */
  waitTimeoutMs?: number;
  signal?: AbortSignal;
}

/** One window as the daemon knows it. `image` is what its X window would show (BGRX, stride width × 4). */
export interface DaemonWindow {
  readonly id: number;
  x: number;
  y: number;
  width: number;
  height: number;
  overrideRedirect: boolean;
  mapped: boolean;
  docked: boolean;
  transientFor: number;
  title: string;
  resClass: string;
  resName: string;
  hints: Extract<GuiMessage, { kind: 'window-hints' }> | undefined;
  flags: number;
  cursor: number;
  imageWidth: number;
  imageHeight: number;
  image: Uint8Array;
  mapping: ReadOnlyMapping | undefined;
  /** We sent a configure the agent has not acknowledged with the same values. */
  queuedConfigure: boolean;
  dumps: number;
}

export type DaemonEvent =
  | { kind: 'message'; message: GuiMessage }
  | { kind: 'ended'; error: GuiProtocolError | Error | undefined };

const utf8 = new TextDecoder('utf-8', { fatal: false });

export class GuiDaemon {
  /** The version the agent announced, and the one negotiated. */
  agentVersion = 0;
  version = 0;
  readonly windows = new Map<number, DaemonWindow>();
  /** Things Qubes' daemon quietly fixes (a title character replaced, unrequested clipboard data). */
  readonly warnings: string[] = [];
  readonly received: GuiMessage[] = [];
  /** Grant refs mapped now, over all windows. */
  mappedPages = 0;
  readonly #stream: VchanStream;
  readonly #reader: ExactReader;
  readonly #options: GuiDaemonOptions;
  readonly #listeners = new Set<(event: DaemonEvent) => void>();
  #clipboardRequested = false;
  #error: Error | undefined;
  #endedResolve: (error: Error | undefined) => void = () => {};
  readonly ended: Promise<Error | undefined>;

  private constructor(stream: VchanStream, options: GuiDaemonOptions) {
    this.#stream = stream;
    this.#reader = new ExactReader(stream);
    this.#options = options;
    this.ended = new Promise((resolve) => {
      this.#endedResolve = resolve;
    });
    stream.on('error', (error: Error) => this.#end(error));
  }

  /** Connects to the VM's agent, does the handshake, and starts reading its messages. */
  static async connect(options: GuiDaemonOptions): Promise<GuiDaemon> {
    const stream = await options.transport.connect({
      peer: options.vmDomain,
      port: GUI_VCHAN_PORT,
      timeoutMs: options.timeoutMs,
      signal: options.signal,
    });
    const daemon = new GuiDaemon(stream, options);
    try {
      await daemon.#handshake();
    } catch (error) {
      daemon.#end(error instanceof Error ? error : new Error(String(error)));
      throw error;
    }
    void daemon.#loop();
    return daemon;
  }

  get error(): Error | undefined {
    return this.#error;
  }

  on(listener: (event: DaemonEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves with the first received message (or already received one, from `since`) matching. */
  waitFor<K extends GuiMessage['kind']>(
    kind: K,
    predicate: (m: Extract<GuiMessage, { kind: K }>) => boolean = () => true,
    options: { since?: number; timeoutMs?: number } = {},
  ): Promise<Extract<GuiMessage, { kind: K }>> {
    const matches = (m: GuiMessage): m is Extract<GuiMessage, { kind: K }> =>
      m.kind === kind && predicate(m as Extract<GuiMessage, { kind: K }>);
    const earlier = this.received.slice(options.since ?? this.received.length).find(matches);
    if (earlier) return Promise.resolve(earlier);
    const timeoutMs = options.timeoutMs ?? this.#options.waitTimeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`gui daemon: no ${kind} within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.on((event) => {
        if (event.kind === 'message' && matches(event.message)) {
          clearTimeout(timer);
          off();
          resolve(event.message);
        } else if (event.kind === 'ended') {
          clearTimeout(timer);
          off();
          reject(event.error ?? new Error('gui daemon: the connection ended'));
        }
      });
    });
  }

  window(id: number): DaemonWindow {
    const w = this.windows.get(id);
    if (!w) throw new Error(`gui daemon: no window ${id}`);
    return w;
  }

  /** The window's image as PNG (what its X window would show). */
  png(id: number): Uint8Array {
    const w = this.window(id);
    return encodePngFromBgrx(w.image, w.width, w.height);
  }

  /** The window's image as RGBA, for exact comparisons. */
  rgba(id: number): Uint8Array {
    const w = this.window(id);
    const out = new Uint8Array(w.width * w.height * 4);
    for (let i = 0; i < out.length; i += 4) {
      out[i] = w.image[i + 2]!;
      out[i + 1] = w.image[i + 1]!;
      out[i + 2] = w.image[i]!;
      out[i + 3] = 255;
    }
    return out;
  }

  // ---- input injection (what xside.c sends on X events) ---------------------------------------------

  key(window: number, keycode: number, pressed: boolean, state = 0): void {
    const eventType = pressed ? XEvent.KeyPress : XEvent.KeyRelease;
    this.#send({ kind: 'keypress', window, eventType, x: 0, y: 0, state, keycode });
  }

  button(window: number, button: number, pressed: boolean, at: { x: number; y: number }, state = 0): void {
    const eventType = pressed ? XEvent.ButtonPress : XEvent.ButtonRelease;
    this.#send({ kind: 'button', window, eventType, ...at, state, button });
  }

  /** One wheel step: X buttons 4 (up) / 5 (down) / 6 (left) / 7 (right), pressed and released. */
  wheel(window: number, direction: 'up' | 'down' | 'left' | 'right', at: { x: number; y: number }): void {
    const button = { up: 4, down: 5, left: 6, right: 7 }[direction];
    this.button(window, button, true, at);
    this.button(window, button, false, at);
  }

  motion(window: number, at: { x: number; y: number }, state = 0): void {
    this.#send({ kind: 'motion', window, ...at, state, isHint: 0 });
  }

  crossing(window: number, enter: boolean, at: { x: number; y: number }): void {
    const eventType = enter ? XEvent.EnterNotify : XEvent.LeaveNotify;
    this.#send({ kind: 'crossing', window, eventType, ...at, state: 0, mode: 0, detail: 0, focus: 0 });
  }

  /** FocusIn is preceded by MSG_KEYMAP_NOTIFY (window 0), as xside.c does. */
  focus(window: number, focused: boolean, keysDown: readonly number[] = []): void {
    if (focused) {
      const keys = new Uint8Array(32);
      for (const k of keysDown) keys[k >> 3]! |= 1 << (k & 7);
      this.#send({ kind: 'keymap-notify', window: 0, keys });
    }
    this.#send({
      kind: 'focus',
      window,
      eventType: focused ? XEvent.FocusIn : XEvent.FocusOut,
      mode: 0,
      detail: 0,
    });
  }

  /** The user moved/resized the window: MSG_CONFIGURE, which the agent must acknowledge with the same values. */
  configure(window: number, rect: Rect): void {
    const w = this.window(window);
    w.x = rect.x;
    w.y = rect.y;
    this.#resizeImage(w, rect.width, rect.height);
    w.queuedConfigure = true;
    this.#send({ kind: 'configure', window, ...rect, overrideRedirect: 0 });
  }

  /** The user clicked the close button. */
  close(window: number): void {
    this.#send({ kind: 'close', window });
  }

  requestClipboard(window: number): void {
    this.#clipboardRequested = true;
    this.#send({ kind: 'clipboard-req', window });
  }

  /** Disconnects (like the daemon exiting). */
  disconnect(): void {
    this.#end(undefined);
  }

  // ---- reading ------------------------------------------------------------------------------------------

  async #handshake(): Promise<void> {
    const agentVersion = decodeVersion(await this.#exact(4, 'the agent version'));
    this.agentVersion = agentVersion;
    const own = this.#options.version ?? DAEMON_PROTOCOL_VERSION;
    if (versionMajor(agentVersion) !== versionMajor(own)) {
      throw this.#refuse(
        'agent-version',
        `agent protocol ${formatVersion(agentVersion)}, daemon ${formatVersion(own)}`,
      );
    }
    this.version = versionWord(versionMajor(own), Math.min(versionMinor(agentVersion), versionMinor(own)));
    if (this.version >= MIN_BIDIRECTIONAL_NEGOTIATION_VERSION)
      this.#stream.write(encodeVersion(this.version));
    const screen = this.#options.screen ?? { width: 1920, height: 1080 };
    this.#stream.write(encodeXconf(xconfFor(screen.width, screen.height)));
  }

  async #loop(): Promise<void> {
    try {
      for (;;) {
        const header = await this.#reader.read(HEADER_SIZE);
        if (!header) {
          this.#end(undefined);
          return;
        }
        await this.#handleMessage(decodeHeader(header));
      }
    } catch (error) {
      this.#end(error instanceof Error ? error : new Error(String(error)));
    }
  }

  async #exact(n: number, what: string): Promise<Uint8Array> {
    const bytes = await this.#reader.read(n);
    if (!bytes) throw new GuiProtocolError('daemon', 'early-eof', `the agent closed before ${what}`);
    return bytes;
  }

  /** handle_message: clipboard first, then the window check, then the per-type length rule and handler. */
  async #handleMessage(header: { type: number; window: number; untrustedLength: number }): Promise<void> {
    const { type, window: id } = header;
    let length = header.untrustedLength;
    if (type === Msg.CLIPBOARD_DATA) {
      await this.#clipboardData(id, length);
      return;
    }
    const window = this.windows.get(id);
    if (type === Msg.CREATE) {
      if (window)
        throw this.#refuse('duplicate-create', `MSG_CREATE for existing window 0x${id.toString(16)}`);
    } else if (!window) {
      throw this.#refuse('unknown-window', `${msgName(type)} without MSG_CREATE for 0x${id.toString(16)}`);
    }
    const checkLength = (expected: number) => {
      if (length !== expected) {
        if (this.version >= MIN_STRICT_LENGTH_VERSION) {
          throw this.#refuse(
            'bad-length',
            `${msgName(type)} untrusted_len ${length}, struct size ${expected}`,
          );
        }
        this.warnings.push(
          `${msgName(type)} untrusted_len ${length}, struct size ${expected} (protocol < 1.6)`,
        );
      }
      length = expected;
    };
    const fixed: Record<number, number> = {
      [Msg.CREATE]: CREATE_SIZE,
      [Msg.DESTROY]: 0,
      [Msg.MAP]: MAP_INFO_SIZE,
      [Msg.UNMAP]: 0,
      [Msg.CONFIGURE]: CONFIGURE_SIZE,
      [Msg.SHMIMAGE]: SHMIMAGE_SIZE,
      [Msg.WMNAME]: WMNAME_SIZE,
      [Msg.WMCLASS]: WMCLASS_SIZE,
      [Msg.DOCK]: 0,
      [Msg.WINDOW_HINTS]: WINDOW_HINTS_SIZE,
      [Msg.WINDOW_FLAGS]: WINDOW_FLAGS_SIZE,
      [Msg.CURSOR]: CURSOR_SIZE,
    };
    if (type === Msg.MFNDUMP) {
      await this.#mfnDump(id, length);
      return;
    }
    if (type === Msg.WINDOW_DUMP) {
      if (length < WINDOW_DUMP_HDR_SIZE) {
        throw this.#refuse('window-dump-too-short', `untrusted_len ${length} below ${WINDOW_DUMP_HDR_SIZE}`);
      }
      await this.#windowDump(window!, length - WINDOW_DUMP_HDR_SIZE);
      return;
    }
    const expected = fixed[type];
    if (expected === undefined) throw this.#refuse('unknown-type', `message type ${type} from the agent`);
    checkLength(expected);
    const body = await this.#exact(length, msgName(type));
    const decoded = decodeBody(type, id, body);
    if (!decoded.ok) throw this.#refuse('bad-length', decoded.reason);
    const m = decoded.message;
    this.#record(m);
    switch (m.kind) {
      case 'create':
        this.#create(m);
        break;
      case 'destroy':
        this.#destroy(window!);
        break;
      case 'map':
        this.#map(window!, m.transientFor, m.overrideRedirect !== 0);
        break;
      case 'unmap':
        if (window!.docked) break;
        window!.mapped = false;
        if (window!.id !== FULLSCREEN_WINDOW_ID) this.#release(window!);
        break;
      case 'configure':
        this.#configureFromAgent(window!, m);
        break;
      case 'shmimage':
        this.#shmImage(window!, m);
        break;
      case 'wmname':
        window!.title = this.#sanitise(m.data, true, 'title');
        break;
      case 'wmclass':
        if (window!.mapped) {
          this.warnings.push(`MSG_WMCLASS for mapped window ${id} ignored (ICCCM)`);
          break;
        }
        window!.resClass = this.#sanitise(m.resClass, false, 'res_class');
        window!.resName = this.#sanitise(m.resName, false, 'res_name');
        break;
      case 'dock':
        if (window!.mapped) break;
        window!.overrideRedirect = false;
        window!.docked = true;
        break;
      case 'window-hints':
        window!.hints = m;
        break;
      case 'window-flags':
        if ((m.flagsSet & m.flagsUnset) !== 0) {
          throw this.#refuse(
            'window-flags-conflict',
            `set 0x${m.flagsSet.toString(16)} unset 0x${m.flagsUnset.toString(16)}`,
          );
        }
        window!.flags =
          (window!.flags |
            (m.flagsSet & (WINDOW_FLAG_FULLSCREEN | WINDOW_FLAG_DEMANDS_ATTENTION | WINDOW_FLAG_MINIMIZE))) &
          ~(m.flagsUnset & (WINDOW_FLAG_FULLSCREEN | WINDOW_FLAG_DEMANDS_ATTENTION));
        break;
      case 'cursor': {
        const ok = m.cursor & CURSOR_X11 ? m.cursor < CURSOR_X11_MAX : m.cursor === CURSOR_DEFAULT;
        if (!ok) throw this.#refuse('bad-cursor', `cursor 0x${m.cursor.toString(16)}`);
        window!.cursor = m.cursor;
        break;
      }
      default:
        throw this.#refuse('unknown-type', `${m.kind}`);
    }
    this.#emit({ kind: 'message', message: m });
  }

  async #clipboardData(id: number, length: number): Promise<void> {
    const malformed =
      (this.version < MIN_CLIPBOARD_4X && length > MAX_CLIPBOARD_SIZE) ||
      length > MAX_CLIPBOARD_BUFFER_SIZE + 1;
    if (malformed)
      throw this.#refuse('clipboard-too-long', `${length} bytes at protocol ${formatVersion(this.version)}`);
    const data = await this.#exact(length, 'clipboard data');
    const m: GuiMessage = { kind: 'clipboard-data', window: id, data };
    this.#record(m);
    if (!this.#clipboardRequested) this.warnings.push('clipboard data that was not requested (discarded)');
    else if (length > (this.#options.clipboardBufferSize ?? 64000))
      this.warnings.push(`clipboard data of ${length} bytes over the VM's limit`);
    this.#clipboardRequested = false;
    this.#emit({ kind: 'message', message: m });
  }

  async #mfnDump(id: number, length: number): Promise<void> {
    if (this.version >= MIN_STRICT_LENGTH_VERSION && length < SHM_CMD_SIZE) {
      throw this.#refuse('mfndump-too-short', `untrusted_len ${length} below ${SHM_CMD_SIZE}`);
    }
    const cmd = await this.#exact(SHM_CMD_SIZE, 'shm_cmd');
    const v = new DataView(cmd.buffer, cmd.byteOffset, cmd.byteLength);
    const [width, height, off, numMfn] = [
      v.getUint32(4, true),
      v.getUint32(8, true),
      v.getUint32(16, true),
      v.getUint32(20, true),
    ];
    if (numMfn > MAX_MFN_COUNT)
      throw this.#refuse('mfndump-too-many', `${numMfn} MFNs, limit ${MAX_MFN_COUNT}`);
    if (width > MAX_WINDOW_WIDTH || height > MAX_WINDOW_HEIGHT)
      throw this.#refuse('mfndump-too-big', `${width}x${height}`);
    if (off >= PAGE_SIZE) throw this.#refuse('mfndump-bad-offset', `offset ${off}`);
    const expected = SHM_CMD_SIZE + 4 * numMfn;
    if (length !== expected) {
      if (this.version >= MIN_STRICT_LENGTH_VERSION) {
        throw this.#refuse('bad-length', `MSG_MFNDUMP untrusted_len ${length}, expected ${expected}`);
      }
      this.warnings.push(`MSG_MFNDUMP untrusted_len ${length}, expected ${expected} (protocol < 1.6)`);
    }
    await this.#exact(4 * numMfn, 'MFNs');
    if (numMfn * PAGE_SIZE < width * height * 4 + off) {
      throw this.#refuse('mfndump-too-small', `${numMfn} MFNs for ${width}x${height} at offset ${off}`);
    }
    throw this.#refuse(
      'mfndump-unsupported',
      `MSG_MFNDUMP for window ${id}: the lab daemon maps grant refs only`,
    );
  }

  async #windowDump(window: DaemonWindow, bodyLength: number): Promise<void> {
    this.#release(window);
    const hdr = await this.#exact(WINDOW_DUMP_HDR_SIZE, 'msg_window_dump_hdr');
    const v = new DataView(hdr.buffer, hdr.byteOffset, hdr.byteLength);
    const [dumpType, width, height] = [v.getUint32(0, true), v.getUint32(4, true), v.getUint32(8, true)];
    if (dumpType !== WINDOW_DUMP_TYPE_GRANT_REFS)
      throw this.#refuse('window-dump-type', `dump type ${dumpType}`);
    if (width > MAX_WINDOW_WIDTH || height > MAX_WINDOW_HEIGHT)
      throw this.#refuse('window-dump-too-big', `${width}x${height}`);
    if (bodyLength > MAX_GRANT_REFS_COUNT * 4 || bodyLength % 4 !== 0) {
      throw this.#refuse('window-dump-body', `grant ref list of ${bodyLength} bytes`);
    }
    const refsBytes = await this.#exact(bodyLength, 'grant refs');
    const decoded = decodeBody(Msg.WINDOW_DUMP, window.id, concat(hdr, refsBytes));
    if (!decoded.ok || decoded.message.kind !== 'window-dump')
      throw this.#refuse('window-dump-body', 'undecodable');
    const m = decoded.message;
    this.#record(m);
    const pages = m.refs.length;
    if (pages * PAGE_SIZE < width * height * 4) {
      throw this.#refuse('window-dump-too-small', `${pages} pages for ${width}x${height}`);
    }
    window.imageWidth = width;
    window.imageHeight = height;
    if (pages > 0) {
      try {
        window.mapping = this.#options.grants.mapReadOnly(this.#options.vmDomain, [...m.refs]);
        this.mappedPages += pages;
      } catch (error) {
        throw this.#refuse(
          'window-dump-unmappable',
          `refs ${[...m.refs.slice(0, 4)].join(',')}…: ${String(error)}`,
        );
      }
    }
    window.dumps++;
    if (this.version >= MIN_MSG_WINDOW_DUMP_ACK) this.#send({ kind: 'window-dump-ack', window: window.id });
    this.#emit({ kind: 'message', message: m });
  }

  #create(m: Extract<GuiMessage, { kind: 'create' }>): void {
    if ((m.width | 0) < 0 || (m.height | 0) < 0) {
      throw this.#refuse('create-negative-size', `${m.width | 0}x${m.height | 0}`);
    }
    const width = Math.min(m.width, MAX_WINDOW_WIDTH);
    const height = Math.min(m.height, MAX_WINDOW_HEIGHT);
    this.windows.set(m.window, {
      id: m.window,
      x: clamp(m.x, MAX_WINDOW_WIDTH),
      y: clamp(m.y, MAX_WINDOW_HEIGHT),
      width,
      height,
      overrideRedirect: m.overrideRedirect !== 0,
      mapped: false,
      docked: false,
      transientFor: 0,
      title: '',
      resClass: '',
      resName: '',
      hints: undefined,
      flags: 0,
      cursor: 0,
      imageWidth: 0,
      imageHeight: 0,
      image: new Uint8Array(width * height * 4),
      mapping: undefined,
      queuedConfigure: false,
      dumps: 0,
    });
  }

  #destroy(window: DaemonWindow): void {
    this.#release(window);
    this.windows.delete(window.id);
    for (const w of this.windows.values()) if (w.transientFor === window.id) w.transientFor = 0;
    if (this.version >= MIN_BIDIRECTIONAL_MSG_DESTROY) this.#send({ kind: 'destroy', window: window.id });
  }

  #map(window: DaemonWindow, transientFor: number, overrideRedirect: boolean): void {
    if (window.mapped || window.docked) return;
    window.transientFor = transientFor && this.windows.has(transientFor) ? transientFor : 0;
    window.overrideRedirect = overrideRedirect;
    window.mapped = true;
  }

  /** handle_configure_from_vm: clamp, VERIFY non-zero size, and the acknowledgement rule for our own configures. */
  #configureFromAgent(window: DaemonWindow, m: Extract<GuiMessage, { kind: 'configure' }>): void {
    const width = Math.min(m.width, MAX_WINDOW_WIDTH);
    const height = Math.min(m.height, MAX_WINDOW_HEIGHT);
    if (width === 0 || height === 0) throw this.#refuse('configure-zero-size', `${m.width}x${m.height}`);
    const x = clamp(m.x, MAX_WINDOW_WIDTH);
    const y = clamp(m.y, MAX_WINDOW_HEIGHT);
    const changed = window.width !== width || window.height !== height || window.x !== x || window.y !== y;
    if (window.docked) {
      if (changed) this.#resend(window);
      window.queuedConfigure = false;
      return;
    }
    if (window.queuedConfigure) {
      if (changed) {
        this.#resend(window);
        return;
      }
      window.queuedConfigure = false; // the acknowledgement
    }
    if (!changed) return;
    window.x = x;
    window.y = y;
    this.#resizeImage(window, width, height);
  }

  #resend(window: DaemonWindow): void {
    const { x, y, width, height } = window;
    this.#send({ kind: 'configure', window: window.id, x, y, width, height, overrideRedirect: 0 });
  }

  /** do_shm_update: negative values ignored, clipped to the image and the window, copied from the grants. */
  #shmImage(window: DaemonWindow, m: Rect): void {
    if (!window.mapped && !window.docked) return;
    if (m.x < 0 || m.y < 0 || (m.width | 0) < 0 || (m.height | 0) < 0) {
      this.warnings.push(`MSG_SHMIMAGE with negative values for window ${window.id} (ignored)`);
      return;
    }
    const mapping = window.mapping;
    if (!mapping) return;
    const x = Math.min(m.x, window.imageWidth, window.width);
    const y = Math.min(m.y, window.imageHeight, window.height);
    const w = Math.min(m.width, window.imageWidth - x, window.width - x);
    const h = Math.min(m.height, window.imageHeight - y, window.height - y);
    if (x === 0 && w === window.imageWidth && w === window.width) {
      // Whole rows in both: one copy (the common full-window update).
      mapping.pages.copyTo(window.image, y * w * 4, y * w * 4, h * w * 4);
      return;
    }
    for (let row = 0; row < h; row++) {
      const from = ((y + row) * window.imageWidth + x) * 4;
      mapping.pages.copyTo(window.image, ((y + row) * window.width + x) * 4, from, w * 4);
    }
  }

  #resizeImage(window: DaemonWindow, width: number, height: number): void {
    if (width === window.width && height === window.height) return;
    const next = new Uint8Array(width * height * 4);
    const rowBytes = Math.min(width, window.width) * 4;
    for (let row = 0; row < Math.min(height, window.height); row++) {
      next.set(
        window.image.subarray(row * window.width * 4, row * window.width * 4 + rowBytes),
        row * width * 4,
      );
    }
    window.image = next;
    window.width = width;
    window.height = height;
  }

  #release(window: DaemonWindow): void {
    if (!window.mapping) return;
    this.mappedPages -= window.mapping.pages.byteLength / PAGE_SIZE;
    window.mapping.unmap();
    window.mapping = undefined;
  }

  /** sanitize_string_from_vm: NUL at the end, non-printable ASCII (and invalid UTF-8) become `_`. */
  #sanitise(field: Uint8Array, allowUtf8: boolean, what: string): string {
    const bytes = cString(field.subarray(0, field.length - 1)).slice();
    let changed = false;
    for (let i = 0; i < bytes.length; i++) {
      const c = bytes[i]!;
      if (c >= 0x20 && c <= 0x7e) continue;
      if (allowUtf8 && c >= 0x80) {
        const n = utf8CharLength(bytes, i);
        if (n > 0) {
          i += n - 1;
          continue;
        }
      }
      bytes[i] = 0x5f;
      changed = true;
    }
    if (changed) this.warnings.push(`${what} had characters the daemon replaced with _`);
    return utf8.decode(bytes);
  }

  #record(m: GuiMessage): void {
    this.received.push(m);
    if (this.received.length > 100_000) this.received.splice(0, 50_000);
  }

  #send(message: GuiMessage): void {
    if (this.#error) return;
    this.#stream.write(encodeMessage(message));
  }

  #refuse(reason: string, detail: string): GuiProtocolError {
    return new GuiProtocolError('daemon', reason, detail);
  }

  #emit(event: DaemonEvent): void {
    for (const listener of [...this.#listeners]) listener(event);
  }

  #end(error: Error | undefined): void {
    if (this.#error) return;
    this.#error = error ?? new Error('gui daemon: disconnected');
    for (const w of this.windows.values()) this.#release(w);
    this.#stream.destroy();
    this.#emit({ kind: 'ended', error });
    this.#endedResolve(error);
  }
}

function clamp(value: number, limit: number): number {
  return Math.max(-limit, Math.min(value | 0, limit));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** validate_utf8_char (RFC 3629): the length of the valid character at `i`, or 0. */
function utf8CharLength(s: Uint8Array, i: number): number {
  const c = s[i]!;
  const tail = (k: number, lo = 0x80, hi = 0xbf) => {
    const b = s[i + k];
    return b !== undefined && b >= lo && b <= hi;
  };
  if (c >= 0xc2 && c <= 0xdf) return tail(1) ? 2 : 0;
  if (c === 0xe0) return tail(1, 0xa0) && tail(2) ? 3 : 0;
  if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) return tail(1) && tail(2) ? 3 : 0;
  if (c === 0xed) return tail(1, 0x80, 0x9f) && tail(2) ? 3 : 0;
  if (c === 0xf0) return tail(1, 0x90) && tail(2) && tail(3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return tail(1) && tail(2) && tail(3) ? 4 : 0;
  if (c === 0xf4) return tail(1, 0x80, 0x8f) && tail(2) && tail(3) ? 4 : 0;
  return 0;
}
