/**
 * The xenstore wire protocol (xen/include/public/io/xs_wire.h, docs/misc/xenstore.txt):
 * message types, the 16-byte header, error names, limits, and bounds-checked
 * encode/decode. Nothing else in this package computes an offset.
 *
 * Every message is a header `{ type, req_id, tx_id, len }` (four little-endian uint32)
 * followed by `len` payload bytes. Parsers of untrusted bytes return a reason instead
 * of throwing.
 */

/** Message types (enum xsd_sockmsg_type). 20 was XS_RESTRICT and is gone. */
export const XsType = {
  CONTROL: 0,
  DIRECTORY: 1,
  READ: 2,
  GET_PERMS: 3,
  WATCH: 4,
  UNWATCH: 5,
  TRANSACTION_START: 6,
  TRANSACTION_END: 7,
  INTRODUCE: 8,
  RELEASE: 9,
  GET_DOMAIN_PATH: 10,
  WRITE: 11,
  MKDIR: 12,
  RM: 13,
  SET_PERMS: 14,
  WATCH_EVENT: 15,
  ERROR: 16,
  IS_DOMAIN_INTRODUCED: 17,
  RESUME: 18,
  SET_TARGET: 19,
  RESET_WATCHES: 21,
  DIRECTORY_PART: 22,
  /** 23-26 came with Xen 4.18; 4.17's xenstored answers them with ENOSYS. */
  GET_FEATURE: 23,
  SET_FEATURE: 24,
  GET_QUOTA: 25,
  SET_QUOTA: 26,
  INVALID: 0xffff,
} as const;
export type XsTypeName = keyof typeof XsType;
export type XsTypeValue = (typeof XsType)[XsTypeName];

/** XS_DEBUG is an alias of XS_CONTROL in xs_wire.h. */
export const XS_DEBUG = XsType.CONTROL;

const typeNames = new Map<number, XsTypeName>(
  (Object.entries(XsType) as [XsTypeName, number][]).map(([name, value]) => [value, name]),
);

/** The name of a type value, or undefined for a value xs_wire.h does not define. */
export function typeName(type: number): XsTypeName | undefined {
  return typeNames.get(type);
}

export function isKnownType(type: number): type is XsTypeValue {
  return typeNames.has(type) && type !== XsType.INVALID;
}

/** Error names in xsd_errors[] order (the reply payload is the name plus a NUL). */
export const XS_ERRORS = [
  'EINVAL',
  'EACCES',
  'EEXIST',
  'EISDIR',
  'ENOENT',
  'ENOMEM',
  'ENOSPC',
  'EIO',
  'ENOTEMPTY',
  'ENOSYS',
  'EROFS',
  'EBUSY',
  'EAGAIN',
  'EISCONN',
  'E2BIG',
  'EPERM',
] as const;
export type XsErrorName = (typeof XS_ERRORS)[number];
const errorNames = new Set<string>(XS_ERRORS);
export function isXsErrorName(name: string): name is XsErrorName {
  return errorNames.has(name);
}

/** Header size: four uint32. */
export const HEADER_SIZE = 16;
/** Header field offsets (struct xsd_sockmsg). */
export const Field = { TYPE: 0, REQ_ID: 4, TX_ID: 8, LEN: 12 } as const;

/** XENSTORE_PAYLOAD_MAX: the largest payload in either direction; xenstored kills a client exceeding it. */
export const XENSTORE_PAYLOAD_MAX = 4096;
/**
 * The Linux /dev/xen/xenbus device buffers a whole message (header included) in 4096 bytes
 * (drivers/xen/xenbus/xenbus_dev_frontend.c), so requests written there carry at most 4080.
 */
export const XENBUS_DEVICE_PAYLOAD_MAX = XENSTORE_PAYLOAD_MAX - HEADER_SIZE;
export const XENSTORE_ABS_PATH_MAX = 3072;
export const XENSTORE_REL_PATH_MAX = 2048;

/** Shared-ring layout (struct xenstore_domain_interface), for ring transports. */
export const XENSTORE_RING_SIZE = 1024;
export const RingField = {
  REQ: 0,
  RSP: 1024,
  REQ_CONS: 2048,
  REQ_PROD: 2052,
  RSP_CONS: 2056,
  RSP_PROD: 2060,
  SERVER_FEATURES: 2064,
  CONNECTION: 2068,
  ERROR: 2072,
} as const;

export interface Header {
  type: number;
  reqId: number;
  txId: number;
  len: number;
}

export interface Message extends Header {
  payload: Uint8Array;
}

export type DecodeReason = 'truncated-header' | 'truncated-payload' | 'oversized-length' | 'unknown-type';

export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: DecodeReason; detail?: string };

/** Reads a header; checks only that 16 bytes are present. */
export function decodeHeader(bytes: Uint8Array, offset = 0): Decoded<Header> {
  if (bytes.length - offset < HEADER_SIZE) return { ok: false, reason: 'truncated-header' };
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, HEADER_SIZE);
  return {
    ok: true,
    value: {
      type: view.getUint32(Field.TYPE, true),
      reqId: view.getUint32(Field.REQ_ID, true),
      txId: view.getUint32(Field.TX_ID, true),
      len: view.getUint32(Field.LEN, true),
    },
  };
}

/**
 * Decodes one whole message from `bytes` (which must hold exactly one message or more).
 * `maxPayload` bounds the length field before anything is allocated.
 */
export function decodeMessage(
  bytes: Uint8Array,
  maxPayload: number = XENSTORE_PAYLOAD_MAX,
): Decoded<Message> {
  const header = decodeHeader(bytes);
  if (!header.ok) return header;
  const h = header.value;
  if (h.len > maxPayload) return { ok: false, reason: 'oversized-length', detail: `len ${h.len}` };
  if (bytes.length < HEADER_SIZE + h.len) return { ok: false, reason: 'truncated-payload' };
  if (!isKnownType(h.type)) return { ok: false, reason: 'unknown-type', detail: `type ${h.type}` };
  return { ok: true, value: { ...h, payload: bytes.subarray(HEADER_SIZE, HEADER_SIZE + h.len) } };
}

