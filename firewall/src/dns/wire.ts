/**
 * DNS message format (RFC 1035 §4, AAAA: RFC 3596): constants, the message
 * repr, decode (untrusted bytes → message or a reason) and encode (with name
 * compression). Names are in presentation form: labels joined by `.`, without
 * the trailing root dot, bytes other than letters, digits, `-`, `_` and `*`
 * escaped as `\DDD` (RFC 4343), so any wire label round-trips.
 */

export const DNS_PORT = 53;
export const HEADER_SIZE = 12;
/** UDP answers we accept (EDNS is not used, so servers keep to 512; larger ones would be truncated). */
export const MAX_UDP_MESSAGE = 512;
/** A TCP message is framed by a 16-bit length. */
export const MAX_MESSAGE = 65535;
export const MAX_NAME_WIRE_LENGTH = 255;
export const MAX_LABEL_LENGTH = 63;
/** Compression pointers followed per name; pointers must also point strictly backwards. */
export const MAX_POINTER_JUMPS = 64;

export const TYPE_A = 1;
export const TYPE_NS = 2;
export const TYPE_CNAME = 5;
export const TYPE_SOA = 6;
export const TYPE_AAAA = 28;
export const TYPE_OPT = 41;
export const CLASS_IN = 1;

export const OPCODE_QUERY = 0;
export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;

// header layout
const OFF_ID = 0;
const OFF_FLAGS = 2;
const OFF_QDCOUNT = 4;
const OFF_ANCOUNT = 6;
const OFF_NSCOUNT = 8;
const OFF_ARCOUNT = 10;
const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
const FLAG_Z = 0x0040;
const FLAG_AD = 0x0020;
const FLAG_CD = 0x0010;
const POINTER = 0xc0;
/** Smallest question (root name + type + class) and record (+ ttl + rdlength). */
const MIN_QUESTION = 5;
const MIN_RECORD = 11;

export interface DnsHeader {
  id: number;
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  z: boolean;
  ad: boolean;
  cd: boolean;
  rcode: number;
}

export interface DnsQuestion {
  name: string;
  type: number;
  class: number;
}

export type DnsRecordData =
  | { kind: 'a'; address: Uint8Array }
  | { kind: 'aaaa'; address: Uint8Array }
  | { kind: 'cname'; target: string }
  | {
      kind: 'soa';
      mname: string;
      rname: string;
      serial: number;
      refresh: number;
      retry: number;
      expire: number;
      minimum: number;
    }
  | { kind: 'raw'; bytes: Uint8Array };

export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  data: DnsRecordData;
}

export interface DnsMessage {
  header: DnsHeader;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  additionals: DnsRecord[];
}

export type DecodeResult = { ok: true; message: DnsMessage } | { ok: false; reason: string };

/** Thrown by encode for data of our own making that cannot be encoded (a bug, not input). */
export class DnsEncodeError extends Error {
  constructor(
    readonly operation: string,
    readonly value: string,
    detail: string,
  ) {
    super(`${operation}: ${detail}: ${JSON.stringify(value.slice(0, 300))}`);
    this.name = 'DnsEncodeError';
  }
}

// ---- names ----

function isPlain(b: number): boolean {
  return (
    (b >= 0x30 && b <= 0x39) ||
    (b >= 0x41 && b <= 0x5a) ||
    (b >= 0x61 && b <= 0x7a) ||
    b === 0x2d ||
    b === 0x5f ||
    b === 0x2a
  );
}

/** One wire label in presentation form. */
export function labelToText(label: Uint8Array): string {
  let s = '';
  for (const b of label) s += isPlain(b) ? String.fromCharCode(b) : `\\${b.toString().padStart(3, '0')}`;
  return s;
}

