/**
 * QubesDB wire format (QubesOS/qubes-core-qubesdb @ aeb3c8d84866 include/qubesdb.h,
 * daemon/db-cmds.c). One 72-byte header, then `data_len` raw value bytes. Little-endian.
 *
 * ```
 * offset 0   u8      type      enum qdb_msg
 * offset 1   64 B    path      NUL-terminated; the receiver forces path[63] = 0
 * offset 65  3 B     padding   junk, ignored
 * offset 68  u32 LE  data_len  bytes that follow
 * ```
 *
 * Validation here is `verify_hdr`/`verify_path`/`verify_data` of the C daemon, byte for
 * byte; the per-command rules (a write's path must start with `/` ...) are in
 * `isWritablePath` because the C daemon applies them later, with a different outcome.
 */

export const HEADER_SIZE = 72;
export const TYPE_OFFSET = 0;
export const PATH_OFFSET = 1;
export const PATH_FIELD_SIZE = 64;
export const DATA_LEN_OFFSET = 68;

/** QDB_MAX_PATH: the path field, so a path has at most 63 characters. */
export const QDB_MAX_PATH = 64;
export const MAX_PATH_LENGTH = QDB_MAX_PATH - 1;
/** QDB_MAX_DATA; the daemon rejects `data_len >= 3072`, so a value has at most 3071 bytes. */
export const QDB_MAX_DATA = 3072;
export const MAX_VALUE_LENGTH = QDB_MAX_DATA - 1;
/** QUBESDB_VCHAN_PORT: dom0's daemon is the vchan server for the VM on this port. */
export const QUBESDB_VCHAN_PORT = 111;

/** `enum qdb_msg`. */
export const QdbMsg = {
  CMD_READ: 0,
  CMD_WRITE: 1,
  CMD_MULTIREAD: 2,
  CMD_LIST: 3,
  CMD_RM: 4,
  CMD_WATCH: 5,
  CMD_UNWATCH: 6,
  RESP_OK: 7,
  RESP_ERROR_NOENT: 8,
  RESP_ERROR: 9,
  RESP_READ: 10,
  RESP_MULTIREAD: 11,
  RESP_LIST: 12,
  RESP_WATCH: 13,
} as const;
export type QdbMsgType = (typeof QdbMsg)[keyof typeof QdbMsg];

/** QDB_INVALID_CMD: used internally by the C daemon for "no pending header". */
export const QDB_INVALID_CMD = 0xff;

const NAMES: readonly string[] = [
  'CMD_READ',
  'CMD_WRITE',
  'CMD_MULTIREAD',
  'CMD_LIST',
  'CMD_RM',
  'CMD_WATCH',
  'CMD_UNWATCH',
  'RESP_OK',
  'RESP_ERROR_NOENT',
  'RESP_ERROR',
  'RESP_READ',
  'RESP_MULTIREAD',
  'RESP_LIST',
  'RESP_WATCH',
];

/** `QDB_CMD_WRITE`-style name of a type byte, or `unknown(0x..)`. */
export function msgName(type: number): string {
  return NAMES[type] !== undefined
    ? `QDB_${NAMES[type]}`
    : `unknown(0x${type.toString(16).padStart(2, '0')})`;
}

/**
 * Which link a header arrived on. The daemon accepts different types on each
 * (`verify_hdr`): vchan carries only WRITE, MULTIREAD, RM and OK/ERROR/MULTIREAD
 * responses; the local socket carries only commands to the daemon; `local-reply` is
 * what a local client reads back (every response, and RESP_WATCH at any time).
 */
export type QdbLink = 'vchan' | 'local' | 'local-reply';

/** A validated header (the repr). `path` is the string before the first NUL. */
export interface QdbHeader {
  type: QdbMsgType;
  path: string;
  dataLength: number;
}

export type HeaderRejection =
  | { reason: 'truncated-header'; length: number }
  | { reason: 'unknown-type'; type: number }
  | { reason: 'type-not-allowed-on-link'; type: QdbMsgType; link: QdbLink }
  | { reason: 'invalid-path'; path: string }
  | { reason: 'data-too-long'; dataLength: number };

export type HeaderResult = { ok: true; header: QdbHeader } | ({ ok: false } & HeaderRejection);

