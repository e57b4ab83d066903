/**
 * `@moat/netif` as sys-moat's devices: netfront to the netvm as the uplink, netback for the
 * client vifs dom0 gives us. Adapts names only (netif's FrameMeta is the engine's shape); the
 * client's IP comes from the backend's `ip` key, which the toolstack writes from the vif's
 * `ip=` (Qubes: the client's address, and its IPv6 when enabled).
 */
import {
  connectNetfront,
  type NetbackDevice,
  type NetDevice,
  type NetifXen,
  startNetback,
} from '@moat/netif';
import type { XenstoreClient } from '@moat/xenstore';
import type {
  ClientBackend,
  ClientLink,
  ClientVif,
  EthernetLink,
  NetworkDevices,
  UplinkDevice,
} from './devices.ts';
import type { VmLog } from './log.ts';

/** How long one netfront handshake step may wait for the netvm's backend. */
const UPLINK_TIMEOUT_MS = 30_000;

export function macBytes(text: string): Uint8Array {
  const parts = text.trim().split(':');
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) return new Uint8Array(6);
  return Uint8Array.from(parts, (p) => Number.parseInt(p, 16));
}

/** A netif device as an EthernetLink. */
function ethernet(device: NetDevice, mac: Uint8Array): EthernetLink {
  return {
    mac,
    mtu: device.mtu,
    send: (buf, off, len, meta) => {
      device.send(buf, meta, off, len);
    },
    onFrame: (handler) => {
      device.onFrame(handler);
    },
    onDown: (handler) => {
      device.onClose(handler);
    },
    close: () => device.close(),
  };
}

/** Qubes backends use fe:ff:ff:ff:ff:ff as their own MAC on a client's link. */
const BACKEND_MAC = new Uint8Array([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]);

function clientVif(device: NetbackDevice, xenstore: XenstoreClient): ClientVif {
  return {
    name: `vif${device.peer}.${device.devid}`,
    domid: device.peer,
    handle: device.devid,
    async connect(signal: AbortSignal): Promise<ClientLink> {
      const aborted = new Promise<never>((_, reject) => {
        if (signal.aborted) reject(new Error('aborted'));
        signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
      });
      aborted.catch(() => undefined);
      await Promise.race([device.connected(), aborted]);
      const ip = (await xenstore.tryRead(`${device.backendPath}/ip`)) ?? '';
      return { ...ethernet(device, BACKEND_MAC), clientMac: macBytes(device.mac), ip };
    },
  };
}

export function netifDevices(xen: NetifXen, xenstore: XenstoreClient, log: VmLog): NetworkDevices {
  const netifLog = (line: string) => log.info(`netif: ${line}`);
  const uplink: UplinkDevice = {
    async connect(signal) {
      const device = await connectNetfront({ xen, xenstore, log: netifLog, timeoutMs: UPLINK_TIMEOUT_MS });
      if (signal.aborted) {
        await device.close();
        throw new Error('aborted');
      }
      return ethernet(device, macBytes(device.mac));
    },
  };
  let stopService: (() => Promise<void>) | undefined;
  const clients: ClientBackend = {
    async start(listener) {
      const service = await startNetback({
        xen,
        xenstore,
        log: netifLog,
        onDevice: (device) => {
          const vif = clientVif(device, xenstore);
          device.onClose(() => listener.removed(vif));
          listener.added(vif);
        },
      });
      stopService = () => service.close();
    },
    async stop() {
      await stopService?.();
    },
  };
  return { uplink, clients };
}
