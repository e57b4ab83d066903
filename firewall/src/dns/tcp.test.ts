import { describe, expect, it } from 'vitest';
import { dnsServersFromQubesDb, StubResolver } from './resolver.ts';
import { DnsTcpConnection, TCP_PSH, TCP_RST } from './tcp.ts';
import {
  a,
  asUdpReply,
  fromServer,
  questionOf,
  reply,
  seededRandomSource,
  TCP_ACK,
  TCP_FIN,
  TCP_SYN,
} from './test-server.ts';
import type { DnsDatagramOut, DnsSegmentOut } from './types.ts';

const SERVER = Uint8Array.of(10, 139, 1, 1);

function conn(request = Uint8Array.of(1, 2, 3), nowMs = 0) {
  return new DnsTcpConnection({
    server: SERVER,
    serverPort: 53,
    localPort: 50000,
    isn: 0xfffffff0,
    request,
    nowMs,
  });
}

describe('the resolver TCP client', () => {
  it('opens, sends the length-prefixed query, reassembles a split answer, ACKs and closes', () => {
    const c = conn(Uint8Array.of(0xaa, 0xbb));
    const [syn] = c.take();
    expect(syn).toMatchObject({
      transport: 'tcp',
      seq: 0xfffffff0,
      flags: TCP_SYN,
      localPort: 50000,
      serverPort: 53,
    });
    c.deliver(fromServer(syn!, { seq: 1000, ack: 0xfffffff1, flags: TCP_SYN | TCP_ACK }), 10);
    const [data] = c.take();
    expect(data).toMatchObject({
      seq: 0xfffffff1,
      ack: 1001,
      flags: TCP_ACK | TCP_PSH,
      payload: Uint8Array.of(0, 2, 0xaa, 0xbb),
    });
    // the answer (5 bytes) in two segments, the length prefix split across them; seq wraps past 2^32
    c.deliver(
      fromServer(syn!, { seq: 1001, ack: 0xfffffff5, flags: TCP_ACK, payload: Uint8Array.of(0) }),
      20,
    );
    expect(c.take()).toEqual([expect.objectContaining({ flags: TCP_ACK, ack: 1002 })]);
    expect(c.result).toBeUndefined();
    c.deliver(
      fromServer(syn!, {
        seq: 1002,
        ack: 0xfffffff5,
        flags: TCP_ACK | TCP_PSH,
        payload: Uint8Array.of(5, 1, 2, 3, 4, 5),
      }),
      30,
    );
    expect(c.result).toEqual({ ok: true, response: Uint8Array.of(1, 2, 3, 4, 5) });
    const [fin] = c.take();
    expect(fin).toMatchObject({ flags: TCP_ACK | TCP_FIN, seq: 0xfffffff5, ack: 1008 });
    expect(c.closed).toBe(false);
    c.deliver(fromServer(syn!, { seq: 1008, ack: 0xfffffff6, flags: TCP_ACK | TCP_FIN }), 40);
    expect(c.take()).toEqual([expect.objectContaining({ flags: TCP_ACK, seq: 0xfffffff6, ack: 1009 })]);
    expect(c.closed).toBe(true);
  });

  it('retransmits a lost SYN with a doubling timeout, then gives up', () => {
    const c = conn();
    c.take();
    c.tick(999);
    expect(c.take()).toEqual([]);
    c.tick(1000);
    expect(c.take()).toEqual([expect.objectContaining({ flags: TCP_SYN })]);
    c.tick(2999);
    expect(c.take()).toEqual([]);
    c.tick(3000);
    expect(c.take()).toEqual([expect.objectContaining({ flags: TCP_SYN })]);
    c.tick(4999);
    expect(c.result).toBeUndefined();
    c.tick(5000);
    expect(c.result).toEqual({ ok: false, reason: 'TCP timeout' });
    expect(c.take()).toEqual([expect.objectContaining({ flags: TCP_RST | TCP_ACK })]);
    expect(c.closed).toBe(true);
  });

  it('retransmits unacknowledged query data', () => {
    const c = conn(Uint8Array.of(9));
    const [syn] = c.take();
    c.deliver(fromServer(syn!, { seq: 1, ack: 0xfffffff1, flags: TCP_SYN | TCP_ACK }), 100);
    c.take();
    c.tick(1100);
    expect(c.take()).toEqual([
      expect.objectContaining({ flags: TCP_ACK | TCP_PSH, payload: Uint8Array.of(0, 1, 9) }),
    ]);
  });

  it('answers out-of-order data with a duplicate ACK and does not take it', () => {
    const c = conn();
    const [syn] = c.take();
    c.deliver(fromServer(syn!, { seq: 500, ack: 0xfffffff1, flags: TCP_SYN | TCP_ACK }), 0);
    c.take();
    c.deliver(
      fromServer(syn!, { seq: 510, ack: 0xfffffff6, flags: TCP_ACK, payload: Uint8Array.of(0, 1, 7) }),
      1,
    );
    expect(c.take()).toEqual([expect.objectContaining({ flags: TCP_ACK, ack: 501 })]);
    expect(c.result).toBeUndefined();
    c.deliver(
      fromServer(syn!, { seq: 501, ack: 0xfffffff6, flags: TCP_ACK, payload: Uint8Array.of(0, 1, 7) }),
      2,
    );
    expect(c.result).toEqual({ ok: true, response: Uint8Array.of(7) });
  });

  it('accepts only a plausible reset, and fails on one', () => {
    const c = conn();
    const [syn] = c.take();
    c.deliver(fromServer(syn!, { seq: 0, ack: 12345, flags: TCP_RST | TCP_ACK }), 0); // wrong ack: ignored
    expect(c.result).toBeUndefined();
    c.deliver(fromServer(syn!, { seq: 0, ack: 0xfffffff1, flags: TCP_RST | TCP_ACK }), 0);
    expect(c.result).toEqual({ ok: false, reason: 'connection reset by the server' });
  });

  it('fails when the server closes before the whole answer', () => {
    const c = conn();
    const [syn] = c.take();
    c.deliver(fromServer(syn!, { seq: 0, ack: 0xfffffff1, flags: TCP_SYN | TCP_ACK }), 0);
    c.deliver(
      fromServer(syn!, {
        seq: 1,
        ack: 0xfffffff6,
        flags: TCP_ACK | TCP_FIN,
        payload: Uint8Array.of(0, 9, 1),
      }),
      0,
    );
    expect(c.result).toEqual({ ok: false, reason: 'server closed before the whole answer' });
  });
});

