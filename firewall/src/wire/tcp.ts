/** TCP header (RFC 9293): ports, sequence numbers, flags, checksum. */
import { read16, read32, write16, write32 } from './checksum.ts';

export const TCP_SRC_PORT = 0;
export const TCP_DST_PORT = 2;
export const TCP_SEQ = 4;
export const TCP_ACK = 8;
export const TCP_DATA_OFF = 12;
export const TCP_FLAGS = 13;
export const TCP_WINDOW = 14;
export const TCP_CHECKSUM = 16;
export const TCP_URGENT = 18;
export const TCP_MIN_HEADER = 20;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACKF = 0x10;
export const TCP_URG = 0x20;

export type TcpError = 'tcp-truncated' | 'tcp-bad-header-length';

export class TcpView {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  headerLen = 0;

  check(buf: Uint8Array, off: number, len: number): TcpError | undefined {
    if (len < TCP_MIN_HEADER || off + len > buf.length) return 'tcp-truncated';
    const hl = (buf[off + TCP_DATA_OFF]! >> 4) * 4;
    if (hl < TCP_MIN_HEADER || hl > len) return 'tcp-bad-header-length';
    // stored only when it changes: a view lives long and the buffer is often new, and each
    // such store runs V8's write barrier (a call per packet on the engine's hot path)
    if (this.buf !== buf) this.buf = buf;
    this.off = off;
    this.headerLen = hl;
    return undefined;
  }
  get srcPort(): number {
    return read16(this.buf, this.off + TCP_SRC_PORT);
  }
  get dstPort(): number {
    return read16(this.buf, this.off + TCP_DST_PORT);
  }
  get flags(): number {
    return this.buf[this.off + TCP_FLAGS]!;
  }
}

export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  urgent: number;
  /** Raw option bytes (padded to a multiple of 4). */
  options: Uint8Array;
  checksum: number;
}

export function parseTcp(buf: Uint8Array, off = 0, len = buf.length - off): TcpRepr | TcpError {
  const v = new TcpView();
  const err = v.check(buf, off, len);
  if (err) return err;
  return {
    srcPort: v.srcPort,
    dstPort: v.dstPort,
    seq: read32(buf, off + TCP_SEQ),
    ack: read32(buf, off + TCP_ACK),
    flags: v.flags,
    window: read16(buf, off + TCP_WINDOW),
    urgent: read16(buf, off + TCP_URGENT),
    options: buf.slice(off + TCP_MIN_HEADER, off + v.headerLen),
    checksum: read16(buf, off + TCP_CHECKSUM),
  };
}

/** Writes the header with a zero checksum (the caller fills it over the pseudo-header). */
export function emitTcp(repr: TcpRepr, buf: Uint8Array, off = 0): number {
  const hl = TCP_MIN_HEADER + repr.options.length;
  write16(buf, off + TCP_SRC_PORT, repr.srcPort);
  write16(buf, off + TCP_DST_PORT, repr.dstPort);
  write32(buf, off + TCP_SEQ, repr.seq);
  write32(buf, off + TCP_ACK, repr.ack);
  buf[off + TCP_DATA_OFF] = (hl >> 2) << 4;
  buf[off + TCP_FLAGS] = repr.flags;
  write16(buf, off + TCP_WINDOW, repr.window);
  write16(buf, off + TCP_CHECKSUM, 0);
  write16(buf, off + TCP_URGENT, repr.urgent);
  buf.set(repr.options, off + TCP_MIN_HEADER);
  return hl;
}
