/** ARP for IPv4 over Ethernet (RFC 826): the only hardware/protocol pair accepted. */
import { read16, write16 } from './checksum.ts';

export const ARP_HTYPE = 0;
export const ARP_PTYPE = 2;
export const ARP_HLEN = 4;
export const ARP_PLEN = 5;
export const ARP_OPER = 6;
export const ARP_SHA = 8;
export const ARP_SPA = 14;
export const ARP_THA = 18;
export const ARP_TPA = 24;
export const ARP_LEN = 28;

export const ARP_HTYPE_ETHERNET = 1;
export const ARP_PTYPE_IPV4 = 0x0800;
export const ARP_OP_REQUEST = 1;
export const ARP_OP_REPLY = 2;

export type ArpError = 'arp-truncated' | 'arp-unsupported';

export class ArpView {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;

  check(buf: Uint8Array, off: number, len: number): ArpError | undefined {
    if (len < ARP_LEN || off + ARP_LEN > buf.length) return 'arp-truncated';
    if (
      read16(buf, off + ARP_HTYPE) !== ARP_HTYPE_ETHERNET ||
      read16(buf, off + ARP_PTYPE) !== ARP_PTYPE_IPV4 ||
      buf[off + ARP_HLEN] !== 6 ||
      buf[off + ARP_PLEN] !== 4
    )
      return 'arp-unsupported';
    this.buf = buf;
    this.off = off;
    return undefined;
  }
  get operation(): number {
    return read16(this.buf, this.off + ARP_OPER);
  }
  get senderIpOffset(): number {
    return this.off + ARP_SPA;
  }
  get senderMacOffset(): number {
    return this.off + ARP_SHA;
  }
  get targetIpOffset(): number {
    return this.off + ARP_TPA;
  }
}

export interface ArpRepr {
  operation: number;
  senderMac: Uint8Array;
  senderIp: Uint8Array;
  targetMac: Uint8Array;
  targetIp: Uint8Array;
}

export function parseArp(buf: Uint8Array, off = 0, len = buf.length - off): ArpRepr | ArpError {
  const v = new ArpView();
  const err = v.check(buf, off, len);
  if (err) return err;
  return {
    operation: v.operation,
    senderMac: buf.slice(off + ARP_SHA, off + ARP_SHA + 6),
    senderIp: buf.slice(off + ARP_SPA, off + ARP_SPA + 4),
    targetMac: buf.slice(off + ARP_THA, off + ARP_THA + 6),
    targetIp: buf.slice(off + ARP_TPA, off + ARP_TPA + 4),
  };
}

export function emitArp(repr: ArpRepr, buf: Uint8Array, off = 0): number {
  write16(buf, off + ARP_HTYPE, ARP_HTYPE_ETHERNET);
  write16(buf, off + ARP_PTYPE, ARP_PTYPE_IPV4);
  buf[off + ARP_HLEN] = 6;
  buf[off + ARP_PLEN] = 4;
  write16(buf, off + ARP_OPER, repr.operation);
  buf.set(repr.senderMac.subarray(0, 6), off + ARP_SHA);
  buf.set(repr.senderIp.subarray(0, 4), off + ARP_SPA);
  buf.set(repr.targetMac.subarray(0, 6), off + ARP_THA);
  buf.set(repr.targetIp.subarray(0, 4), off + ARP_TPA);
  return ARP_LEN;
}
