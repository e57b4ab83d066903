/**
 * qrexec wire format: constants, the 8-byte header, message types as a named union (with an
 * explicit unknown case), payload layouts and their encode/decode with bounds checks.
 *
 * Source: QubesOS/qubes-core-qrexec @ b2822df6fc22 `libqrexec/qrexec.h` (layouts, constants),
 * `daemon/qrexec-daemon.c` (validation of agent messages: `sanitize_message_from_agent`),
 * `agent/qrexec-agent.c` (validation of daemon messages).
 * All integers little-endian (the C peers write native x86 structs). Nothing else in this
 * package computes an offset.
 */

// ---- Versions and limits (qrexec.h) --------------------------------------------------------------

export const QREXEC_PROTOCOL_V2 = 2;
export const QREXEC_PROTOCOL_V3 = 3;
export const QREXEC_PROTOCOL_V4 = 4;
/** What our VM agent announces: v3 works against a v4 dom0 (the daemon allows TRIGGER_SERVICE3 at ≥ 3). */
export const AGENT_PROTOCOL_VERSION = QREXEC_PROTOCOL_V3;
/** What our lab dom0 announces: the current `QREXEC_PROTOCOL_VERSION`. */
export const DOM0_PROTOCOL_VERSION = QREXEC_PROTOCOL_V4;
/** Both the daemon (agent) and data channels refuse peers below v2 (`QREXEC_*_MIN_VERSION`). */
export const MIN_PROTOCOL_VERSION = QREXEC_PROTOCOL_V2;

export const MAX_DATA_CHUNK_V2 = 4096;
export const MAX_DATA_CHUNK_V3 = 65536;
export const MAX_SERVICE_NAME_LEN = 65000;
export const MAX_QREXEC_CMD_LEN = 65535;
/** Linux `NAME_MAX`: the service name part of a descriptor is looked up as a file name. */
export const MAX_SERVICE_FILE_NAME_LEN = 255;

export const VCHAN_BASE_PORT = 512; // control channel
export const VCHAN_BASE_DATA_PORT = 513;
export const MAX_CLIENTS = 256; // data ports 513 … 768
/**
 * Ring sizes the C peers ask for: control 4096/4096 (`agent/qrexec-agent.c` libvchan_server_init),
 * data 65536/65536 (`VCHAN_BUFFER_SIZE` in `agent/qrexec-agent-data.c`, `daemon/qrexec-client.c`).
 */
export const CONTROL_RING_SIZE = 4096;
export const DATA_RING_SIZE = 65536;

export const RPC_REQUEST_COMMAND = 'QUBESRPC';
export const NOGUI_CMD_PREFIX = 'nogui:';

/** Exit codes (qrexec.h). */
export const EXIT_SERVICE_NOT_FOUND = 127;
export const EXIT_REQUEST_REFUSED = 126;
export const EXIT_PROBLEM = 125;
/** A MSG_DATA_EXIT_CODE shorter than 4 bytes means status 255 (`handle_remote_data_v2`). */
export const EXIT_CODE_TRUNCATED = 255;

// ---- Header and message types (qrexec.h `struct msg_header` and the MSG_* enum) ------------------

export const HEADER_SIZE = 8;
const HDR_TYPE = 0;
const HDR_LEN = 4;

export const MsgType = {
  DATA_STDIN: 0x190,
  DATA_STDOUT: 0x191,
  DATA_STDERR: 0x192,
  DATA_EXIT_CODE: 0x193,
  EXEC_CMDLINE: 0x200,
  JUST_EXEC: 0x201,
  SERVICE_CONNECT: 0x202,
  SERVICE_REFUSED: 0x203,
  TRIGGER_SERVICE: 0x210,
  CONNECTION_TERMINATED: 0x211,
  TRIGGER_SERVICE3: 0x212,
  TRIGGER_SERVICE4: 0x213,
  HELLO: 0x300,
} as const;
export type MsgTypeValue = (typeof MsgType)[keyof typeof MsgType];

// ---- Payload layouts (qrexec.h `struct exec_params`, `service_params`, `trigger_service_params3`) -

