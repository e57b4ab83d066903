/** Shared fixtures of the engine tests (not part of the public API). */

import { parseIpText } from '../wire/address.ts';
import { checksum, fold, pseudoSum4, pseudoSum6, read16, sumWords } from '../wire/checksum.ts';
import type { EngineConfig, FrameMeta, FrameSink } from './config.ts';
import { FirewallEngine } from './engine.ts';

export const ip = (s: string): Uint8Array => parseIpText(s)!;

export const UP4 = ip('10.137.0.5');
export const NETVM4 = ip('10.137.0.1');
export const UP6 = ip('fd09:24ef:4179::a89:5');
export const GW6 = ip('fd09:24ef:4179::a89:5');
export const UP_MAC = new Uint8Array([0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x00]);
export const NETVM_MAC = new Uint8Array([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]);
export const C1 = ip('10.137.0.20');
export const C2 = ip('10.137.0.21');
export const C1_6 = ip('fd09:24ef:4179::a89:14');
export const C1_MAC = new Uint8Array([0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x01]);
export const C2_MAC = new Uint8Array([0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x02]);
export const REMOTE = ip('93.184.216.34');
export const REMOTE6 = ip('2606:2800:220:1:248:1893:25c8:1946');
export const UPSTREAM_DNS = ip('10.139.1.1');

export interface Sent {
  link: number;
  bytes: Uint8Array;
  meta: FrameMeta;
}

export class CaptureSink implements FrameSink {
  frames: Sent[] = [];
  send(link: number, buf: Uint8Array, off: number, len: number, meta: FrameMeta): void {
    this.frames.push({ link, bytes: buf.slice(off, off + len), meta: { ...meta } });
  }
  take(): Sent[] {
    const f = this.frames;
    this.frames = [];
    return f;
  }
}

export function makeEngine(extra: Partial<EngineConfig> = {}): { engine: FirewallEngine; sink: CaptureSink } {
  const sink = new CaptureSink();
  const engine = new FirewallEngine(
    {
      uplink: { mac: UP_MAC, ip4: UP4, gateway4: NETVM4, ip6: UP6, gateway6: ip('fd09:24ef:4179::a89:1') },
      clientGateway4: UP4,
      clientGateway6: GW6,
      dns: { virtual: [ip('10.139.1.1'), ip('10.139.1.2')], upstream: [UPSTREAM_DNS] },
      seed: 42,
      ...extra,
    },
    sink,
  );
  return { engine, sink };
}

/** Whether the IPv4/IPv6 header and transport checksums of an Ethernet frame are right. */
export function checksumsValid(f: Uint8Array): boolean {
  const type = read16(f, 12);
  if (type === 0x0800) {
    const hl = (f[14]! & 0xf) * 4;
    if (checksum(f, 14, hl) !== 0) return false;
    const total = read16(f, 16);
    const proto = f[23]!;
    if ((read16(f, 20) & 0x3fff) !== 0) return true; // fragment: transport sum spans fragments
    const l4 = 14 + hl;
    const n = total - hl;
    if (proto === 1) return checksum(f, l4, n) === 0;
    if (proto === 17 && read16(f, l4 + 6) === 0) return true;
    if (proto === 6 || proto === 17) return fold(sumWords(f, l4, n, pseudoSum4(f, 14, proto, n))) === 0xffff;
    return true;
  }
  if (type === 0x86dd) {
    const n = read16(f, 18);
    const proto = f[20]!;
    if (proto === 6 || proto === 17 || proto === 58)
      return fold(sumWords(f, 54, n, pseudoSum6(f, 14, proto, n))) === 0xffff;
    return true;
  }
  return true;
}

export const meta0 = (): FrameMeta => ({ csumBlank: false, dataValidated: false, gsoType: 0, gsoSize: 0 });
