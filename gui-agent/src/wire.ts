/**
 * Qubes GUI protocol wire format: versions, limits, the 12-byte header, message numbers,
 * every body layout, the handshake words and xconf, and decode/encode with bounds checks.
 *
 * Source (the authority): QubesOS/qubes-gui-common @ 66b879e36d6c (v4.3.1)
 * `include/qubes-gui-protocol.h`; Qubes 4.2 dom0s run qubes-gui-common v4.2.x, whose
 * `QUBES_GUID_PROTOCOL_VERSION_MINOR` is 7 (same file at tag v4.2.5).
 * All fields are 4-byte little-endian (the C peers write native x86 structs). Nothing
 * else in this package computes an offset.
 */

// ---- Versions (qubes-gui-protocol.h "Protocol version history") -------------------------------

export const versionWord = (major: number, minor: number): number => ((major << 16) | minor) >>> 0;
export const versionMajor = (version: number): number => version >>> 16;
export const versionMinor = (version: number): number => version & 0xffff;
export const formatVersion = (version: number): string => `${versionMajor(version)}.${versionMinor(version)}`;

/** What Qubes 4.2 dom0s speak (qubes-gui-common v4.2.x): our agent announces this. */
export const AGENT_PROTOCOL_VERSION = versionWord(1, 7);
/** The newest protocol (qubes-gui-common v4.3.1): what the lab daemon speaks. */
export const DAEMON_PROTOCOL_VERSION = versionWord(1, 8);
export const PROTOCOL_MAJOR = 1;
/** The C agent refuses a daemon answering below 1.4 (`handshake` in gui-agent/vmside.c). */
export const MIN_NEGOTIATED_MINOR = 4;
export const MIN_CLIPBOARD_DATA_LEN_IN_LEN = versionWord(1, 2);
export const MIN_BIDIRECTIONAL_NEGOTIATION_VERSION = versionWord(1, 4);
export const MIN_BIDIRECTIONAL_MSG_DESTROY = versionWord(1, 5);
export const MIN_STRICT_LENGTH_VERSION = versionWord(1, 6);
export const MIN_MSG_WINDOW_DUMP_ACK = versionWord(1, 7);
export const MIN_CLIPBOARD_4X = versionWord(1, 8);

// ---- Limits -------------------------------------------------------------------------------------

export const GUI_VCHAN_PORT = 6000;
/** The C agent's rings: `libvchan_server_init(domid, 6000, 4096, 4096)`. */
export const GUI_RING_SIZE = 4096;
export const MAX_WINDOW_WIDTH = 16384;
export const MAX_WINDOW_HEIGHT = 6144;
export const PAGE_SIZE = 4096;
export const BYTES_PER_PIXEL = 4; // DUMMY_DRV_FB_BPP 32
export const DUMP_BPP = 32;
export const MAX_WINDOW_MEM = MAX_WINDOW_WIDTH * MAX_WINDOW_HEIGHT * BYTES_PER_PIXEL;
export const MAX_GRANT_REFS_COUNT = Math.ceil(MAX_WINDOW_MEM / PAGE_SIZE); // 98304
export const MAX_MFN_COUNT = MAX_GRANT_REFS_COUNT;
/** Protocol ≤ 1.7 clipboard limit; 1.8 allows MAX_CLIPBOARD_BUFFER_SIZE + 1 ("too big" marker). */
export const MAX_CLIPBOARD_SIZE = 65000;
export const MAX_CLIPBOARD_BUFFER_SIZE = 256000;
/** Window id 0 is the daemon's full-screen image (FULLSCREEN_WINDOW_ID in gui-daemon/xside.h). */
export const FULLSCREEN_WINDOW_ID = 0;

export const CURSOR_DEFAULT = 0;
export const CURSOR_X11 = 0x100;
export const CURSOR_X11_MAX = 0x19a;

export const WINDOW_FLAG_FULLSCREEN = 1 << 0;
export const WINDOW_FLAG_DEMANDS_ATTENTION = 1 << 1;
export const WINDOW_FLAG_MINIMIZE = 1 << 2;