export const PEER_INFO_SIZE = 4;
export const EXEC_PARAMS_SIZE = 8; // connect_domain u32 @0, connect_port u32 @4, cmdline[] @8
export const SERVICE_PARAMS_SIZE = 32; // ident[32]
export const SERVICE_CONNECT_SIZE = EXEC_PARAMS_SIZE + SERVICE_PARAMS_SIZE; // 40
const TS2_SERVICE_NAME = 0;
const TS2_SERVICE_NAME_SIZE = 64;
const TS2_TARGET_DOMAIN = 64;
const TS2_TARGET_DOMAIN_SIZE = 32;
const TS2_REQUEST_ID = 96;
export const TRIGGER_SERVICE_SIZE = 128;
const TS3_TARGET_DOMAIN = 0;
const DOMAIN_FIELD_SIZE = 64;
const TS3_REQUEST_ID = 64;
export const TRIGGER_SERVICE3_FIXED = 96; // service_name[] @96
const TS4_SOURCE_DOMAIN = 0;
const TS4_TARGET_DOMAIN = 64;
const TS4_REQUEST_ID = 128;
export const TRIGGER_SERVICE4_FIXED = 160; // service_name[] @160
export const EXIT_CODE_SIZE = 4;

// ---- Messages ------------------------------------------------------------------------------------

/**
 * A request id (`struct service_params`): 32 raw bytes. Kept raw because dom0 validates every
 * byte (`daemon/qrexec-daemon.c` `validate_request_id`) and echoes the original bytes back in
 * MSG_SERVICE_REFUSED.
 */
export type RequestId = Uint8Array;

export type Message =
  | { kind: 'hello'; version: number }
  | { kind: 'exec-cmdline'; connectDomain: number; connectPort: number; cmdline: string }
  | { kind: 'just-exec'; connectDomain: number; connectPort: number; cmdline: string }
  | { kind: 'service-connect'; connectDomain: number; connectPort: number; requestId: RequestId }
  | { kind: 'service-refused'; requestId: RequestId }
  | { kind: 'trigger-service'; serviceName: string; targetDomain: string; requestId: RequestId }
  | { kind: 'connection-terminated'; connectDomain: number; connectPort: number }
  | { kind: 'trigger-service3'; targetDomain: string; requestId: RequestId; serviceName: string }
  | {
      kind: 'trigger-service4';
      sourceDomain: string;
      targetDomain: string;
      requestId: RequestId;
      serviceName: string;
    }
  | { kind: 'data-stdin'; data: Uint8Array }
  | { kind: 'data-stdout'; data: Uint8Array }
  | { kind: 'data-stderr'; data: Uint8Array }
  | { kind: 'data-exit-code'; code: number }
  | { kind: 'unknown'; type: number; payload: Uint8Array };

export type MessageKind = Message['kind'];

export interface Header {
  type: number;
  /** Payload length in bytes (the header itself not counted). */
  length: number;
}

/** Why bytes from a peer were rejected. Every reason ends only the connection it came from. */
export type DecodeReason =
  | 'truncated-header'
  | 'truncated-payload'
  | 'unknown-type'
  | 'unexpected-type'
  | 'bad-length'
  | 'too-big-data-chunk'
  | 'bad-version'
  | 'bad-request-id'
  | 'empty-service-name'
  | 'service-name-starts-with-plus'
  | 'service-name-not-terminated'
  | 'service-name-embedded-nul'
  | 'bad-port';

export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: DecodeReason; detail?: string };

const fail = <T>(reason: DecodeReason, detail?: string): Decoded<T> =>
  detail === undefined ? { ok: false, reason } : { ok: false, reason, detail };

const KIND_BY_TYPE: ReadonlyMap<number, MessageKind> = new Map<number, MessageKind>([
  [MsgType.HELLO, 'hello'],
  [MsgType.EXEC_CMDLINE, 'exec-cmdline'],
  [MsgType.JUST_EXEC, 'just-exec'],
  [MsgType.SERVICE_CONNECT, 'service-connect'],
  [MsgType.SERVICE_REFUSED, 'service-refused'],
  [MsgType.TRIGGER_SERVICE, 'trigger-service'],
  [MsgType.CONNECTION_TERMINATED, 'connection-terminated'],
  [MsgType.TRIGGER_SERVICE3, 'trigger-service3'],
  [MsgType.TRIGGER_SERVICE4, 'trigger-service4'],
  [MsgType.DATA_STDIN, 'data-stdin'],
  [MsgType.DATA_STDOUT, 'data-stdout'],
  [MsgType.DATA_STDERR, 'data-stderr'],
  [MsgType.DATA_EXIT_CODE, 'data-exit-code'],
]);

