/** Ethernet II framing (IEEE 802.3 with EtherType; no 802.1Q: tagged frames are dropped). */
import { copyBytes, read16, write16 } from './checksum.ts';

export const ETH_DST = 0;
export const ETH_SRC = 6;
export const ETH_TYPE = 12;
export const ETH_HEADER_LEN = 14;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ETHERTYPE_VLAN = 0x8100;

export const BROADCAST_MAC: Uint8Array = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

export type EthernetError = 'eth-truncated';

export interface EthernetRepr {
  dst: Uint8Array;
  src: Uint8Array;
  etherType: number;
}

export function parseEthernet(
  buf: Uint8Array,
  off = 0,
  len = buf.length - off,
): EthernetRepr | EthernetError {
  if (len < ETH_HEADER_LEN || off + len > buf.length) return 'eth-truncated';
  return {
    dst: buf.slice(off, off + 6),
    src: buf.slice(off + 6, off + 12),
    etherType: read16(buf, off + ETH_TYPE),
  };
}

/** Writes the 14-byte header at buf[off]. */
export function emitEthernet(repr: EthernetRepr, buf: Uint8Array, off = 0): void {
  writeEthernetHeader(buf, off, repr.dst, repr.src, repr.etherType);
}

/** Hot-path form of emitEthernet without a repr object. */
export function writeEthernetHeader(
  buf: Uint8Array,
  off: number,
  dst: Uint8Array,
  src: Uint8Array,
  etherType: number,
): void {
  copyBytes(buf, off + ETH_DST, dst, 0, 6);
  copyBytes(buf, off + ETH_SRC, src, 0, 6);
  write16(buf, off + ETH_TYPE, etherType);
}

/** Writes a 6-byte MAC at buf[off] (unrolled: twice per forwarded frame). */
export function writeMac(buf: Uint8Array, off: number, mac: Uint8Array): void {
  buf[off] = mac[0]!;
  buf[off + 1] = mac[1]!;
  buf[off + 2] = mac[2]!;
  buf[off + 3] = mac[3]!;
  buf[off + 4] = mac[4]!;
  buf[off + 5] = mac[5]!;
}

export function macEquals(a: Uint8Array, aOff: number, b: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (a[aOff + i] !== b[i]) return false;
  return true;
}

export function parseMac(text: string): Uint8Array | undefined {
  const parts = text.trim().split(':');
  if (parts.length !== 6) return undefined;
  const mac = new Uint8Array(6);
  for (let i = 0; i < 6; i++) {
    const p = parts[i]!;
    if (!/^[0-9a-fA-F]{2}$/.test(p)) return undefined;
    mac[i] = Number.parseInt(p, 16);
  }
  return mac;
}

export function formatMac(mac: Uint8Array): string {
  return Array.from(mac.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(':');
}
