/**
 * The guest of lab/test/gui.lab.test.ts and `./moat bench gui`: one bundle, two roles (args.role). The VM half
 * (@moat/gui-agent/lab `guiVmSteps`) is an application on our GUI agent in a PV domU, sharing
 * its window buffers with gntalloc; the dom0 half (`guiDom0Steps`) is our strict lab GUI daemon
 * mapping them with gntdev and driving the window. They meet only through Xen (vchan port 6000
 * and grants).
 */
import { existsSync } from 'node:fs';
import { guiDom0Steps, guiVmSteps } from '@moat/gui-agent/lab';
import { xenVchanTransport } from '@moat/vchan';
import { openNativeDomain } from '@moat/xen';
import { type GuestStep, guestArgs, guestLog, guestMain } from '../guest.ts';

const DOMU_ADDON = '/mnt/app/moat_xen.node';
if (!process.env.MOAT_XEN_ADDON && existsSync(DOMU_ADDON)) process.env.MOAT_XEN_ADDON = DOMU_ADDON;

export interface GuiLabArgs {
  role: 'vm' | 'dom0';
  /** dom0 only: the VM's domain id. */
  peer?: number;
  /** Run only these steps (the bench runs the connection and bench steps); default all. */
  only?: string[];
}

const args = guestArgs() as unknown as GuiLabArgs;

function only(steps: Record<string, GuestStep>): Record<string, GuestStep> {
  const names = args.only;
  return names ? Object.fromEntries(Object.entries(steps).filter(([name]) => names.includes(name))) : steps;
}

function steps(): Record<string, GuestStep> {
  try {
    const domain = openNativeDomain();
    const transport = xenVchanTransport(domain);
    const log = (text: string) => guestLog(text);
    return only(
      args.role === 'dom0'
        ? guiDom0Steps({
            transport,
            grants: domain.grantMapper,
            copier: domain.grantCopier,
            vmDomain: args.peer ?? -1,
            log,
          })
        : guiVmSteps({ transport, grants: domain.grantSharer, guiDomain: 0, log }),
    );
  } catch (error) {
    // e.g. the addon did not load: report it as a failed step rather than dying silently.
    return {
      setup: () => {
        throw error;
      },
    };
  }
}

void guestMain(steps()).then(() => {
  setTimeout(() => process.exit(), 3000).unref();
});