const TYPE_BY_KIND: ReadonlyMap<MessageKind, number> = new Map(
  [...KIND_BY_TYPE].map(([type, kind]) => [kind, type] as const),
);

export function kindOfType(type: number): MessageKind {
  return KIND_BY_TYPE.get(type) ?? 'unknown';
}

export function typeOfKind(kind: Exclude<MessageKind, 'unknown'>): number {
  return TYPE_BY_KIND.get(kind)!;
}

/** Max payload of one data message for a negotiated data-channel version (`MAX_DATA_CHUNK_V2/V3`). */
export function maxDataChunk(version: number): number {
  return version >= QREXEC_PROTOCOL_V3 ? MAX_DATA_CHUNK_V3 : MAX_DATA_CHUNK_V2;
}

// ---- Header --------------------------------------------------------------------------------------

export function decodeHeader(bytes: Uint8Array, offset = 0): Decoded<Header> {
  if (bytes.length - offset < HEADER_SIZE) return fail('truncated-header');
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, HEADER_SIZE);
  return { ok: true, value: { type: view.getUint32(HDR_TYPE, true), length: view.getUint32(HDR_LEN, true) } };
}

export function encodeHeader(header: Header, target = new Uint8Array(HEADER_SIZE), offset = 0): Uint8Array {
  const view = new DataView(target.buffer, target.byteOffset + offset, HEADER_SIZE);
  view.setUint32(HDR_TYPE, header.type >>> 0, true);
  view.setUint32(HDR_LEN, header.length >>> 0, true);
  return target;
}

/**
 * Which channel a header arrived on and in which role: the payload-length limits differ, and
 * they are checked on the header alone, before any payload is read or allocated.
 */
export type ChannelRole =
  /** Agent reading what qrexec-daemon sends on the control vchan. */
  | 'control-from-daemon'
  /** dom0 daemon reading what the agent sends on the control vchan. */
  | 'control-from-agent'
  /** Either end of a data vchan, before HELLO (only HELLO is allowed). */
  | 'data-hello'
  /** Either end of a data vchan after HELLO. */
  | 'data';

/**
 * Checks a header against the limits for its channel (`version` = negotiated version, used
 * for data chunk sizes and for which trigger message the agent may send). Mirrors the C
 * receivers: `sanitize_message_from_agent`, `handle_server_exec_request_init`,
 * `handle_service_refused`, `handle_remote_data_v2`, `handle_handshake`.
 */
