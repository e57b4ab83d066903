import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIREWALL_VM_ENTRY, FIREWALL_VM_ENV } from '@moat/unikernel';

const here = dirname(fileURLToPath(import.meta.url));

/** A moat VM as the packages ship it. */
export interface PackagedVm {
  /** Template (qvm-template strips `qubes-template-`) and kernel-directory name. */
  readonly name: 'moat-firewall' | 'moat-viewer';
  /** One line of at most 79 characters (rpmlint), without '|' (qvm-template's separator). */
  readonly description: string;
  /**
   * template.conf: KEY=VALUE lines only (qvm-template-postprocess splits every line on '=', so a
   * comment or blank line would fail after the image was imported). `qrexec=1` belongs here once
   * the VM runs a qrexec agent; without one, the post-install start would wait 60 s and fail.
   */
  readonly templateConf: string;
  /**
   * What the image runs when `./moat package` is given no entry for this VM: the VM's own
   * entry, bundled with @moat/xen's addon.
   */
  readonly app: {
    readonly entry: string;
    /** More entries bundled beside main.js (moat-viewer's decode worker). */
    readonly bundles?: readonly { readonly path: string; readonly entry: string }[];
    /** NAME=value lines init adds to node's environment (sys-moat's malloc tunables). */
    readonly env?: string;
  };
}

export const packagedVms: readonly PackagedVm[] = [
  {
    name: 'moat-firewall',
    description: 'sys-moat: a small memory-safe firewall qube in place of sys-firewall',
    templateConf: 'virt-mode=pvh\nkernel=\nqrexec=1\n',
    app: { entry: FIREWALL_VM_ENTRY, env: FIREWALL_VM_ENV },
  },
  {
    name: 'moat-viewer',
    description: 'moat-viewer: a disposable image viewer qube with memory-safe decoders',
    templateConf: 'virt-mode=pvh\nkernel=\nqrexec=1\n',
    app: {
      entry: join(here, '..', '..', 'viewer', 'src', 'vm', 'main.ts'),
      bundles: [
        {
          path: '/app/decode-worker.js',
          entry: join(here, '..', '..', 'viewer', 'src', 'decoders', 'worker.ts'),
        },
      ],
    },
  },
];

/** rpm/specs, rpm/client, dom0-scripts */
export const specsDir = join(here, '..', 'specs');
export const clientDir = join(here, '..', 'client');
export const dom0ScriptsDir = join(here, '..', '..', 'dom0-scripts');