const VCHAN_TYPES = new Set<number>([
  QdbMsg.CMD_WRITE,
  QdbMsg.CMD_MULTIREAD,
  QdbMsg.CMD_RM,
  QdbMsg.RESP_OK,
  QdbMsg.RESP_ERROR,
  QdbMsg.RESP_MULTIREAD,
]);
const LOCAL_REPLY_TYPES = new Set<number>([
  QdbMsg.RESP_OK,
  QdbMsg.RESP_ERROR_NOENT,
  QdbMsg.RESP_ERROR,
  QdbMsg.RESP_READ,
  QdbMsg.RESP_MULTIREAD,
  QdbMsg.RESP_LIST,
  QdbMsg.RESP_WATCH,
]);
const LOCAL_TYPES = new Set<number>([
  QdbMsg.CMD_READ,
  QdbMsg.CMD_WRITE,
  QdbMsg.CMD_MULTIREAD,
  QdbMsg.CMD_LIST,
  QdbMsg.CMD_RM,
  QdbMsg.CMD_WATCH,
  QdbMsg.CMD_UNWATCH,
]);

/**
 * `verify_hdr` of db-cmds.c: the type must be valid for the link, the path (forced to
 * end at byte 63) must pass `verify_path`, and `data_len` must be below QDB_MAX_DATA.
 * Reads exactly the first 72 bytes of `bytes`.
 */
export function decodeHeader(bytes: Uint8Array, link: QdbLink): HeaderResult {
  if (bytes.length < HEADER_SIZE) return { ok: false, reason: 'truncated-header', length: bytes.length };
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  const type = view.getUint8(TYPE_OFFSET);
  const dataLength = view.getUint32(DATA_LEN_OFFSET, true);
  if (type >= NAMES.length) return { ok: false, reason: 'unknown-type', type };
  const known = type as QdbMsgType;
  const allowed = link === 'vchan' ? VCHAN_TYPES : link === 'local' ? LOCAL_TYPES : LOCAL_REPLY_TYPES;
  if (!allowed.has(type)) {
    return { ok: false, reason: 'type-not-allowed-on-link', type: known, link };
  }
  const path = decodePathField(bytes);
  if (!isValidPath(path)) return { ok: false, reason: 'invalid-path', path };
  if (dataLength >= QDB_MAX_DATA) return { ok: false, reason: 'data-too-long', dataLength };
  return { ok: true, header: { type: known, path, dataLength } };
}

/** The path field up to its first NUL, with byte 63 treated as NUL (the C receiver forces it). */
export function decodePathField(bytes: Uint8Array): string {
  let end = PATH_OFFSET;
  const last = PATH_OFFSET + PATH_FIELD_SIZE - 1;
  while (end < last && bytes[end] !== 0) end++;
  // latin1 keeps one character per byte, so a rejected path is shown exactly as it came.
  return Buffer.from(bytes.buffer, bytes.byteOffset + PATH_OFFSET, end - PATH_OFFSET).toString('latin1');
}

/**
 * `verify_path`: at most 63 characters of `a-z A-Z 0-9 _ / . : @`, and `-` anywhere
 * but first. The empty path and a trailing `/` are allowed here (commands decide).
 */
export function isValidPath(path: string): boolean {
  if (path.length > MAX_PATH_LENGTH) return false;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39)) continue;
    switch (c) {
      case 0x2d: // '-'
        if (i === 0) return false;
        continue;
      case 0x5f: // '_'
      case 0x2f: // '/'
      case 0x2e: // '.'
      case 0x3a: // ':'
      case 0x40: // '@'
        continue;
      default:
        return false;
    }
  }
  return true;
}

/** `qubesdb_insert`'s extra rule for writes: starts with `/`, does not end with `/`. */
export function isWritablePath(path: string): boolean {
  return isValidPath(path) && path.startsWith('/') && !path.endsWith('/');
}

/** `verify_data`: values never contain NUL bytes. */
export function isValidValue(value: Uint8Array): boolean {
  return value.length <= MAX_VALUE_LENGTH && !value.includes(0);
}

/**
 * Encodes a header. The path must be valid ASCII of at most 63 characters (we never
 * emit junk: padding and bytes after the NUL are zero).
 */
export function encodeHeader(type: QdbMsgType, path: string, dataLength: number): Uint8Array {
  if (path.length > MAX_PATH_LENGTH || !isAscii(path)) {
    throw new RangeError(
      `QubesDB path must be ≤ ${MAX_PATH_LENGTH} ASCII characters: ${JSON.stringify(path)}`,
    );
  }
  if (!Number.isInteger(dataLength) || dataLength < 0 || dataLength > 0xffffffff) {
    throw new RangeError(`QubesDB data_len out of range: ${dataLength}`);
  }
  const bytes = new Uint8Array(HEADER_SIZE);
  bytes[TYPE_OFFSET] = type;
  for (let i = 0; i < path.length; i++) bytes[PATH_OFFSET + i] = path.charCodeAt(i);
  new DataView(bytes.buffer).setUint32(DATA_LEN_OFFSET, dataLength, true);
  return bytes;
}