export function checkHeader(header: Header, role: ChannelRole, version: number): Decoded<Header> {
  const { type, length } = header;
  const ok: Decoded<Header> = { ok: true, value: header };
  if (role === 'data-hello') {
    if (type !== MsgType.HELLO) return fail('unexpected-type', hex(type));
    return length === PEER_INFO_SIZE ? ok : fail('bad-length', `HELLO len ${length}`);
  }
  if (role === 'data') {
    switch (type) {
      case MsgType.DATA_STDIN:
      case MsgType.DATA_STDOUT:
      case MsgType.DATA_STDERR:
      case MsgType.DATA_EXIT_CODE:
        return length > maxDataChunk(version)
          ? fail('too-big-data-chunk', `${length} > ${maxDataChunk(version)}`)
          : ok;
      default:
        return fail(KIND_BY_TYPE.has(type) ? 'unexpected-type' : 'unknown-type', hex(type));
    }
  }
  if (role === 'control-from-daemon') {
    switch (type) {
      case MsgType.HELLO:
        return length === PEER_INFO_SIZE ? ok : fail('bad-length', `HELLO len ${length}`);
      case MsgType.EXEC_CMDLINE:
      case MsgType.JUST_EXEC:
        return length > EXEC_PARAMS_SIZE && length <= EXEC_PARAMS_SIZE + MAX_QREXEC_CMD_LEN
          ? ok
          : fail('bad-length', `exec len ${length}`);
      case MsgType.SERVICE_CONNECT:
        return length === SERVICE_CONNECT_SIZE ? ok : fail('bad-length', `SERVICE_CONNECT len ${length}`);
      case MsgType.SERVICE_REFUSED:
        return length === SERVICE_PARAMS_SIZE ? ok : fail('bad-length', `SERVICE_REFUSED len ${length}`);
      default:
        return fail(KIND_BY_TYPE.has(type) ? 'unexpected-type' : 'unknown-type', hex(type));
    }
  }
  // control-from-agent (sanitize_message_from_agent)
  switch (type) {
    case MsgType.TRIGGER_SERVICE:
      if (version >= QREXEC_PROTOCOL_V3) return fail('unexpected-type', `TRIGGER_SERVICE at v${version}`);
      return length === TRIGGER_SERVICE_SIZE ? ok : fail('bad-length', `TRIGGER_SERVICE len ${length}`);
    case MsgType.TRIGGER_SERVICE3:
      if (version < QREXEC_PROTOCOL_V3) return fail('unexpected-type', `TRIGGER_SERVICE3 at v${version}`);
      return length > TRIGGER_SERVICE3_FIXED && length - TRIGGER_SERVICE3_FIXED <= MAX_SERVICE_NAME_LEN
        ? ok
        : fail('bad-length', `TRIGGER_SERVICE3 len ${length}`);
    case MsgType.TRIGGER_SERVICE4:
      if (version < QREXEC_PROTOCOL_V4) return fail('unexpected-type', `TRIGGER_SERVICE4 at v${version}`);
      return length > TRIGGER_SERVICE4_FIXED && length - TRIGGER_SERVICE4_FIXED <= MAX_SERVICE_NAME_LEN
        ? ok
        : fail('bad-length', `TRIGGER_SERVICE4 len ${length}`);
    case MsgType.CONNECTION_TERMINATED:
      return length === EXEC_PARAMS_SIZE ? ok : fail('bad-length', `CONNECTION_TERMINATED len ${length}`);
    case MsgType.HELLO:
      return length === PEER_INFO_SIZE ? ok : fail('bad-length', `HELLO len ${length}`);
    default:
      return fail(KIND_BY_TYPE.has(type) ? 'unexpected-type' : 'unknown-type', hex(type));
  }
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

// ---- Strings in fixed fields ------------------------------------------------------------------------

/**
 * Field text: bytes up to the first NUL (or the whole field), as latin1 so every byte maps to
 * one code unit and nothing is lost; the qrexec peers only ever put ASCII here.
 */
export function cString(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return latin1(nul < 0 ? bytes : bytes.subarray(0, nul));
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

/** Writes `text` NUL-padded into a fixed field; the last byte always stays NUL (the C peers force it). */
function putFixed(target: Uint8Array, offset: number, size: number, text: string | Uint8Array): void {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  const n = Math.min(bytes.length, size - 1);
  target.set(bytes.subarray(0, n), offset);
  target.fill(0, offset + n, offset + size);
}

/** A request id field from text (NUL-padded to 32 bytes; text longer than 31 bytes is cut). */
export function requestIdFromText(text: string): RequestId {
  const out = new Uint8Array(SERVICE_PARAMS_SIZE);
  putFixed(out, 0, SERVICE_PARAMS_SIZE, text);
  return out;
}

export function requestIdText(id: RequestId): string {
  return cString(id);
}

/**
 * dom0's request-id rule (`validate_request_id`): letters, digits, `_ - . space`, a NUL inside
 * the 32 bytes, and only NULs after it. A failure makes dom0 answer MSG_SERVICE_REFUSED.
 */
export function validateRequestId(id: RequestId): Decoded<string> {
  for (let i = 0; i < SERVICE_PARAMS_SIZE; i++) {
    const c = id[i] ?? 0;
    if (c === 0) {
      for (let j = i + 1; j < SERVICE_PARAMS_SIZE; j++) {
        if (id[j] !== 0) return fail('bad-request-id', `non-NUL byte at ${j} after NUL at ${i}`);
      }
      return { ok: true, value: latin1(id.subarray(0, i)) };
    }
    if (!isNameChar(c) && c !== 0x20) return fail('bad-request-id', `bad byte ${c} at ${i}`);
  }
  return fail('bad-request-id', 'no NUL terminator');
}

function isNameChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x5f || // _
    c === 0x2d || // -
    c === 0x2e // .
  );
}

/** dom0's `sanitize_name`: every byte other than letters, digits, `_ - .` and `extra` becomes `_`. */
export function sanitizeName(text: string, extra: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    const c = text.charCodeAt(i);
    out += isNameChar(c) || extra.includes(ch) ? ch : '_';
  }
  return out;
}

