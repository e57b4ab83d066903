/**
 * Test helpers: a seeded RandomSource and a scripted upstream DNS server that
 * answers the resolver's datagrams and speaks just enough TCP. Not exported
 * from index.ts.
 */
import type { RandomSource } from './resolver.ts';
import { TCP_ACK, TCP_FIN, TCP_SYN } from './tcp.ts';
import type { DnsPacketIn, DnsPacketOut, DnsSegmentOut } from './types.ts';
import {
  CLASS_IN,
  type DnsMessage,
  type DnsRecord,
  decodeMessage,
  emptyHeader,
  encodeMessage,
  TYPE_A,
  TYPE_AAAA,
  TYPE_CNAME,
} from './wire.ts';

export function seededRandomSource(seed: number): RandomSource {
  let s = seed >>> 0 || 1;
  return {
    fill(bytes) {
      for (let i = 0; i < bytes.length; i++) {
        s ^= s << 13;
        s >>>= 0;
        s ^= s >>> 17;
        s ^= s << 5;
        s >>>= 0;
        bytes[i] = s & 0xff;
      }
    },
  };
}

export function a(name: string, addr: number[], ttl = 300): DnsRecord {
  return { name, type: TYPE_A, class: CLASS_IN, ttl, data: { kind: 'a', address: Uint8Array.from(addr) } };
}
export function aaaa(name: string, addr: number[], ttl = 300): DnsRecord {
  return {
    name,
    type: TYPE_AAAA,
    class: CLASS_IN,
    ttl,
    data: { kind: 'aaaa', address: Uint8Array.from(addr) },
  };
}
export function cname(name: string, target: string, ttl = 300): DnsRecord {
  return { name, type: TYPE_CNAME, class: CLASS_IN, ttl, data: { kind: 'cname', target } };
}

/** Builds the answer to a query datagram's payload. */
export function reply(
  query: Uint8Array,
  answers: DnsRecord[],
  patch: Partial<DnsMessage['header']> = {},
  authorities: DnsRecord[] = [],
): Uint8Array {
  const q = decodeMessage(query);
  if (!q.ok) throw new Error(q.reason);
  return encodeMessage({
    header: { ...emptyHeader(q.message.header.id), qr: true, rd: true, ra: true, ...patch },
    questions: q.message.questions,
    answers,
    authorities,
    additionals: [],
  });
}

export function asUdpReply(out: DnsPacketOut, payload: Uint8Array): DnsPacketIn {
  return {
    transport: 'udp',
    server: out.server,
    serverPort: out.serverPort,
    localPort: out.localPort,
    payload,
  };
}

export function questionOf(out: DnsPacketOut): { id: number; name: string; type: number } {
  const m = decodeMessage(out.payload);
  if (!m.ok) throw new Error(m.reason);
  return { id: m.message.header.id, name: m.message.questions[0]!.name, type: m.message.questions[0]!.type };
}

/** A segment from the server, in reply to our `seg`. */
export function fromServer(
  seg: DnsSegmentOut,
  fields: { seq: number; ack: number; flags: number; payload?: Uint8Array },
): Extract<DnsPacketIn, { transport: 'tcp' }> {
  return {
    transport: 'tcp',
    server: seg.server,
    serverPort: seg.serverPort,
    localPort: seg.localPort,
    seq: fields.seq >>> 0,
    ack: fields.ack >>> 0,
    flags: fields.flags,
    window: 65535,
    payload: fields.payload ?? new Uint8Array(0),
  };
}

export { TCP_ACK, TCP_FIN, TCP_SYN };
