/**
 * /dev/xen/xenbus in a domU, through the XenbusDevice interface of @moat/xen (the native
 * addon opens the device; sim and tests plug in a fake). The Linux driver
 * (drivers/xen/xenbus/xenbus_dev_frontend.c) buffers one message of at most 4096 bytes
 * header included, handles watches itself (so watch replies and events are synthesized by
 * the kernel), tracks transactions per open file, and fails write() with an errno for a
 * watch xenstored refused.
 */
import type { XenbusDevice } from '@moat/xen';
import type { XenstoreTransport } from '../transport.ts';
import { XENBUS_DEVICE_PAYLOAD_MAX } from '../wire.ts';

export class XenbusTransport implements XenstoreTransport {
  readonly description: string;
  readonly maxRequestPayload = XENBUS_DEVICE_PAYLOAD_MAX;
  private readonly dataListeners = new Set<(chunk: Uint8Array) => void>();
  private readonly closeListeners = new Set<(error?: Error) => void>();
  private readonly detach: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly device: XenbusDevice,
    description = 'xenbus /dev/xen/xenbus',
  ) {
    this.description = description;
    this.detach.push(device.onData((chunk) => this.emitData(chunk)));
    this.detach.push(device.onError((error) => this.finish(error)));
  }

  send(message: Uint8Array): void {
    if (this.closed) throw new Error(`${this.description} is closed`);
    // One write() per whole message: the driver then never holds a partial message of ours.
    this.device.write(message);
  }

  onData(listener: (chunk: Uint8Array) => void): () => void {
    this.dataListeners.add(listener);
    return () => this.dataListeners.delete(listener);
  }

  onClose(listener: (error?: Error) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  close(): void {
    if (this.closed) return;
    try {
      this.device.close();
    } finally {
      this.finish();
    }
  }

  private emitData(chunk: Uint8Array): void {
    if (this.closed) return;
    for (const l of this.dataListeners) l(chunk);
  }

  private finish(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    for (const d of this.detach.splice(0)) d();
    if (error) {
      try {
        this.device.close();
      } catch {
        // The device already failed; closing it is best effort.
      }
    }
    for (const l of [...this.closeListeners]) l(error);
    this.closeListeners.clear();
    this.dataListeners.clear();
  }
}
