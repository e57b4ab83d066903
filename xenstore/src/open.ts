/** Shorthands for the usual ways in. */
import type { XenbusDevice } from '@moat/xen';
import { type ClientOptions, XenstoreClient } from './client.ts';
import { defaultSocketPath, SocketTransport } from './transports/socket.ts';
import { XenbusTransport } from './transports/xenbus.ts';

/** dom0 (or any privileged tool): connects to xenstored's unix socket ($XENSTORED_PATH or /var/run/xenstored/socket). */
export async function connectXenstoreSocket(
  path: string = defaultSocketPath(),
  options: ClientOptions & { connectTimeoutMs?: number } = {},
): Promise<XenstoreClient> {
  const transport = await SocketTransport.connect(path, { timeoutMs: options.connectTimeoutMs ?? 10_000 });
  return new XenstoreClient(transport, options);
}

/** A domU: a client over an opened /dev/xen/xenbus (e.g. `openXenbusDevice()` from @moat/xen). */
export function xenstoreOverXenbus(device: XenbusDevice, options: ClientOptions = {}): XenstoreClient {
  return new XenstoreClient(new XenbusTransport(device), options);
}