/** Header and data in one buffer (one vchan write, as the C daemons do). */
export function encodeMessage(type: QdbMsgType, path: string, data: Uint8Array = EMPTY): Uint8Array {
  const header = encodeHeader(type, path, data.length);
  if (data.length === 0) return header;
  const message = new Uint8Array(HEADER_SIZE + data.length);
  message.set(header);
  message.set(data, HEADER_SIZE);
  return message;
}

const EMPTY = new Uint8Array(0);

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** One whole message off the wire. */
export interface QdbMessage {
  header: QdbHeader;
  data: Uint8Array;
}

export type FrameEvent =
  | { kind: 'message'; message: QdbMessage }
  | ({ kind: 'invalid'; header: Uint8Array } & HeaderRejection);

/**
 * Splits a byte stream into messages, validating each header before accepting its
 * data (so `data_len` is bounded by QDB_MAX_DATA before we buffer anything).
 * Sans-IO: feed chunks, get messages. After an invalid header the reader stops: the
 * C daemons treat that as fatal for the vchan link, and we end the connection.
 */
export class QdbFrameReader {
  readonly #link: QdbLink;
  readonly #header = new Uint8Array(HEADER_SIZE);
  #headerFilled = 0;
  #pending: QdbHeader | undefined;
  #data: Uint8Array = EMPTY;
  #dataFilled = 0;
  #failed = false;
  readonly #recover: boolean;
  #skip = 0;

  /**
   * `recover`: after an invalid header, skip its `data_len` bytes and go on (what the
   * C daemon does for local clients, `discard_data_and_send_error`); otherwise stop.
   */
  constructor(link: QdbLink, options: { recover?: boolean } = {}) {
    this.#link = link;
    this.#recover = options.recover ?? false;
  }

  /** True when a message is partly received (for "EOF in the middle of a message"). */
  get midMessage(): boolean {
    return this.#headerFilled > 0 || this.#pending !== undefined || this.#skip > 0;
  }

  /** How many bytes of the current partial message we hold (for error messages). */
  get partialBytes(): number {
    return this.#pending ? HEADER_SIZE + this.#dataFilled : this.#headerFilled;
  }

  *push(chunk: Uint8Array): Generator<FrameEvent> {
    let offset = 0;
    while (offset < chunk.length && !this.#failed) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - offset);
        this.#skip -= n;
        offset += n;
        continue;
      }
      if (!this.#pending) {
        const n = Math.min(HEADER_SIZE - this.#headerFilled, chunk.length - offset);
        this.#header.set(chunk.subarray(offset, offset + n), this.#headerFilled);
        this.#headerFilled += n;
        offset += n;
        if (this.#headerFilled < HEADER_SIZE) return;
        this.#headerFilled = 0;
        const result = decodeHeader(this.#header, this.#link);
        if (!result.ok) {
          const { ok: _ok, ...rejection } = result;
          const header = this.#header.slice();
          if (!this.#recover) {
            this.#failed = true;
            yield { kind: 'invalid', header, ...rejection };
            return;
          }
          // Never buffered: the bytes are dropped as they arrive, however many data_len says.
          this.#skip = new DataView(header.buffer).getUint32(DATA_LEN_OFFSET, true);
          yield { kind: 'invalid', header, ...rejection };
          continue;
        }
        this.#pending = result.header;
        this.#data = result.header.dataLength === 0 ? EMPTY : new Uint8Array(result.header.dataLength);
        this.#dataFilled = 0;
      }
      const pending = this.#pending;
      const n = Math.min(pending.dataLength - this.#dataFilled, chunk.length - offset);
      this.#data.set(chunk.subarray(offset, offset + n), this.#dataFilled);
      this.#dataFilled += n;
      offset += n;
      if (this.#dataFilled === pending.dataLength) {
        const message = { header: pending, data: this.#data };
        this.#pending = undefined;
        this.#data = EMPTY;
        yield { kind: 'message', message };
      }
    }
  }
}

/** A readable description of a rejected header, for logs and errors. */
export function describeRejection(rejection: HeaderRejection): string {
  switch (rejection.reason) {
    case 'truncated-header':
      return `truncated header (${rejection.length} of ${HEADER_SIZE} bytes)`;
    case 'unknown-type':
      return `unknown message type ${rejection.type}`;
    case 'type-not-allowed-on-link':
      return `${msgName(rejection.type)} is not allowed on the ${rejection.link} link`;
    case 'invalid-path':
      return `invalid path ${JSON.stringify(rejection.path)}`;
    case 'data-too-long':
      return `data_len ${rejection.dataLength} ≥ QDB_MAX_DATA (${QDB_MAX_DATA})`;
  }
}
