import fc from 'fast-check';
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

describe('the TCP client under loss, duplication and reordering', () => {
  it('always reassembles exactly the answer (property)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 3000 }),
        fc.array(
          fc.record({
            size: fc.integer({ min: 1, max: 700 }),
            fate: fc.constantFrom('send', 'send', 'drop', 'dup', 'swap'),
          }),
          {
            minLength: 1,
            maxLength: 40,
          },
        ),
        fc.nat(),
        fc.nat(),
        (answer, plan, isnA, isnB) => {
          const c = new DnsTcpConnection({
            server: SERVER,
            serverPort: 53,
            localPort: 50000,
            isn: isnA,
            request: Uint8Array.of(1),
            nowMs: 0,
            timeoutMs: 1e9,
          });
          const [syn] = c.take();
          const serverIsn = isnB >>> 0;
          c.deliver(
            fromServer(syn!, { seq: serverIsn, ack: (syn!.seq + 1) >>> 0, flags: TCP_SYN | TCP_ACK }),
            0,
          );
          const data = c.take()[0]!;
          const ourAck = (data.seq + data.payload.length) >>> 0;
          const stream = new Uint8Array(answer.length + 2);
          stream[0] = answer.length >> 8;
          stream[1] = answer.length & 0xff;
          stream.set(answer, 2);
          let acked = 0; // server's view: bytes the client acknowledged
          for (let round = 0; round < 200 && c.result === undefined; round++) {
            // the server (re)sends from the last ACK, segment sizes and fates from the plan
            const segs: { seq: number; payload: Uint8Array }[] = [];
            // retransmissions may be cut differently and overlap what already arrived
            let off = Math.max(0, acked - (round % 4) * 5);
            for (const step of plan) {
              if (off >= stream.length) break;
              const payload = stream.subarray(off, off + step.size);
              const seg = { seq: (serverIsn + 1 + off) >>> 0, payload };
              off += payload.length;
              if (step.fate === 'drop' && round % 3 !== 2) continue; // every third round loses nothing
              segs.push(seg);
              if (step.fate === 'dup') segs.push(seg);
              if (step.fate === 'swap' && segs.length >= 2)
                segs.splice(segs.length - 2, 2, segs.at(-1)!, segs.at(-2)!);
            }
            for (const seg of segs)
              c.deliver(
                fromServer(syn!, { seq: seg.seq, ack: ourAck, flags: TCP_ACK, payload: seg.payload }),
                round,
              );
            for (const out of c.take()) {
              const got = (out.ack - (serverIsn + 1)) >>> 0;
              if (got <= stream.length && got > acked) acked = got;
            }
          }
          expect(c.result).toEqual({ ok: true, response: answer });
        },
      ),
      { numRuns: 300 },
    );
  });
});
