/**
 * What libxl does with a vif's xenstore directories (tools/libs/light/libxl_nic.c and
 * libxl_device.c, xen-project/xen @ c447b7308b13), for host tests: create both directories
 * with their owners and initial keys, and on detach write `online = 0`, `state = 5` to the
 * backend, wait (10 s, LIBXL_DESTROY_TIMEOUT) for the backend to reach 6, then remove both.
 */
import type { DomainId } from '@moat/xen';
import { type SimDomain, SimHypervisor } from '@moat/xen/sim';
import { XenstoreClient } from '@moat/xenstore';
import { XenstoredSim } from '@moat/xenstore/sim';
import type { NetifFeatures, NetifLog } from '../device.ts';
import { type NetbackDevice, type NetbackService, startNetback } from '../netback.ts';
import { connectNetfront, type NetfrontDevice } from '../netfront.ts';
import { backendPath, frontendPath, XenbusState } from '../wire.ts';

export interface SimVifOptions {
  frontend: DomainId;
  backend: DomainId;
  devid?: number;
  mac?: string;
  mtu?: number;
}

export class SimVifToolstack {
  /** The toolstack's own (dom0) connection, for the waits of a detach. */
  readonly client: XenstoreClient;

  constructor(readonly xs: XenstoredSim) {
    this.client = new XenstoreClient(xs.connect({ domid: 0 }));
  }

  /**
   * `xl network-attach`: both directories in one transaction (as libxl), each owned by its
   * domain and readable by the other, through a dom0 connection so watches fire.
   */
  async attach(o: SimVifOptions): Promise<{ frontendPath: string; backendPath: string }> {
    const devid = o.devid ?? 0;
    const f = frontendPath(o.frontend, devid);
    const b = backendPath(o.backend, o.frontend, devid);
    const mac = o.mac ?? `00:16:3e:5e:${hex(o.frontend & 0xff)}:${hex(devid & 0xff)}`;
    const mtu = String(o.mtu ?? 1500);
    const fPerms = [
      { domid: o.frontend, access: 'none' as const },
      { domid: o.backend, access: 'read' as const },
    ];
    const bPerms = [
      { domid: o.backend, access: 'none' as const },
      { domid: o.frontend, access: 'read' as const },
    ];
    const frontKeys: [string, string][] = [
      ['backend', b],
      ['backend-id', String(o.backend)],
      ['handle', String(devid)],
      ['mac', mac],
      ['mtu', mtu],
      ['trusted', '1'],
      ['state', String(XenbusState.Initialising)],
    ];
    const backKeys: [string, string][] = [
      ['frontend', f],
      ['frontend-id', String(o.frontend)],
      ['handle', String(devid)],
      ['mac', mac],
      ['mtu', mtu],
      ['online', '1'],
      ['script', '/etc/xen/scripts/vif-bridge'],
      ['type', 'vif'],
      ['state', String(XenbusState.Initialising)],
    ];
    await this.client.transaction(async (tx) => {
      for (const [dir, perms, keys] of [
        [f, fPerms, frontKeys],
        [b, bPerms, backKeys],
      ] as const) {
        await tx.mkdir(dir);
        await tx.setPermissions(dir, perms);
        for (const [k, v] of keys) {
          await tx.write(`${dir}/${k}`, v);
          await tx.setPermissions(`${dir}/${k}`, perms);
        }
      }
    });
    return { frontendPath: f, backendPath: b };
  }

