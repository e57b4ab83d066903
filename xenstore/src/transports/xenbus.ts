/**
 * /dev/xen/xenbus in a domU, through the XenbusDevice interface of @moat/xen (the native
 * addon opens the device; sim and tests plug in a fake). The Linux driver
 * (drivers/xen/xenbus/xenbus_dev_frontend.c) buffers one message of at most 4096 bytes
 * header included, handles watches itself (so watch replies and events are synthesized by
 * the kernel), tracks transactions per open file, and fails write() with an errno for a
 * watch xenstored refused.
 *
 * One request at a time per open file: the driver hands a forwarded request to its xenbus
 * thread by reference to the file's single message buffer (xenbus_dev_request_and_reply():
 * `vec->iov_base = msg + 1`, msg being u->u.buffer) and returns from write() before that
 * thread has copied the body into the ring. The next write() reuses the buffer, so a request
 * still queued in the kernel goes out with the next request's bytes under its own header (seen
 * on real Xen: pipelined writes lost, reads in a transaction repeated a path, a MKDIR refused
 * with ENOMEM). The reply is the only sign that the kernel is done with the buffer, so the next
 * message is written when the previous one has been answered. libxenstore never pipelines on
 * the device either (one request per handle at a time).
 */
import type { XenbusDevice } from '@moat/xen';
import { TransportListeners, type XenstoreTransport } from '../transport.ts';
import {
  encodeMessage,
  Field,
  HEADER_SIZE,
  isXsErrorName,
  joinStrings,
  XENBUS_DEVICE_PAYLOAD_MAX,
  XsType,
} from '../wire.ts';

/** Messages waiting for the device (bounded by the client's request ids, at most 2^32 - 1). */
const QUEUE_MAX = 65_536;

export class XenbusTransport implements XenstoreTransport {
  readonly description: string;
  readonly maxRequestPayload = XENBUS_DEVICE_PAYLOAD_MAX;
  private readonly listeners = new TransportListeners();
  private readonly detach: (() => void)[] = [];
  /** Messages written later, each after the previous one's reply. */
  private readonly queue: Uint8Array[] = [];
  /** A written message still waits for its reply. */
  private awaitingReply = false;
  /** Incoming framing: the header being assembled and the payload bytes still to pass. */
  private readonly header = new Uint8Array(HEADER_SIZE);
  private headerFill = 0;
  private payloadLeft = 0;

  constructor(
    private readonly device: XenbusDevice,
    description = 'xenbus /dev/xen/xenbus',
  ) {
    this.description = description;
    this.detach.push(device.onData((chunk) => this.received(chunk)));
    this.detach.push(device.onError((error) => this.finish(error)));
  }

  send(message: Uint8Array): void {
    if (this.listeners.closed) throw new Error(`${this.description} is closed`);
    if (this.awaitingReply || this.queue.length > 0) {
      if (this.queue.length >= QUEUE_MAX)
        throw new Error(`${this.description}: ${QUEUE_MAX} messages queued`);
      // A copy: the caller may reuse its buffer.
      this.queue.push(message.slice());
      return;
    }
    this.write(message);
  }

  onData(listener: (chunk: Uint8Array) => void): () => void {
    return this.listeners.onData(listener);
  }

  onClose(listener: (error?: Error) => void): () => void {
    return this.listeners.onClose(listener);
  }

  close(): void {
    if (this.listeners.closed) return;
    try {
      this.device.close();
    } finally {
      this.finish();
    }
  }

  /** Writes one whole message (throws what the device throws; then no reply is expected). */
  private write(message: Uint8Array): void {
    // One write() per whole message: the driver then never holds a partial message of ours.
    this.device.write(message);
    // The driver forwards XS_TRANSACTION_END with tx_id 0 and drops its reply
    // (xenbus_dev_queue_reply: WARN_ON): waiting for it would stall this file forever.
    const view = new DataView(message.buffer, message.byteOffset, message.length);
    const type = view.getUint32(Field.TYPE, true);
    const txId = view.getUint32(Field.TX_ID, true);
    this.awaitingReply = !(type === XsType.TRANSACTION_END && txId === 0);
  }

  /** Writes queued messages until one waits for a reply. A refused write becomes its XS_ERROR reply. */
  private pump(): void {
    while (!this.awaitingReply && !this.listeners.closed) {
      const next = this.queue.shift();
      if (!next) return;
      try {
        this.write(next);
      } catch (error) {
        const code = (error as { code?: unknown } | null)?.code;
        if (typeof code !== 'string' || !isXsErrorName(code)) {
          this.finish(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        // What the client would have made of the throw had the write happened in send().
        const view = new DataView(next.buffer, next.byteOffset, next.length);
        this.listeners.data(
          encodeMessage(
            XsType.ERROR,
            view.getUint32(Field.REQ_ID, true),
            view.getUint32(Field.TX_ID, true),
            joinStrings([code]),
          ),
        );
      }
    }
  }

  private received(chunk: Uint8Array): void {
    // Count the replies in the byte stream (watch events are not replies) before passing it on.
    let replies = 0;
    for (let at = 0; at < chunk.length; ) {
      if (this.headerFill < HEADER_SIZE) {
        const n = Math.min(HEADER_SIZE - this.headerFill, chunk.length - at);
        this.header.set(chunk.subarray(at, at + n), this.headerFill);
        this.headerFill += n;
        at += n;
        if (this.headerFill < HEADER_SIZE) break;
        const view = new DataView(this.header.buffer);
        this.payloadLeft = view.getUint32(Field.LEN, true);
        if (view.getUint32(Field.TYPE, true) !== XsType.WATCH_EVENT) replies++;
      }
      const n = Math.min(this.payloadLeft, chunk.length - at);
      this.payloadLeft -= n;
      at += n;
      if (this.payloadLeft === 0) this.headerFill = 0;
    }
    this.listeners.data(chunk);
    if (replies > 0) {
      this.awaitingReply = false;
      this.pump();
    }
  }

  private finish(error?: Error): void {
    if (this.listeners.closed) return;
    for (const d of this.detach.splice(0)) d();
    this.queue.length = 0;
    if (error) {
      try {
        this.device.close();
      } catch {
        // The device already failed; closing it is best effort.
      }
    }
    this.listeners.close(error);
  }
}