/** Encodes header + payload into one new buffer. Throws RangeError on an oversized payload. */
export function encodeMessage(
  type: number,
  reqId: number,
  txId: number,
  payload: Uint8Array,
  maxPayload: number = XENSTORE_PAYLOAD_MAX,
): Uint8Array {
  if (payload.length > maxPayload) {
    throw new RangeError(`xenstore payload of ${payload.length} bytes exceeds ${maxPayload}`);
  }
  const out = new Uint8Array(HEADER_SIZE + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(Field.TYPE, type >>> 0, true);
  view.setUint32(Field.REQ_ID, reqId >>> 0, true);
  view.setUint32(Field.TX_ID, txId >>> 0, true);
  view.setUint32(Field.LEN, payload.length, true);
  out.set(payload, HEADER_SIZE);
  return out;
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Builds a payload of NUL-terminated strings, optionally followed by raw bytes (XS_WRITE's value). */
export function joinStrings(strings: readonly string[], tail?: Uint8Array): Uint8Array {
  const parts = strings.map((s) => encoder.encode(s));
  let size = tail?.length ?? 0;
  for (const p of parts) size += p.length + 1;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length + 1; // the NUL is already zero
  }
  if (tail) out.set(tail, at);
  return out;
}

/**
 * Splits a payload made only of NUL-terminated strings. Returns a reason when the last
 * string lacks its NUL or a string is not valid UTF-8 (xenstore strings are ASCII).
 */
export function splitStrings(
  payload: Uint8Array,
): Decoded<string[]> | { ok: false; reason: 'unterminated' | 'not-utf8' } {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] !== 0) continue;
    try {
      out.push(strictDecoder.decode(payload.subarray(start, i)));
    } catch {
      return { ok: false, reason: 'not-utf8' };
    }
    start = i + 1;
  }
  if (start !== payload.length) return { ok: false, reason: 'unterminated' };
  return { ok: true, value: out };
}

/** A single NUL-terminated string payload ("OK\0", "<txid>\0", "T\0", ...). */
export function parseOneString(payload: Uint8Array): string | undefined {
  const split = splitStrings(payload);
  if (!split.ok || split.value.length !== 1) return undefined;
  return split.value[0];
}

export type StreamReason = 'oversized-length' | 'unknown-type';

/**
 * Reassembles messages from a byte stream that may split or join them (sockets, the
 * xenbus device). Holds at most one header plus `maxPayload` bytes, so a hostile length
 * field cannot make it allocate more. After a violation it stays failed: framing is lost.
 */
export class MessageReader {
  private readonly header = new Uint8Array(HEADER_SIZE);
  private headerUsed = 0;
  private current: Header | undefined;
  private payload: Uint8Array | undefined;
  private payloadUsed = 0;
  private failure: { reason: StreamReason; detail: string } | undefined;

  constructor(
    private readonly maxPayload: number = XENSTORE_PAYLOAD_MAX,
    /** A server reading requests answers unknown types with ENOSYS instead of failing. */
    private readonly allowUnknownTypes = false,
  ) {}

  /** True when some bytes of an unfinished message are buffered. */
  get midMessage(): boolean {
    return this.headerUsed > 0 || this.current !== undefined;
  }

  get failed(): { reason: StreamReason; detail: string } | undefined {
    return this.failure;
  }

  /** Feeds bytes; returns the complete messages, or the violation that ended the stream. */
  push(chunk: Uint8Array): { messages: Message[]; error?: { reason: StreamReason; detail: string } } {
    const messages: Message[] = [];
    if (this.failure) return { messages, error: this.failure };
    let at = 0;
    while (at < chunk.length) {
      if (!this.current) {
        const take = Math.min(HEADER_SIZE - this.headerUsed, chunk.length - at);
        this.header.set(chunk.subarray(at, at + take), this.headerUsed);
        this.headerUsed += take;
        at += take;
        if (this.headerUsed < HEADER_SIZE) break;
        const h = decodeHeader(this.header);
        if (!h.ok) break; // cannot happen: 16 bytes are present
        if (h.value.len > this.maxPayload) {
          this.failure = {
            reason: 'oversized-length',
            detail: `length field ${h.value.len} > ${this.maxPayload}`,
          };
          return { messages, error: this.failure };
        }
        if (!this.allowUnknownTypes && !isKnownType(h.value.type)) {
          this.failure = { reason: 'unknown-type', detail: `type ${h.value.type}` };
          return { messages, error: this.failure };
        }
        this.current = h.value;
        this.payload = new Uint8Array(h.value.len);
        this.payloadUsed = 0;
      }
      const payload = this.payload!;
      const take = Math.min(payload.length - this.payloadUsed, chunk.length - at);
      payload.set(chunk.subarray(at, at + take), this.payloadUsed);
      this.payloadUsed += take;
      at += take;
      if (this.payloadUsed === payload.length) {
        messages.push({ ...this.current, payload });
        this.current = undefined;
        this.payload = undefined;
        this.headerUsed = 0;
      }
    }
    return { messages };
  }
}

/** Printable rendering of untrusted bytes for error messages (bounded, no control characters). */
export function describeBytes(bytes: Uint8Array, max = 64): string {
  let s = '';
  for (let i = 0; i < Math.min(bytes.length, max); i++) {
    const b = bytes[i]!;
    s +=
      b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return bytes.length > max ? `${s}... (${bytes.length} bytes)` : s;
}
