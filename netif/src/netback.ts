/**
 * netback: the backend of client domains' vifs. NetbackService watches our
 * `backend/vif` directory for devices the toolstack creates; each becomes a NetbackDevice.
 */
import type { DomainId } from '@moat/xen';
import type {
  FrameListener,
  FrameMeta,
  NetDevice,
  NetDeviceState,
  NetifCommonOptions,
  NetifFeatures,
  NetifResources,
  NetifStats,
} from './device.ts';

export interface NetbackOptions extends NetifCommonOptions {
  /** Our domain id (default `xen.domid`): we serve `/local/domain/<domid>/backend/vif`. */
  domid?: DomainId;
  /** Called for each client device as soon as the toolstack created it (before it connects). */
  onDevice?: (device: NetbackDevice) => void;
  /** What we offer (default: everything: sg, gso-tcpv4/6, ipv6 checksum offload). */
  features?: NetifFeatures;
}

export class NetbackDevice implements NetDevice {
  readonly peer: DomainId = 0;
  readonly devid: number = 0;
  readonly mac: string = '';
  readonly mtu: number = 1500;
  readonly state: NetDeviceState = 'connecting';
  /** `/local/domain/<us>/backend/vif/<peer>/<devid>` */
  readonly backendPath: string = '';
  /** The frontend's directory (the backend's `frontend` key). */
  readonly frontendPath: string = '';
  /** What the frontend asked for (valid once connected). */
  readonly frontendFeatures: Required<NetifFeatures> & { rxNotify: boolean; csumOffload: boolean } = {
    sg: false,
    gsoTcpv4: false,
    gsoTcpv6: false,
    ipv6CsumOffload: false,
    rxNotify: false,
    csumOffload: true,
  };
  send(_buf: Uint8Array, _meta?: FrameMeta, _off?: number, _len?: number): boolean {
    throw new Error('not implemented yet');
  }
  onFrame(_listener: FrameListener): () => void {
    throw new Error('not implemented yet');
  }
  onClose(_listener: (reason: string) => void): () => void {
    throw new Error('not implemented yet');
  }
  connected(): Promise<void> {
    throw new Error('not implemented yet');
  }
  stats(): NetifStats {
    throw new Error('not implemented yet');
  }
  resources(): NetifResources {
    throw new Error('not implemented yet');
  }
  close(): Promise<void> {
    throw new Error('not implemented yet');
  }
}

export class NetbackService {
  readonly domid: DomainId = 0;
  /** The devices live now. */
  devices(): NetbackDevice[] {
    throw new Error('not implemented yet');
  }
  /** Called for each new client device. Returns a function that removes the listener. */
  onDevice(_listener: (device: NetbackDevice) => void): () => void {
    throw new Error('not implemented yet');
  }
  /** Sums over live devices and those already gone. */
  stats(): NetifStats {
    throw new Error('not implemented yet');
  }
  /** The service's own watch plus every live device's. */
  resources(): NetifResources {
    throw new Error('not implemented yet');
  }
  /** Closes every device and stops watching. */
  close(): Promise<void> {
    throw new Error('not implemented yet');
  }
}

/** Starts serving: writes nothing until the toolstack creates a device under our `backend/vif`. */
export async function startNetback(_options: NetbackOptions): Promise<NetbackService> {
  throw new Error('not implemented yet');
}