/**
 * dom0's handling of a trigger's service name bytes (`daemon/qrexec-daemon.c`
 * `handle_message_from_agent`, `validate_service_name`, `sanitize_name`): NUL-terminated exactly at the end,
 * no embedded NUL, non-empty, not starting with `+`, then sanitised (extra allowed: `+`).
 */
function triggerServiceName(bytes: Uint8Array): Decoded<string> {
  if (bytes[bytes.length - 1] !== 0) return fail('service-name-not-terminated');
  const nul = bytes.indexOf(0);
  if (nul !== bytes.length - 1) return fail('service-name-embedded-nul', `NUL at ${nul}`);
  if (nul === 0) return fail('empty-service-name');
  if (bytes[0] === 0x2b) return fail('service-name-starts-with-plus');
  return { ok: true, value: sanitizeName(latin1(bytes.subarray(0, nul)), '+') };
}

/** Target/source domain fields: forced NUL at the last byte, then sanitised with `@:` allowed. */
function domainField(bytes: Uint8Array): string {
  return sanitizeName(cString(bytes.subarray(0, bytes.length - 1)), '@:');
}

// ---- Payload decode ----------------------------------------------------------------------------------

/**
 * Decodes one payload whose header already passed `checkHeader`. Returns a reason (never
 * throws) for anything the receiving C peer would reject. For trigger messages, failures that
 * dom0 answers with MSG_SERVICE_REFUSED (bad request id or service name) come back as
 * `{ok: false, reason, refuse: requestId}` via `decodeTrigger` instead; see there.
 */
export function decodePayload(type: number, payload: Uint8Array): Decoded<Message> {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const u32 = (off: number) => view.getUint32(off, true);
  const need = (n: number): boolean => payload.length >= n;
  const kind = kindOfType(type);
  switch (kind) {
    case 'hello':
      if (payload.length !== PEER_INFO_SIZE) return fail('bad-length', `HELLO len ${payload.length}`);
      return { ok: true, value: { kind, version: u32(0) } };
    case 'exec-cmdline':
    case 'just-exec': {
      if (payload.length <= EXEC_PARAMS_SIZE) return fail('bad-length', `exec len ${payload.length}`);
      // The agent forces the last byte to NUL and uses the text up to the first NUL.
      const cmdline = cString(payload.subarray(EXEC_PARAMS_SIZE, payload.length - 1));
      return { ok: true, value: { kind, connectDomain: u32(0), connectPort: u32(4), cmdline } };
    }
    case 'service-connect':
      if (payload.length !== SERVICE_CONNECT_SIZE)
        return fail('bad-length', `SERVICE_CONNECT len ${payload.length}`);
      return {
        ok: true,
        value: {
          kind,
          connectDomain: u32(0),
          connectPort: u32(4),
          requestId: payload.slice(EXEC_PARAMS_SIZE, SERVICE_CONNECT_SIZE),
        },
      };
    case 'service-refused':
      if (payload.length !== SERVICE_PARAMS_SIZE)
        return fail('bad-length', `SERVICE_REFUSED len ${payload.length}`);
      return { ok: true, value: { kind, requestId: payload.slice(0, SERVICE_PARAMS_SIZE) } };
    case 'connection-terminated':
      if (payload.length !== EXEC_PARAMS_SIZE)
        return fail('bad-length', `CONNECTION_TERMINATED len ${payload.length}`);
      return { ok: true, value: { kind, connectDomain: u32(0), connectPort: u32(4) } };
    case 'trigger-service':
    case 'trigger-service3':
    case 'trigger-service4': {
      const t = decodeTrigger(type, payload);
      return t.ok ? t : fail(t.reason, t.detail);
    }
    case 'data-stdin':
    case 'data-stdout':
    case 'data-stderr':
      return { ok: true, value: { kind, data: payload } };
    case 'data-exit-code':
      // Shorter than 4 bytes: the C caller takes status 255 rather than failing.
      return {
        ok: true,
        value: { kind, code: need(EXIT_CODE_SIZE) ? view.getInt32(0, true) : EXIT_CODE_TRUNCATED },
      };
    case 'unknown':
      return { ok: true, value: { kind, type, payload } };
  }
}

type TriggerMessage = Extract<Message, { kind: 'trigger-service' | 'trigger-service3' | 'trigger-service4' }>;

