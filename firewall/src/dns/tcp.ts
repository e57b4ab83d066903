/**
 * The resolver's tiny sans-IO TCP client (RFC 9293 subset), for DNS over TCP
 * after a truncated UDP answer (RFC 7766): one connection carries one query,
 * framed with a 2-byte length (RFC 1035 §4.2.2). The engine only wraps the
 * segments it takes into frames (and validates checksums on the way in).
 *
 * SYN → SYN-ACK → ACK+data; in-order data is accumulated and ACKed (anything
 * out of order gets a duplicate ACK and is retransmitted by the server);
 * unacknowledged SYN/data/FIN are retransmitted with doubling timeouts; once
 * the whole answer is in we send FIN, and the connection is forgotten when both
 * FINs are acknowledged or after a short linger. Failures send RST.
 */
import type { DnsPacketIn, DnsSegmentOut } from './types.ts';
import { MAX_MESSAGE } from './wire.ts';

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

const WINDOW = 65535;

export interface DnsTcpOptions {
  server: Uint8Array;
  serverPort: number;
  localPort: number;
  /** Initial sequence number (random, from the resolver's RandomSource). */
  isn: number;
  /** The DNS message to send (without the length prefix). */
  request: Uint8Array;
  nowMs: number;
  /** First retransmission timeout (RFC 6298 says 1 s). */
  rtoMs?: number;
  maxRetransmits?: number;
  /** The whole exchange must finish within this. */
  timeoutMs?: number;
  /** How long to wait for the closing handshake after the answer. */
  lingerMs?: number;
}

export type DnsTcpResult = { ok: true; response: Uint8Array } | { ok: false; reason: string };

type State = 'syn-sent' | 'established' | 'closing' | 'closed';

const seqDiff = (a: number, b: number): number => (a - b) | 0;
const seqAdd = (a: number, n: number): number => (a + n) >>> 0;

export class DnsTcpConnection {
  readonly server: Uint8Array;
  readonly serverPort: number;
  readonly localPort: number;
  private state: State = 'syn-sent';
  private outgoing: DnsSegmentOut[] = [];
  private readonly isn: number;
  private sndUna: number;
  private sndNxt: number;
  private rcvNxt = 0;
  private readonly data: Uint8Array;
  private received = new Uint8Array(0);
  private receivedLength = 0;
  private finSent = false;
  private peerFin = false;
  private rto: number;
  private retransmits = 0;
  private rtxAt: number;
  private readonly deadline: number;
  private lingerUntil = 0;
  private readonly maxRetransmits: number;
  private readonly lingerMs: number;
  private outcome: DnsTcpResult | undefined;

  constructor(options: DnsTcpOptions) {
    this.server = options.server;
    this.serverPort = options.serverPort;
    this.localPort = options.localPort;
    this.isn = options.isn >>> 0;
    this.sndUna = this.isn;
    this.sndNxt = seqAdd(this.isn, 1);
    this.rto = options.rtoMs ?? 1000;
    this.maxRetransmits = options.maxRetransmits ?? 3;
    this.lingerMs = options.lingerMs ?? 2000;
    this.deadline = options.nowMs + (options.timeoutMs ?? 5000);
    this.rtxAt = options.nowMs + this.rto;
    if (options.request.length > MAX_MESSAGE) throw new RangeError('DNS message longer than 65535 bytes');
    this.data = new Uint8Array(2 + options.request.length);
    this.data[0] = options.request.length >> 8;
    this.data[1] = options.request.length & 0xff;
    this.data.set(options.request, 2);
    this.emit(this.isn, 0, TCP_SYN, new Uint8Array(0));
  }

  /** The answer or the failure, once known. */
  get result(): DnsTcpResult | undefined {
    return this.outcome;
  }

  /** True when nothing more will be sent or accepted; the owner forgets the connection. */
  get closed(): boolean {
    return this.state === 'closed';
  }

  take(): DnsSegmentOut[] {
    const out = this.outgoing;
    this.outgoing = [];
    return out;
  }

  /** A segment from the server to our port (the owner matched server, ports). */
  deliver(seg: Extract<DnsPacketIn, { transport: 'tcp' }>, nowMs: number): void {
    if (this.state === 'closed') return;
    const flags = seg.flags;
    if (flags & TCP_RST) {
      // accept a reset only if it is plausible: in SYN-SENT it must ACK our SYN, later be in window
      const valid =
        this.state === 'syn-sent'
          ? (flags & TCP_ACK) !== 0 && seg.ack >>> 0 === this.sndNxt
          : seqDiff(seg.seq, this.rcvNxt) >= 0 && seqDiff(seg.seq, this.rcvNxt) < WINDOW;
      if (valid) this.fail('connection reset by the server', false);
      return;
    }
    if (this.state === 'syn-sent') {
      if ((flags & (TCP_SYN | TCP_ACK)) !== (TCP_SYN | TCP_ACK) || seg.ack >>> 0 !== this.sndNxt) return;
      this.rcvNxt = seqAdd(seg.seq, 1);
      this.sndUna = this.sndNxt;
      this.state = 'established';
      this.retransmits = 0;
      this.sendData(nowMs);
      return;
    }
    if (flags & TCP_SYN) {
      // a retransmitted SYN-ACK: our ACK was lost; acknowledge again
      this.ack();
      return;
    }
    if (flags & TCP_ACK) this.onAck(seg.ack >>> 0, nowMs);
    const payload = seg.payload;
    const offset = seqDiff(this.rcvNxt, seg.seq);
    let advanced = false;
    if (payload.length > 0) {
      if (offset >= 0 && offset < payload.length && !this.peerFin && this.outcome === undefined) {
        this.append(payload.subarray(offset));
        advanced = true;
      } else {
        this.ack(); // duplicate or out of order: tell the server where we are
        return;
      }
    }
    if (flags & TCP_FIN && !this.peerFin && seqDiff(seqAdd(seg.seq, payload.length), this.rcvNxt) === 0) {
      this.rcvNxt = seqAdd(this.rcvNxt, 1);
      this.peerFin = true;
      advanced = true;
    }
    // the FIN sent on completion carries the acknowledgement; otherwise ACK what arrived
    if (advanced && !this.checkComplete(nowMs) && !this.closed) this.ack();
    if (this.peerFin && this.outcome === undefined) this.fail('server closed before the whole answer', true);
    this.maybeClosed();
  }