export const WINDOW_DUMP_TYPE_GRANT_REFS = 0;

/** X11 XSizeHints flags (Xutil.h) that the daemon passes on. */
export const SizeHint = {
  USPosition: 0x1,
  PPosition: 0x4,
  PMinSize: 0x10,
  PMaxSize: 0x20,
  PResizeInc: 0x40,
  PBaseSize: 0x100,
} as const;

/** X11 event types carried in the input messages (X.h). */
export const XEvent = {
  KeyPress: 2,
  KeyRelease: 3,
  ButtonPress: 4,
  ButtonRelease: 5,
  EnterNotify: 7,
  LeaveNotify: 8,
  FocusIn: 9,
  FocusOut: 10,
} as const;

// ---- Header and message numbers -------------------------------------------------------------------

export const HEADER_SIZE = 12; // struct msg_hdr { type, window, untrusted_len }
const HDR_TYPE = 0;
const HDR_WINDOW = 4;
const HDR_LEN = 8;

export const Msg = {
  KEYPRESS: 124,
  BUTTON: 125,
  MOTION: 126,
  CROSSING: 127,
  FOCUS: 128,
  RESIZE: 129,
  CREATE: 130,
  DESTROY: 131,
  MAP: 132,
  UNMAP: 133,
  CONFIGURE: 134,
  MFNDUMP: 135,
  SHMIMAGE: 136,
  CLOSE: 137,
  EXECUTE: 138,
  CLIPBOARD_REQ: 139,
  CLIPBOARD_DATA: 140,
  WMNAME: 141,
  KEYMAP_NOTIFY: 142,
  DOCK: 143,
  WINDOW_HINTS: 144,
  WINDOW_FLAGS: 145,
  WMCLASS: 146,
  WINDOW_DUMP: 147,
  CURSOR: 148,
  WINDOW_DUMP_ACK: 149,
} as const;
export type MsgType = (typeof Msg)[keyof typeof Msg];

export function msgName(type: number): string {
  for (const [name, value] of Object.entries(Msg)) if (value === type) return `MSG_${name}`;
  return `message type ${type}`;
}

// ---- Body sizes (sizeof the structs) ------------------------------------------------------------

export const KEYPRESS_SIZE = 20;
export const BUTTON_SIZE = 20;
export const MOTION_SIZE = 16;
export const CROSSING_SIZE = 28;
export const FOCUS_SIZE = 12;
export const RESIZE_SIZE = 8;
export const CREATE_SIZE = 24;
export const MAP_INFO_SIZE = 8;
export const CONFIGURE_SIZE = 20;
export const SHM_CMD_SIZE = 28;
export const SHMIMAGE_SIZE = 16;
export const EXECUTE_SIZE = 255;
export const WMNAME_SIZE = 128;
export const KEYMAP_SIZE = 32;
export const WINDOW_HINTS_SIZE = 36;
export const WINDOW_FLAGS_SIZE = 8;
export const WMCLASS_SIZE = 128;
export const WMCLASS_FIELD_SIZE = 64;
export const WINDOW_DUMP_HDR_SIZE = 16;
export const CURSOR_SIZE = 4;
export const VERSION_SIZE = 4;
export const XCONF_SIZE = 16;
/** QUBES_MAX_MSG_WINDOW_DUMP_LEN: header + dump header + every grant ref. */
export const MAX_WINDOW_DUMP_MESSAGE = HEADER_SIZE + WINDOW_DUMP_HDR_SIZE + 4 * MAX_GRANT_REFS_COUNT;