export type DecodedTrigger =
  | { ok: true; value: TriggerMessage }
  /** `refuse` is set when dom0 answers with MSG_SERVICE_REFUSED instead of dropping the agent. */
  | { ok: false; reason: DecodeReason; detail?: string; refuse?: RequestId };

/**
 * A trigger message as qrexec-daemon reads it (`handle_message_from_agent`): domain fields
 * forced NUL-terminated and sanitised, the request id and service name validated. Lengths must
 * already have passed `checkHeader`.
 */
export function decodeTrigger(type: number, payload: Uint8Array): DecodedTrigger {
  if (type === MsgType.TRIGGER_SERVICE) {
    if (payload.length !== TRIGGER_SERVICE_SIZE) return fail('bad-length');
    const requestId = payload.slice(TS2_REQUEST_ID, TS2_REQUEST_ID + SERVICE_PARAMS_SIZE);
    const name = sanitizeName(
      cString(payload.subarray(TS2_SERVICE_NAME, TS2_SERVICE_NAME + TS2_SERVICE_NAME_SIZE - 1)),
      '+',
    );
    const targetDomain = domainField(
      payload.subarray(TS2_TARGET_DOMAIN, TS2_TARGET_DOMAIN + TS2_TARGET_DOMAIN_SIZE),
    );
    const id = validateRequestId(requestId);
    if (!id.ok) return { ok: false, reason: id.reason, detail: id.detail ?? '', refuse: requestId };
    if (name.length === 0) return { ok: false, reason: 'empty-service-name', refuse: requestId };
    if (name.startsWith('+'))
      return { ok: false, reason: 'service-name-starts-with-plus', refuse: requestId };
    return { ok: true, value: { kind: 'trigger-service', serviceName: name, targetDomain, requestId } };
  }
  const v4 = type === MsgType.TRIGGER_SERVICE4;
  if (!v4 && type !== MsgType.TRIGGER_SERVICE3) return fail('unexpected-type');
  const fixed = v4 ? TRIGGER_SERVICE4_FIXED : TRIGGER_SERVICE3_FIXED;
  if (payload.length <= fixed || payload.length - fixed > MAX_SERVICE_NAME_LEN) return fail('bad-length');
  const idAt = v4 ? TS4_REQUEST_ID : TS3_REQUEST_ID;
  const targetAt = v4 ? TS4_TARGET_DOMAIN : TS3_TARGET_DOMAIN;
  const requestId = payload.slice(idAt, idAt + SERVICE_PARAMS_SIZE);
  const targetDomain = domainField(payload.subarray(targetAt, targetAt + DOMAIN_FIELD_SIZE));
  const id = validateRequestId(requestId);
  if (!id.ok) return { ok: false, reason: id.reason, detail: id.detail ?? '', refuse: requestId };
  const name = triggerServiceName(payload.subarray(fixed));
  if (!name.ok) return { ok: false, reason: name.reason, detail: name.detail ?? '', refuse: requestId };
  if (!v4)
    return {
      ok: true,
      value: { kind: 'trigger-service3', targetDomain, requestId, serviceName: name.value },
    };
  const sourceDomain = domainField(
    payload.subarray(TS4_SOURCE_DOMAIN, TS4_SOURCE_DOMAIN + DOMAIN_FIELD_SIZE),
  );
  return {
    ok: true,
    value: { kind: 'trigger-service4', sourceDomain, targetDomain, requestId, serviceName: name.value },
  };
}

/** Header + payload in one buffer, e.g. a captured message. */
export function decodeMessage(bytes: Uint8Array): Decoded<Message> {
  const h = decodeHeader(bytes);
  if (!h.ok) return h;
  if (bytes.length - HEADER_SIZE < h.value.length) return fail('truncated-payload');
  if (bytes.length - HEADER_SIZE > h.value.length) return fail('bad-length', 'trailing bytes');
  return decodePayload(h.value.type, bytes.subarray(HEADER_SIZE));
}

// ---- Encode --------------------------------------------------------------------------------------------

