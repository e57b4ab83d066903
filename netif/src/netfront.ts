/** netfront: our vif, connected to its backend (the upstream netvm). */
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

export interface NetfrontOptions extends NetifCommonOptions {
  /** Our device (default 0). */
  devid?: number;
  /** Checked against the frontend's `backend-id` when given (default: whatever it says). */
  backendDomid?: DomainId;
  /** What we ask the backend for (default everything). */
  features?: NetifFeatures;
  /** How long to wait for the backend at each handshake step (default 30 s). */
  timeoutMs?: number;
}

export class NetfrontDevice implements NetDevice {
  readonly peer: DomainId = 0;
  readonly devid: number = 0;
  readonly mac: string = '';
  readonly mtu: number = 1500;
  readonly state: NetDeviceState = 'connecting';
  /** `/local/domain/<us>/device/vif/<devid>` */
  readonly frontendPath: string = '';
  /** The backend's directory (our `backend` key). */
  readonly backendPath: string = '';
  /** What the backend offers (valid once connected). */
  readonly backendFeatures: Required<NetifFeatures> = {
    sg: false,
    gsoTcpv4: false,
    gsoTcpv6: false,
    ipv6CsumOffload: false,
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

/** Connects our device `devid` (default 0) and resolves once both ends are Connected. */
export async function connectNetfront(_options: NetfrontOptions): Promise<NetfrontDevice> {
  throw new Error('not implemented yet');
}