/** Presentation-form name → wire labels; undefined if malformed or too long. */
export function nameToLabels(name: string): Uint8Array[] | undefined {
  if (name === '' || name === '.') return [];
  const text = name.endsWith('.') && !name.endsWith('\\.') ? name.slice(0, -1) : name;
  const labels: Uint8Array[] = [];
  let cur: number[] = [];
  let wire = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2e) {
      if (cur.length === 0) return undefined;
      labels.push(Uint8Array.from(cur));
      wire += cur.length + 1;
      cur = [];
      continue;
    }
    if (c === 0x5c) {
      const d = text.slice(i + 1, i + 4);
      if (/^[0-9]{3}$/.test(d) && Number(d) <= 255) {
        cur.push(Number(d));
        i += 3;
      } else if (i + 1 < text.length) {
        cur.push(text.charCodeAt(i + 1) & 0xff);
        i += 1;
      } else return undefined;
    } else {
      if (c > 0x7e || c < 0x21) return undefined;
      cur.push(c);
    }
    if (cur.length > MAX_LABEL_LENGTH) return undefined;
  }
  if (cur.length === 0) return undefined;
  labels.push(Uint8Array.from(cur));
  wire += cur.length + 1;
  return wire <= MAX_NAME_WIRE_LENGTH ? labels : undefined;
}

/** Case-insensitive (ASCII only, RFC 4343) name comparison in presentation form. */
export function namesEqual(a: string, b: string): boolean {
  return canonicalName(a) === canonicalName(b);
}