/** The fixed body size of each message type that has one (variable ones are absent). */
export const FIXED_BODY_SIZE: ReadonlyMap<number, number> = new Map([
  [Msg.KEYPRESS, KEYPRESS_SIZE],
  [Msg.BUTTON, BUTTON_SIZE],
  [Msg.MOTION, MOTION_SIZE],
  [Msg.CROSSING, CROSSING_SIZE],
  [Msg.FOCUS, FOCUS_SIZE],
  [Msg.RESIZE, RESIZE_SIZE],
  [Msg.CREATE, CREATE_SIZE],
  [Msg.DESTROY, 0],
  [Msg.MAP, MAP_INFO_SIZE],
  [Msg.UNMAP, 0],
  [Msg.CONFIGURE, CONFIGURE_SIZE],
  [Msg.SHMIMAGE, SHMIMAGE_SIZE],
  [Msg.CLOSE, 0],
  [Msg.EXECUTE, EXECUTE_SIZE],
  [Msg.CLIPBOARD_REQ, 0],
  [Msg.WMNAME, WMNAME_SIZE],
  [Msg.KEYMAP_NOTIFY, KEYMAP_SIZE],
  [Msg.DOCK, 0],
  [Msg.WINDOW_HINTS, WINDOW_HINTS_SIZE],
  [Msg.WINDOW_FLAGS, WINDOW_FLAGS_SIZE],
  [Msg.WMCLASS, WMCLASS_SIZE],
  [Msg.CURSOR, CURSOR_SIZE],
  [Msg.WINDOW_DUMP_ACK, 0],
]);

// ---- Header ---------------------------------------------------------------------------------------

export interface Header {
  type: number;
  window: number;
  /** The sender's claimed body length: never trusted for framing by the daemon. */
  untrustedLength: number;
}

export function decodeHeader(bytes: Uint8Array, offset = 0): Header {
  if (bytes.length - offset < HEADER_SIZE) throw new RangeError('GUI header: fewer than 12 bytes');
  const v = view(bytes);
  return {
    type: v.getUint32(offset + HDR_TYPE, true),
    window: v.getUint32(offset + HDR_WINDOW, true),
    untrustedLength: v.getUint32(offset + HDR_LEN, true),
  };
}

export function encodeHeader(header: Header, into?: Uint8Array, offset = 0): Uint8Array {
  const out = into ?? new Uint8Array(HEADER_SIZE);
  const v = view(out);
  v.setUint32(offset + HDR_TYPE, header.type, true);
  v.setUint32(offset + HDR_WINDOW, header.window, true);
  v.setUint32(offset + HDR_LEN, header.untrustedLength, true);
  return out;
}

// ---- Messages ----------------------------------------------------------------------------------------

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface WindowHints {
  flags: number;
  minWidth: number;
  minHeight: number;
  maxWidth: number;
  maxHeight: number;
  widthInc: number;
  heightInc: number;
  baseWidth: number;
  baseHeight: number;
}

/** Every message, both directions, by meaning; `unknown` keeps what we cannot name. */
export type GuiMessage =
  | {
      kind: 'keypress';
      window: number;
      eventType: number;
      x: number;
      y: number;
      state: number;
      keycode: number;
    }
  | { kind: 'button'; window: number; eventType: number; x: number; y: number; state: number; button: number }
  | { kind: 'motion'; window: number; x: number; y: number; state: number; isHint: number }
  | {
      kind: 'crossing';
      window: number;
      eventType: number;
      x: number;
      y: number;
      state: number;
      mode: number;
      detail: number;
      focus: number;
    }
  | { kind: 'focus'; window: number; eventType: number; mode: number; detail: number }
  | { kind: 'resize'; window: number; width: number; height: number }
  | ({ kind: 'create'; window: number; parent: number; overrideRedirect: number } & Rect)
  | { kind: 'destroy'; window: number }
  | { kind: 'map'; window: number; transientFor: number; overrideRedirect: number }
  | { kind: 'unmap'; window: number }
  | ({ kind: 'configure'; window: number; overrideRedirect: number } & Rect)
  | {
      kind: 'mfndump';
      window: number;
      shmid: number;
      width: number;
      height: number;
      bpp: number;
      off: number;
      numMfn: number;
      domid: number;
      mfns: Uint32Array;
    }
  | ({ kind: 'shmimage'; window: number } & Rect)
  | { kind: 'close'; window: number }
  | { kind: 'execute'; window: number; cmd: Uint8Array }
  | { kind: 'clipboard-req'; window: number }
  | { kind: 'clipboard-data'; window: number; data: Uint8Array }
  | { kind: 'wmname'; window: number; data: Uint8Array }
  | { kind: 'keymap-notify'; window: number; keys: Uint8Array }
  | { kind: 'dock'; window: number }
  | ({ kind: 'window-hints'; window: number } & WindowHints)
  | { kind: 'window-flags'; window: number; flagsSet: number; flagsUnset: number }
  | { kind: 'wmclass'; window: number; resClass: Uint8Array; resName: Uint8Array }
  | {
      kind: 'window-dump';
      window: number;
      dumpType: number;
      width: number;
      height: number;
      bpp: number;
      refs: Uint32Array;
    }
  | { kind: 'cursor'; window: number; cursor: number }
  | { kind: 'window-dump-ack'; window: number }
  | { kind: 'unknown'; type: number; window: number; body: Uint8Array };

