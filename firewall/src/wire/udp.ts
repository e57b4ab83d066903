/** UDP header (RFC 768). */
import { read16, write16 } from './checksum.ts';

export const UDP_SRC_PORT = 0;
export const UDP_DST_PORT = 2;
export const UDP_LENGTH = 4;
export const UDP_CHECKSUM = 6;
export const UDP_HEADER_LEN = 8;

export type UdpError = 'udp-truncated' | 'udp-bad-length';

export class UdpView {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  length = 0;

  /**
   * `len` is the IP payload length; the UDP length field must fit inside it, except in a
   * first fragment (`firstFragment`), whose length covers the whole datagram.
   */
  check(buf: Uint8Array, off: number, len: number, firstFragment = false): UdpError | undefined {
    if (len < UDP_HEADER_LEN || off + len > buf.length) return 'udp-truncated';
    const l = read16(buf, off + UDP_LENGTH);
    if (l < UDP_HEADER_LEN || (l > len && !firstFragment)) return 'udp-bad-length';
    // stored only when it changes: a view lives long and the buffer is often new, and each
    // such store runs V8's write barrier (a call per packet on the engine's hot path)
    if (this.buf !== buf) this.buf = buf;
    this.off = off;
    this.length = l;
    return undefined;
  }
  get srcPort(): number {
    return read16(this.buf, this.off + UDP_SRC_PORT);
  }
  get dstPort(): number {
    return read16(this.buf, this.off + UDP_DST_PORT);
  }
  get checksum(): number {
    return read16(this.buf, this.off + UDP_CHECKSUM);
  }
}

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  length: number;
  checksum: number;
}

export function parseUdp(buf: Uint8Array, off = 0, len = buf.length - off): UdpRepr | UdpError {
  const v = new UdpView();
  const err = v.check(buf, off, len);
  if (err) return err;
  return { srcPort: v.srcPort, dstPort: v.dstPort, length: v.length, checksum: v.checksum };
}

/** Writes the header with a zero checksum (the caller fills it over the pseudo-header). */
export function emitUdp(repr: UdpRepr, buf: Uint8Array, off = 0): number {
  write16(buf, off + UDP_SRC_PORT, repr.srcPort);
  write16(buf, off + UDP_DST_PORT, repr.dstPort);
  write16(buf, off + UDP_LENGTH, repr.length);
  write16(buf, off + UDP_CHECKSUM, 0);
  return UDP_HEADER_LEN;
}