/** Lowercase ASCII letters, drop a trailing root dot. */
export function canonicalName(name: string): string {
  const t = name.endsWith('.') && !name.endsWith('\\.') ? name.slice(0, -1) : name;
  return t.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

// ---- decode ----

class Reader {
  constructor(
    readonly bytes: Uint8Array,
    readonly view: DataView,
  ) {}
}

type NameResult = { ok: true; name: string; next: number } | { ok: false; reason: string };

function readName(r: Reader, start: number): NameResult {
  const b = r.bytes;
  let pos = start;
  let next = -1;
  let jumps = 0;
  let wire = 1;
  let lowest = start; // pointers must go strictly below every position visited
  const parts: string[] = [];
  for (;;) {
    if (pos >= b.length) return { ok: false, reason: 'name runs past the end' };
    const len = b[pos]!;
    if ((len & POINTER) === POINTER) {
      if (pos + 1 >= b.length) return { ok: false, reason: 'truncated compression pointer' };
      const target = ((len & 0x3f) << 8) | b[pos + 1]!;
      if (next < 0) next = pos + 2;
      if (target >= lowest) return { ok: false, reason: 'compression pointer does not point backwards' };
      if (++jumps > MAX_POINTER_JUMPS) return { ok: false, reason: 'too many compression pointers' };
      lowest = target;
      pos = target;
      continue;
    }
    if ((len & POINTER) !== 0) return { ok: false, reason: 'reserved label type' };
    if (len === 0) {
      if (next < 0) next = pos + 1;
      return { ok: true, name: parts.join('.'), next };
    }
    if (pos + 1 + len > b.length) return { ok: false, reason: 'label runs past the end' };
    wire += len + 1;
    if (wire > MAX_NAME_WIRE_LENGTH) return { ok: false, reason: 'name longer than 255 bytes' };
    parts.push(labelToText(b.subarray(pos + 1, pos + 1 + len)));
    pos += 1 + len;
  }
}

type RecordResult = { ok: true; record: DnsRecord; next: number } | { ok: false; reason: string };

function readRecord(r: Reader, start: number): RecordResult {
  const n = readName(r, start);
  if (!n.ok) return n;
  let pos = n.next;
  if (pos + 10 > r.bytes.length) return { ok: false, reason: 'truncated record header' };
  const type = r.view.getUint16(pos);
  const klass = r.view.getUint16(pos + 2);
  const ttl = r.view.getUint32(pos + 4);
  const rdlength = r.view.getUint16(pos + 8);
  pos += 10;
  const end = pos + rdlength;
  if (end > r.bytes.length) return { ok: false, reason: 'rdata runs past the end' };
  let data: DnsRecordData;
  if (type === TYPE_A && klass === CLASS_IN) {
    if (rdlength !== 4) return { ok: false, reason: 'A record rdata is not 4 bytes' };
    data = { kind: 'a', address: r.bytes.slice(pos, end) };
  } else if (type === TYPE_AAAA && klass === CLASS_IN) {
    if (rdlength !== 16) return { ok: false, reason: 'AAAA record rdata is not 16 bytes' };
    data = { kind: 'aaaa', address: r.bytes.slice(pos, end) };
  } else if (type === TYPE_CNAME) {
    const t = readName(r, pos);
    if (!t.ok) return t;
    if (t.next !== end) return { ok: false, reason: 'CNAME rdata length mismatch' };
    data = { kind: 'cname', target: t.name };
  } else if (type === TYPE_SOA) {
    const m = readName(r, pos);
    if (!m.ok) return m;
    const rn = readName(r, m.next);
    if (!rn.ok) return rn;
    if (rn.next + 20 !== end) return { ok: false, reason: 'SOA rdata length mismatch' };
    const v = r.view;
    const p = rn.next;
    data = {
      kind: 'soa',
      mname: m.name,
      rname: rn.name,
      serial: v.getUint32(p),
      refresh: v.getUint32(p + 4),
      retry: v.getUint32(p + 8),
      expire: v.getUint32(p + 12),
      minimum: v.getUint32(p + 16),
    };
  } else {
    data = { kind: 'raw', bytes: r.bytes.slice(pos, end) };
  }
  return { ok: true, record: { name: n.name, type, class: klass, ttl, data }, next: end };
}

/** Decodes one message. Never throws; every count is bounded by the bytes present. */
export function decodeMessage(bytes: Uint8Array): DecodeResult {
  if (bytes.length < HEADER_SIZE) return { ok: false, reason: 'shorter than a header' };
  if (bytes.length > MAX_MESSAGE) return { ok: false, reason: 'longer than 65535 bytes' };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const r = new Reader(bytes, view);
  const flags = view.getUint16(OFF_FLAGS);
  const header: DnsHeader = {
    id: view.getUint16(OFF_ID),
    qr: (flags & FLAG_QR) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & FLAG_AA) !== 0,
    tc: (flags & FLAG_TC) !== 0,
    rd: (flags & FLAG_RD) !== 0,
    ra: (flags & FLAG_RA) !== 0,
    z: (flags & FLAG_Z) !== 0,
    ad: (flags & FLAG_AD) !== 0,
    cd: (flags & FLAG_CD) !== 0,
    rcode: flags & 0xf,
  };
  const qd = view.getUint16(OFF_QDCOUNT);
  const an = view.getUint16(OFF_ANCOUNT);
  const ns = view.getUint16(OFF_NSCOUNT);
  const ar = view.getUint16(OFF_ARCOUNT);
  const room = bytes.length - HEADER_SIZE;
  if (qd * MIN_QUESTION + (an + ns + ar) * MIN_RECORD > room)
    return { ok: false, reason: 'counts exceed the message' };
  let pos = HEADER_SIZE;
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < qd; i++) {
    const n = readName(r, pos);
    if (!n.ok) return { ok: false, reason: `question ${i}: ${n.reason}` };
    if (n.next + 4 > bytes.length) return { ok: false, reason: `question ${i}: truncated` };
    questions.push({ name: n.name, type: view.getUint16(n.next), class: view.getUint16(n.next + 2) });
    pos = n.next + 4;
  }
  const sections: DnsRecord[][] = [[], [], []];
  const counts = [an, ns, ar];
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s]!; i++) {
      const rec = readRecord(r, pos);
      if (!rec.ok)
        return { ok: false, reason: `${['answer', 'authority', 'additional'][s]} ${i}: ${rec.reason}` };
      sections[s]!.push(rec.record);
      pos = rec.next;
    }
  }
  return {
    ok: true,
    message: {
      header,
      questions,
      answers: sections[0]!,
      authorities: sections[1]!,
      additionals: sections[2]!,
    },
  };
}

// ---- encode ----