export type MessageKind = GuiMessage['kind'];

export type DecodeResult = { ok: true; message: GuiMessage } | { ok: false; reason: string };

/**
 * Decodes a body whose length the framing layer already decided (the daemon by the struct
 * size, the agent by `untrusted_len`). Fixed-size types must have exactly their size; variable
 * ones are checked against their own layout.
 */
export function decodeBody(type: number, window: number, body: Uint8Array): DecodeResult {
  const fixed = FIXED_BODY_SIZE.get(type);
  if (fixed !== undefined && body.length !== fixed) {
    return { ok: false, reason: `${msgName(type)} body is ${body.length} bytes, expected ${fixed}` };
  }
  const v = view(body);
  const u = (o: number) => v.getUint32(o, true);
  const i = (o: number) => v.getInt32(o, true);
  const message = ((): GuiMessage | string => {
    switch (type) {
      case Msg.KEYPRESS:
        return { kind: 'keypress', window, eventType: u(0), x: i(4), y: i(8), state: u(12), keycode: u(16) };
      case Msg.BUTTON:
        return { kind: 'button', window, eventType: u(0), x: i(4), y: i(8), state: u(12), button: u(16) };
      case Msg.MOTION:
        return { kind: 'motion', window, x: i(0), y: i(4), state: u(8), isHint: u(12) };
      case Msg.CROSSING:
        return {
          kind: 'crossing',
          window,
          eventType: u(0),
          x: i(4),
          y: i(8),
          state: u(12),
          mode: u(16),
          detail: u(20),
          focus: u(24),
        };
      case Msg.FOCUS:
        return { kind: 'focus', window, eventType: u(0), mode: u(4), detail: u(8) };
      case Msg.RESIZE:
        return { kind: 'resize', window, width: u(0), height: u(4) };
      case Msg.CREATE:
        return {
          kind: 'create',
          window,
          x: i(0),
          y: i(4),
          width: u(8),
          height: u(12),
          parent: u(16),
          overrideRedirect: u(20),
        };
      case Msg.DESTROY:
        return { kind: 'destroy', window };
      case Msg.MAP:
        return { kind: 'map', window, transientFor: u(0), overrideRedirect: u(4) };
      case Msg.UNMAP:
        return { kind: 'unmap', window };
      case Msg.CONFIGURE:
        return {
          kind: 'configure',
          window,
          x: i(0),
          y: i(4),
          width: u(8),
          height: u(12),
          overrideRedirect: u(16),
        };
      case Msg.MFNDUMP: {
        if (body.length < SHM_CMD_SIZE)
          return `MSG_MFNDUMP body is ${body.length} bytes, below ${SHM_CMD_SIZE}`;
        const numMfn = u(20);
        if (numMfn > MAX_MFN_COUNT) return `MSG_MFNDUMP has ${numMfn} MFNs, above ${MAX_MFN_COUNT}`;
        if (body.length !== SHM_CMD_SIZE + 4 * numMfn)
          return `MSG_MFNDUMP body is ${body.length} bytes, expected ${SHM_CMD_SIZE + 4 * numMfn} for ${numMfn} MFNs`;
        return {
          kind: 'mfndump',
          window,
          shmid: u(0),
          width: u(4),
          height: u(8),
          bpp: u(12),
          off: u(16),
          numMfn,
          domid: u(24),
          mfns: readU32Array(body, SHM_CMD_SIZE, numMfn),
        };
      }
      case Msg.SHMIMAGE:
        return { kind: 'shmimage', window, x: i(0), y: i(4), width: u(8), height: u(12) };
      case Msg.CLOSE:
        return { kind: 'close', window };
      case Msg.EXECUTE:
        return { kind: 'execute', window, cmd: body.slice() };
      case Msg.CLIPBOARD_REQ:
        return { kind: 'clipboard-req', window };
      case Msg.CLIPBOARD_DATA:
        if (body.length > MAX_CLIPBOARD_BUFFER_SIZE + 1)
          return `MSG_CLIPBOARD_DATA of ${body.length} bytes, above ${MAX_CLIPBOARD_BUFFER_SIZE + 1}`;
        return { kind: 'clipboard-data', window, data: body.slice() };
      case Msg.WMNAME:
        return { kind: 'wmname', window, data: body.slice() };
      case Msg.KEYMAP_NOTIFY:
        return { kind: 'keymap-notify', window, keys: body.slice() };
      case Msg.DOCK:
        return { kind: 'dock', window };
      case Msg.WINDOW_HINTS:
        return {
          kind: 'window-hints',
          window,
          flags: u(0),
          minWidth: u(4),
          minHeight: u(8),
          maxWidth: u(12),
          maxHeight: u(16),
          widthInc: u(20),
          heightInc: u(24),
          baseWidth: u(28),
          baseHeight: u(32),
        };
      case Msg.WINDOW_FLAGS:
        return { kind: 'window-flags', window, flagsSet: u(0), flagsUnset: u(4) };
      case Msg.WMCLASS:
        return {
          kind: 'wmclass',
          window,
          resClass: body.slice(0, WMCLASS_FIELD_SIZE),
          resName: body.slice(WMCLASS_FIELD_SIZE, WMCLASS_SIZE),
        };
      case Msg.WINDOW_DUMP: {
        if (body.length < WINDOW_DUMP_HDR_SIZE)
          return `MSG_WINDOW_DUMP body is ${body.length} bytes, below ${WINDOW_DUMP_HDR_SIZE}`;
        const refsLength = body.length - WINDOW_DUMP_HDR_SIZE;
        if (refsLength % 4 !== 0 || refsLength > 4 * MAX_GRANT_REFS_COUNT)
          return `MSG_WINDOW_DUMP grant ref list of ${refsLength} bytes (a multiple of 4 up to ${4 * MAX_GRANT_REFS_COUNT})`;
        return {
          kind: 'window-dump',
          window,
          dumpType: u(0),
          width: u(4),
          height: u(8),
          bpp: u(12),
          refs: readU32Array(body, WINDOW_DUMP_HDR_SIZE, refsLength / 4),
        };
      }
      case Msg.CURSOR:
        return { kind: 'cursor', window, cursor: u(0) };
      case Msg.WINDOW_DUMP_ACK:
        return { kind: 'window-dump-ack', window };
      default:
        return { kind: 'unknown', type, window, body: body.slice() };
    }
  })();
  return typeof message === 'string' ? { ok: false, reason: message } : { ok: true, message };
}