function withHeader(type: number, payloadLength: number): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(HEADER_SIZE + payloadLength);
  encodeHeader({ type, length: payloadLength }, bytes);
  return { bytes, view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

/** Encodes one message (header + payload). Fixed text fields are NUL-padded and NUL-terminated. */
export function encodeMessage(message: Message): Uint8Array {
  const H = HEADER_SIZE;
  switch (message.kind) {
    case 'hello': {
      const { bytes, view } = withHeader(MsgType.HELLO, PEER_INFO_SIZE);
      view.setUint32(H, message.version >>> 0, true);
      return bytes;
    }
    case 'exec-cmdline':
    case 'just-exec': {
      const cmd = Buffer.from(message.cmdline, 'latin1');
      const { bytes, view } = withHeader(typeOfKind(message.kind), EXEC_PARAMS_SIZE + cmd.length + 1);
      view.setUint32(H, message.connectDomain >>> 0, true);
      view.setUint32(H + 4, message.connectPort >>> 0, true);
      bytes.set(cmd, H + EXEC_PARAMS_SIZE); // trailing NUL already zero
      return bytes;
    }
    case 'service-connect': {
      const { bytes, view } = withHeader(MsgType.SERVICE_CONNECT, SERVICE_CONNECT_SIZE);
      view.setUint32(H, message.connectDomain >>> 0, true);
      view.setUint32(H + 4, message.connectPort >>> 0, true);
      bytes.set(message.requestId.subarray(0, SERVICE_PARAMS_SIZE), H + EXEC_PARAMS_SIZE);
      return bytes;
    }
    case 'service-refused': {
      const { bytes } = withHeader(MsgType.SERVICE_REFUSED, SERVICE_PARAMS_SIZE);
      bytes.set(message.requestId.subarray(0, SERVICE_PARAMS_SIZE), H);
      return bytes;
    }
    case 'trigger-service': {
      const { bytes } = withHeader(MsgType.TRIGGER_SERVICE, TRIGGER_SERVICE_SIZE);
      putFixed(bytes, H + TS2_SERVICE_NAME, TS2_SERVICE_NAME_SIZE, message.serviceName);
      putFixed(bytes, H + TS2_TARGET_DOMAIN, TS2_TARGET_DOMAIN_SIZE, message.targetDomain);
      bytes.set(message.requestId.subarray(0, SERVICE_PARAMS_SIZE), H + TS2_REQUEST_ID);
      return bytes;
    }
    case 'connection-terminated': {
      const { bytes, view } = withHeader(MsgType.CONNECTION_TERMINATED, EXEC_PARAMS_SIZE);
      view.setUint32(H, message.connectDomain >>> 0, true);
      view.setUint32(H + 4, message.connectPort >>> 0, true);
      return bytes;
    }
    case 'trigger-service3': {
      const name = Buffer.from(message.serviceName, 'latin1');
      const { bytes } = withHeader(MsgType.TRIGGER_SERVICE3, TRIGGER_SERVICE3_FIXED + name.length + 1);
      putFixed(bytes, H + TS3_TARGET_DOMAIN, DOMAIN_FIELD_SIZE, message.targetDomain);
      bytes.set(message.requestId.subarray(0, SERVICE_PARAMS_SIZE), H + TS3_REQUEST_ID);
      bytes.set(name, H + TRIGGER_SERVICE3_FIXED);
      return bytes;
    }
    case 'trigger-service4': {
      const name = Buffer.from(message.serviceName, 'latin1');
      const { bytes } = withHeader(MsgType.TRIGGER_SERVICE4, TRIGGER_SERVICE4_FIXED + name.length + 1);
      putFixed(bytes, H + TS4_SOURCE_DOMAIN, DOMAIN_FIELD_SIZE, message.sourceDomain);
      putFixed(bytes, H + TS4_TARGET_DOMAIN, DOMAIN_FIELD_SIZE, message.targetDomain);
      bytes.set(message.requestId.subarray(0, SERVICE_PARAMS_SIZE), H + TS4_REQUEST_ID);
      bytes.set(name, H + TRIGGER_SERVICE4_FIXED);
      return bytes;
    }
    case 'data-stdin':
    case 'data-stdout':
    case 'data-stderr': {
      const { bytes } = withHeader(typeOfKind(message.kind), message.data.length);
      bytes.set(message.data, H);
      return bytes;
    }
    case 'data-exit-code': {
      const { bytes, view } = withHeader(MsgType.DATA_EXIT_CODE, EXIT_CODE_SIZE);
      view.setInt32(H, message.code | 0, true);
      return bytes;
    }
    case 'unknown': {
      const { bytes } = withHeader(message.type, message.payload.length);
      bytes.set(message.payload, H);
      return bytes;
    }
  }
}