class Writer {
  bytes = new Uint8Array(512);
  length = 0;
  /** suffix (presentation form) → offset, for compression */
  readonly suffixes = new Map<string, number>();
  constructor(readonly compress: boolean) {}
  ensure(n: number): void {
    if (this.length + n > MAX_MESSAGE)
      throw new DnsEncodeError('encodeMessage', '', 'message longer than 65535 bytes');
    if (this.length + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.length + n) size *= 2;
    const b = new Uint8Array(Math.min(size, MAX_MESSAGE));
    b.set(this.bytes.subarray(0, this.length));
    this.bytes = b;
  }
  u8(v: number): void {
    this.ensure(1);
    this.bytes[this.length++] = v & 0xff;
  }
  u16(v: number): void {
    this.ensure(2);
    this.bytes[this.length++] = (v >> 8) & 0xff;
    this.bytes[this.length++] = v & 0xff;
  }
  u32(v: number): void {
    this.u16((v >>> 16) & 0xffff);
    this.u16(v & 0xffff);
  }
  raw(b: Uint8Array): void {
    this.ensure(b.length);
    this.bytes.set(b, this.length);
    this.length += b.length;
  }
  name(name: string, compress = this.compress): void {
    const labels = nameToLabels(name);
    if (!labels) throw new DnsEncodeError('encodeMessage', name, 'not a valid name');
    for (let i = 0; i < labels.length; i++) {
      // exact (case-preserving) suffixes only, so names decode to exactly what was encoded
      const suffix = labels
        .slice(i)
        .map((l) => labelToText(l))
        .join('.');
      const at = compress ? this.suffixes.get(suffix) : undefined;
      if (at !== undefined) {
        this.u16(0xc000 | at);
        return;
      }
      if (compress && this.length < 0x4000) this.suffixes.set(suffix, this.length);
      this.u8(labels[i]!.length);
      this.raw(labels[i]!);
    }
    this.u8(0);
  }
}

function writeRecord(w: Writer, rec: DnsRecord): void {
  w.name(rec.name);
  w.u16(rec.type);
  w.u16(rec.class);
  w.u32(rec.ttl);
  const lengthAt = w.length;
  w.u16(0);
  const d = rec.data;
  switch (d.kind) {
    case 'a':
    case 'aaaa':
      w.raw(d.address);
      break;
    case 'cname':
      w.name(d.target);
      break;
    case 'soa':
      w.name(d.mname);
      w.name(d.rname);
      w.u32(d.serial);
      w.u32(d.refresh);
      w.u32(d.retry);
      w.u32(d.expire);
      w.u32(d.minimum);
      break;
    case 'raw':
      w.raw(d.bytes);
      break;
  }
  const rdlength = w.length - lengthAt - 2;
  if (rdlength > 0xffff) throw new DnsEncodeError('encodeMessage', rec.name, 'rdata longer than 65535 bytes');
  w.bytes[lengthAt] = rdlength >> 8;
  w.bytes[lengthAt + 1] = rdlength & 0xff;
}

/** Encodes a message; names are compressed unless `compress` is false. */
export function encodeMessage(message: DnsMessage, options: { compress?: boolean } = {}): Uint8Array {
  const w = new Writer(options.compress ?? true);
  const h = message.header;
  w.u16(h.id);
  w.u16(
    (h.qr ? FLAG_QR : 0) |
      ((h.opcode & 0xf) << 11) |
      (h.aa ? FLAG_AA : 0) |
      (h.tc ? FLAG_TC : 0) |
      (h.rd ? FLAG_RD : 0) |
      (h.ra ? FLAG_RA : 0) |
      (h.z ? FLAG_Z : 0) |
      (h.ad ? FLAG_AD : 0) |
      (h.cd ? FLAG_CD : 0) |
      (h.rcode & 0xf),
  );
  w.u16(message.questions.length);
  w.u16(message.answers.length);
  w.u16(message.authorities.length);
  w.u16(message.additionals.length);
  for (const q of message.questions) {
    w.name(q.name);
    w.u16(q.type);
    w.u16(q.class);
  }
  for (const rec of message.answers) writeRecord(w, rec);
  for (const rec of message.authorities) writeRecord(w, rec);
  for (const rec of message.additionals) writeRecord(w, rec);
  return w.bytes.slice(0, w.length);
}

export function emptyHeader(id: number): DnsHeader {
  return {
    id,
    qr: false,
    opcode: 0,
    aa: false,
    tc: false,
    rd: false,
    ra: false,
    z: false,
    ad: false,
    cd: false,
    rcode: 0,
  };
}

/** A recursive query for one name and type (what a stub resolver sends). */
export function encodeQuery(id: number, name: string, type: number): Uint8Array {
  return encodeMessage({
    header: { ...emptyHeader(id), rd: true },
    questions: [{ name, type, class: CLASS_IN }],
    answers: [],
    authorities: [],
    additionals: [],
  });
}