/** Header + body, with `untrusted_len` set to the body's true length. */
export function encodeMessage(message: GuiMessage): Uint8Array {
  const [type, bodyLength] = typeAndLength(message);
  const out = new Uint8Array(HEADER_SIZE + bodyLength);
  encodeHeader({ type, window: message.window, untrustedLength: bodyLength }, out);
  const v = view(out);
  /** Every field is 4 bytes from offset 0; `>>> 0` gives an i32 field's two's complement bytes too. */
  const words = (...values: number[]) => {
    for (let k = 0; k < values.length; k++) v.setUint32(HEADER_SIZE + 4 * k, values[k]! >>> 0, true);
  };
  const u32s = (at: number, values: Uint32Array) => {
    for (let k = 0; k < values.length; k++) v.setUint32(HEADER_SIZE + at + 4 * k, values[k]!, true);
  };
  const bytes = (at: number, data: Uint8Array, size: number) =>
    out.set(data.subarray(0, size), HEADER_SIZE + at);
  const m = message;
  switch (m.kind) {
    case 'keypress':
      words(m.eventType, m.x, m.y, m.state, m.keycode);
      break;
    case 'button':
      words(m.eventType, m.x, m.y, m.state, m.button);
      break;
    case 'motion':
      words(m.x, m.y, m.state, m.isHint);
      break;
    case 'crossing':
      words(m.eventType, m.x, m.y, m.state, m.mode, m.detail, m.focus);
      break;
    case 'focus':
      words(m.eventType, m.mode, m.detail);
      break;
    case 'resize':
      words(m.width, m.height);
      break;
    case 'create':
      words(m.x, m.y, m.width, m.height, m.parent, m.overrideRedirect);
      break;
    case 'map':
      words(m.transientFor, m.overrideRedirect);
      break;
    case 'configure':
      words(m.x, m.y, m.width, m.height, m.overrideRedirect);
      break;
    case 'mfndump':
      words(m.shmid, m.width, m.height, m.bpp, m.off, m.numMfn, m.domid);
      u32s(SHM_CMD_SIZE, m.mfns);
      break;
    case 'shmimage':
      words(m.x, m.y, m.width, m.height);
      break;
    case 'execute':
      bytes(0, m.cmd, EXECUTE_SIZE);
      break;
    case 'clipboard-data':
      bytes(0, m.data, m.data.length);
      break;
    case 'wmname':
      bytes(0, m.data, WMNAME_SIZE);
      break;
    case 'keymap-notify':
      bytes(0, m.keys, KEYMAP_SIZE);
      break;
    case 'window-hints':
      words(
        m.flags,
        m.minWidth,
        m.minHeight,
        m.maxWidth,
        m.maxHeight,
        m.widthInc,
        m.heightInc,
        m.baseWidth,
        m.baseHeight,
      );
      break;
    case 'window-flags':
      words(m.flagsSet, m.flagsUnset);
      break;
    case 'wmclass':
      bytes(0, m.resClass, WMCLASS_FIELD_SIZE);
      bytes(WMCLASS_FIELD_SIZE, m.resName, WMCLASS_FIELD_SIZE);
      break;
    case 'window-dump':
      words(m.dumpType, m.width, m.height, m.bpp);
      u32s(WINDOW_DUMP_HDR_SIZE, m.refs);
      break;
    case 'cursor':
      words(m.cursor);
      break;
    case 'unknown':
      bytes(0, m.body, m.body.length);
      break;
    case 'destroy':
    case 'unmap':
    case 'close':
    case 'clipboard-req':
    case 'dock':
    case 'window-dump-ack':
      break;
  }
  return out;
}

