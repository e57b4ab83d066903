/**
 * /dev/xen/xenbus in a domU, through the XenbusDevice interface of @moat/xen (the native
 * addon opens the device; sim and tests plug in a fake). The Linux driver
 * (drivers/xen/xenbus/xenbus_dev_frontend.c) buffers one message of at most 4096 bytes
 * header included, handles watches itself (so watch replies and events are synthesized by
 * the kernel), tracks transactions per open file, and fails write() with an errno for a
 * watch xenstored refused.
 */
import type { XenbusDevice } from '@moat/xen';
import { TransportListeners, type XenstoreTransport } from '../transport.ts';
import { XENBUS_DEVICE_PAYLOAD_MAX } from '../wire.ts';

export class XenbusTransport implements XenstoreTransport {
  readonly description: string;
  readonly maxRequestPayload = XENBUS_DEVICE_PAYLOAD_MAX;
  private readonly listeners = new TransportListeners();
  private readonly detach: (() => void)[] = [];

  constructor(
    private readonly device: XenbusDevice,
    description = 'xenbus /dev/xen/xenbus',
  ) {
    this.description = description;
    this.detach.push(device.onData((chunk) => this.listeners.data(chunk)));
    this.detach.push(device.onError((error) => this.finish(error)));
  }

  send(message: Uint8Array): void {
    if (this.listeners.closed) throw new Error(`${this.description} is closed`);
    // One write() per whole message: the driver then never holds a partial message of ours.
    this.device.write(message);
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

  private finish(error?: Error): void {
    if (this.listeners.closed) return;
    for (const d of this.detach.splice(0)) d();
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