  /**
   * `xl network-detach` with the backend in a driver domain (libxl_device.c,
   * libxl__initiate_device_generic_remove and device_hotplug): `online = 0` and `state = 5`,
   * wait for the backend's Closed, then for the driver domain to remove the backend
   * directory (each at most `timeoutMs`, libxl's 10 s), then remove what is left. Resolves
   * with whether both happened in time.
   */
  async detach(o: SimVifOptions, timeoutMs = 10_000): Promise<boolean> {
    const devid = o.devid ?? 0;
    const b = backendPath(o.backend, o.frontend, devid);
    await this.client.transaction(async (tx) => {
      await tx.write(`${b}/online`, '0');
      await tx.write(`${b}/state`, String(XenbusState.Closing));
    });
    let ok = true;
    try {
      await this.client.waitFor(
        `${b}/state`,
        (v) => {
          if (v === undefined) throw new Error(`${b}/state removed before libxl read Closed`);
          return v === String(XenbusState.Closed) ? true : undefined;
        },
        { timeoutMs },
      );
      await this.client.waitFor(`${b}`, (v) => (v === undefined ? true : undefined), { timeoutMs });
    } catch {
      ok = false;
    }
    await this.remove(o);
    return ok;
  }

  /** What libxl does for a destroyed domain's devices: both directories go at once. */
  async remove(o: SimVifOptions): Promise<void> {
    const devid = o.devid ?? 0;
    for (const path of [backendPath(o.backend, o.frontend, devid), frontendPath(o.frontend, devid)])
      await this.client.rm(path).catch((error: { code?: string }) => {
        if (error.code !== 'ENOENT') throw error;
      });
  }

  close(): void {
    this.client.close();
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}

export interface SimNetifPair {
  hv: SimHypervisor;
  xs: XenstoredSim;
  toolstack: SimVifToolstack;
  backendDomain: SimDomain;
  frontendDomain: SimDomain;
  backendXenstore: XenstoreClient;
  frontendXenstore: XenstoreClient;
  netback: NetbackService;
  /** The netback's device for the frontend's vif 0. */
  back: NetbackDevice;
  front: NetfrontDevice;
  /** Closes both ends and the xenstore clients. */
  close(): Promise<void>;
}

/** A netback domain serving a netfront domain's vif 0 on a fresh SimHypervisor, both connected. */
export async function simNetifPair(
  options: {
    mtu?: number;
    backendFeatures?: NetifFeatures;
    frontendFeatures?: NetifFeatures;
    log?: NetifLog;
  } = {},
): Promise<SimNetifPair> {
  const hv = new SimHypervisor();
  const xs = new XenstoredSim();
  const backendDomain = hv.createDomain({ name: 'sys-moat' });
  const frontendDomain = hv.createDomain({ name: 'client' });
  xs.createDomain(backendDomain.domid, backendDomain.name);
  xs.createDomain(frontendDomain.domid, frontendDomain.name);
  const toolstack = new SimVifToolstack(xs);
  const backendXenstore = new XenstoreClient(xs.connect({ domid: backendDomain.domid }));
  const frontendXenstore = new XenstoreClient(xs.connect({ domid: frontendDomain.domid }));
  const log = options.log ?? (() => undefined);
  let resolveBack: (d: NetbackDevice) => void = () => undefined;
  const backReady = new Promise<NetbackDevice>((r) => {
    resolveBack = r;
  });
  const netback = await startNetback({
    xen: backendDomain,
    xenstore: backendXenstore,
    log,
    removeClosedAfterMs: 0,
    ...(options.backendFeatures ? { features: options.backendFeatures } : {}),
    onDevice: (d) => resolveBack(d),
  });
  await toolstack.attach({
    frontend: frontendDomain.domid,
    backend: backendDomain.domid,
    devid: 0,
    ...(options.mtu !== undefined ? { mtu: options.mtu } : {}),
  });
  const front = await connectNetfront({
    xen: frontendDomain,
    xenstore: frontendXenstore,
    devid: 0,
    log,
    ...(options.frontendFeatures ? { features: options.frontendFeatures } : {}),
  });
  const back = await backReady;
  await back.connected();
  return {
    hv,
    xs,
    toolstack,
    backendDomain,
    frontendDomain,
    backendXenstore,
    frontendXenstore,
    netback,
    back,
    front,
    async close() {
      await front.close();
      await netback.close();
      toolstack.close();
      backendXenstore.close();
      frontendXenstore.close();
    },
  };
}