function typeAndLength(m: GuiMessage): [number, number] {
  switch (m.kind) {
    case 'keypress':
      return [Msg.KEYPRESS, KEYPRESS_SIZE];
    case 'button':
      return [Msg.BUTTON, BUTTON_SIZE];
    case 'motion':
      return [Msg.MOTION, MOTION_SIZE];
    case 'crossing':
      return [Msg.CROSSING, CROSSING_SIZE];
    case 'focus':
      return [Msg.FOCUS, FOCUS_SIZE];
    case 'resize':
      return [Msg.RESIZE, RESIZE_SIZE];
    case 'create':
      return [Msg.CREATE, CREATE_SIZE];
    case 'destroy':
      return [Msg.DESTROY, 0];
    case 'map':
      return [Msg.MAP, MAP_INFO_SIZE];
    case 'unmap':
      return [Msg.UNMAP, 0];
    case 'configure':
      return [Msg.CONFIGURE, CONFIGURE_SIZE];
    case 'mfndump':
      return [Msg.MFNDUMP, SHM_CMD_SIZE + 4 * m.mfns.length];
    case 'shmimage':
      return [Msg.SHMIMAGE, SHMIMAGE_SIZE];
    case 'close':
      return [Msg.CLOSE, 0];
    case 'execute':
      return [Msg.EXECUTE, EXECUTE_SIZE];
    case 'clipboard-req':
      return [Msg.CLIPBOARD_REQ, 0];
    case 'clipboard-data':
      return [Msg.CLIPBOARD_DATA, m.data.length];
    case 'wmname':
      return [Msg.WMNAME, WMNAME_SIZE];
    case 'keymap-notify':
      return [Msg.KEYMAP_NOTIFY, KEYMAP_SIZE];
    case 'dock':
      return [Msg.DOCK, 0];
    case 'window-hints':
      return [Msg.WINDOW_HINTS, WINDOW_HINTS_SIZE];
    case 'window-flags':
      return [Msg.WINDOW_FLAGS, WINDOW_FLAGS_SIZE];
    case 'wmclass':
      return [Msg.WMCLASS, WMCLASS_SIZE];
    case 'window-dump':
      return [Msg.WINDOW_DUMP, WINDOW_DUMP_HDR_SIZE + 4 * m.refs.length];
    case 'cursor':
      return [Msg.CURSOR, CURSOR_SIZE];
    case 'window-dump-ack':
      return [Msg.WINDOW_DUMP_ACK, 0];
    case 'unknown':
      return [m.type, m.body.length];
  }
}