describe('truncated answers', () => {
  it('are asked again over TCP to the same server', () => {
    let now = 0;
    const resolver = new StubResolver({
      servers: dnsServersFromQubesDb(['10.139.1.1', '10.139.1.2']),
      now: () => now,
      random: seededRandomSource(7),
    });
    resolver.retain('big.example', 4);
    const [q] = resolver.takeOutgoing() as DnsDatagramOut[];
    resolver.deliver(asUdpReply(q!, reply(q!.payload, [], { tc: true })), now);
    const [syn] = resolver.takeOutgoing() as DnsSegmentOut[];
    expect(syn).toMatchObject({ transport: 'tcp', server: SERVER, serverPort: 53, flags: TCP_SYN });
    expect(resolver.stats.tcpQueries).toBe(1);
    now = 5;
    expect(
      resolver.deliver(fromServer(syn!, { seq: 77, ack: syn!.seq + 1, flags: TCP_SYN | TCP_ACK }), now),
    ).toBe(true);
    const [data] = resolver.takeOutgoing() as DnsSegmentOut[];
    const query = data!.payload.subarray(2);
    expect(questionOf({ ...data!, payload: query })).toMatchObject({ name: 'big.example' });
    const addrs = Array.from({ length: 40 }, (_, i) => a('big.example', [10, 0, i >> 8, i & 0xff]));
    const answer = reply(query, addrs);
    const framed = new Uint8Array(answer.length + 2);
    framed[0] = answer.length >> 8;
    framed[1] = answer.length & 0xff;
    framed.set(answer, 2);
    const ackOfData = (data!.seq + data!.payload.length) >>> 0;
    // in segments of 536 bytes (the default MSS)
    let seq = 78;
    for (let off = 0; off < framed.length; off += 536) {
      const part = framed.subarray(off, off + 536);
      resolver.deliver(fromServer(syn!, { seq, ack: ackOfData, flags: TCP_ACK, payload: part }), now);
      seq += part.length;
    }
    const st = resolver.answer('big.example', 4);
    expect(st.state).toBe('resolved');
    if (st.state === 'resolved') expect(st.addresses).toHaveLength(40);
    const closing = resolver.takeOutgoing() as DnsSegmentOut[];
    expect(closing.some((s) => (s.flags & TCP_FIN) !== 0)).toBe(true);
    // the server's FIN is still taken by the resolver (the port stays ours until closed)
    expect(
      resolver.deliver(fromServer(syn!, { seq, ack: ackOfData + 1, flags: TCP_ACK | TCP_FIN }), now),
    ).toBe(true);
    expect(resolver.ownsPort('tcp', syn!.localPort)).toBe(false);
  });
});