  tick(nowMs: number): void {
    if (this.state === 'closed') return;
    if (this.state === 'closing' && nowMs >= this.lingerUntil) {
      this.state = 'closed';
      return;
    }
    if (this.outcome === undefined && nowMs >= this.deadline) {
      this.fail('TCP timeout', true);
      return;
    }
    if (this.sndUna !== this.sndNxt && nowMs >= this.rtxAt) {
      if (this.retransmits >= this.maxRetransmits) {
        if (this.outcome === undefined) this.fail('TCP retransmissions exhausted', true);
        else this.state = 'closed';
        return;
      }
      this.retransmits++;
      this.rto *= 2;
      this.rtxAt = nowMs + this.rto;
      this.retransmit();
    }
  }

  private sendData(nowMs: number): void {
    this.emit(this.sndUna, this.rcvNxt, TCP_ACK | TCP_PSH, this.data);
    this.sndNxt = seqAdd(this.sndUna, this.data.length);
    this.rtxAt = nowMs + this.rto;
  }

  private retransmit(): void {
    if (this.state === 'syn-sent') {
      this.emit(this.isn, 0, TCP_SYN, new Uint8Array(0));
      return;
    }
    const dataEnd = seqAdd(this.isn, 1 + this.data.length);
    if (seqDiff(this.sndUna, dataEnd) < 0) {
      const from = seqDiff(this.sndUna, seqAdd(this.isn, 1));
      this.emit(this.sndUna, this.rcvNxt, TCP_ACK | TCP_PSH, this.data.subarray(from));
    }
    if (this.finSent) this.emit(dataEnd, this.rcvNxt, TCP_ACK | TCP_FIN, new Uint8Array(0));
  }

  private onAck(ack: number, nowMs: number): void {
    // acceptable: SND.UNA < ack <= SND.NXT
    if (seqDiff(ack, this.sndUna) > 0 && seqDiff(ack, this.sndNxt) <= 0) {
      this.sndUna = ack;
      this.retransmits = 0;
      this.rtxAt = nowMs + this.rto;
    }
  }

  private append(bytes: Uint8Array): void {
    const limit = 2 + MAX_MESSAGE;
    const room = limit - this.receivedLength;
    const take = Math.min(room, bytes.length);
    if (this.receivedLength + take > this.received.length) {
      let size = Math.max(1024, this.received.length * 2);
      while (size < this.receivedLength + take) size *= 2;
      const grown = new Uint8Array(Math.min(size, limit));
      grown.set(this.received.subarray(0, this.receivedLength));
      this.received = grown;
    }
    this.received.set(bytes.subarray(0, take), this.receivedLength);
    this.receivedLength += take;
    this.rcvNxt = seqAdd(this.rcvNxt, bytes.length);
  }

  /** Returns true when the answer just became complete (and our FIN went out). */
  private checkComplete(nowMs: number): boolean {
    if (this.outcome !== undefined || this.receivedLength < 2) return false;
    const length = (this.received[0]! << 8) | this.received[1]!;
    if (this.receivedLength < 2 + length) return false;
    this.outcome = { ok: true, response: this.received.slice(2, 2 + length) };
    // one query per connection: close our side now
    this.finSent = true;
    this.emit(this.sndNxt, this.rcvNxt, TCP_ACK | TCP_FIN, new Uint8Array(0));
    this.sndNxt = seqAdd(this.sndNxt, 1);
    this.rtxAt = nowMs + this.rto;
    this.state = 'closing';
    this.lingerUntil = nowMs + this.lingerMs;
    return true;
  }

  private maybeClosed(): void {
    if (this.state === 'closing' && this.peerFin && this.sndUna === this.sndNxt) this.state = 'closed';
  }

  private ack(): void {
    this.emit(this.sndNxt, this.rcvNxt, TCP_ACK, new Uint8Array(0));
  }

  private fail(reason: string, sendReset: boolean): void {
    if (this.outcome === undefined) this.outcome = { ok: false, reason };
    if (sendReset) this.emit(this.sndNxt, this.rcvNxt, TCP_RST | TCP_ACK, new Uint8Array(0));
    this.state = 'closed';
  }

  private emit(seq: number, ack: number, flags: number, payload: Uint8Array): void {
    this.outgoing.push({
      transport: 'tcp',
      server: this.server,
      serverPort: this.serverPort,
      localPort: this.localPort,
      seq: seq >>> 0,
      ack: ack >>> 0,
      flags,
      window: WINDOW,
      payload,
    });
  }
}