// ---- Handshake (no header: version words and xconf) ----------------------------------------------

export interface Xconf {
  /** Root window width and height, depth, and `w*h*4/1024 + 1` KiB (informative). */
  w: number;
  h: number;
  depth: number;
  mem: number;
}

export function encodeVersion(version: number): Uint8Array {
  const out = new Uint8Array(VERSION_SIZE);
  view(out).setUint32(0, version >>> 0, true);
  return out;
}

export function decodeVersion(bytes: Uint8Array): number {
  if (bytes.length < VERSION_SIZE) throw new RangeError('GUI version word: fewer than 4 bytes');
  return view(bytes).getUint32(0, true);
}

export function encodeXconf(xconf: Xconf): Uint8Array {
  const out = new Uint8Array(XCONF_SIZE);
  const v = view(out);
  v.setUint32(0, xconf.w >>> 0, true);
  v.setUint32(4, xconf.h >>> 0, true);
  v.setUint32(8, xconf.depth >>> 0, true);
  v.setUint32(12, xconf.mem >>> 0, true);
  return out;
}

export function decodeXconf(bytes: Uint8Array): Xconf {
  if (bytes.length < XCONF_SIZE) throw new RangeError('GUI xconf: fewer than 16 bytes');
  const v = view(bytes);
  return {
    w: v.getUint32(0, true),
    h: v.getUint32(4, true),
    depth: v.getUint32(8, true),
    mem: v.getUint32(12, true),
  };
}

/** What the daemon's `send_xconf` computes for a root window. */
export function xconfFor(width: number, height: number, depth = 24): Xconf {
  return { w: width, h: height, depth, mem: Math.floor((width * height * 4) / 1024) + 1 };
}

// ---- Fixed-size strings ------------------------------------------------------------------------------

/** A C char array: the bytes up to the first NUL (or all of them). */
export function cString(bytes: Uint8Array): Uint8Array {
  const end = bytes.indexOf(0);
  return end < 0 ? bytes : bytes.subarray(0, end);
}

/** `text` in a zero-filled field of `size` bytes; throws if it does not fit with its NUL. */
export function fixedString(text: Uint8Array, size: number): Uint8Array {
  if (text.length >= size)
    throw new RangeError(`string of ${text.length} bytes does not fit ${size} with NUL`);
  const out = new Uint8Array(size);
  out.set(text);
  return out;
}

// ---- helpers -------------------------------------------------------------------------------------------

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function readU32Array(bytes: Uint8Array, offset: number, count: number): Uint32Array {
  const out = new Uint32Array(count);
  const v = view(bytes);
  for (let k = 0; k < count; k++) out[k] = v.getUint32(offset + 4 * k, true);
  return out;
}
