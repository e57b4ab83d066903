import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
  /** The entry bundled when `./moat package` is given none for this VM and it has no `app` yet. */
  readonly placeholder: { readonly issue: string };
  /**
   * The VM itself, once it exists: its main (`/app/main.js`), other bundles beside it (a worker),
   * and whether it needs @moat/xen's addon and Xen libraries on its disk.
   */
  readonly app?: {
    readonly entry: string;
    readonly bundles: readonly { readonly path: string; readonly entry: string }[];
    readonly xenAddon: boolean;
  };
}

export const repositoryRoot = join(here, '..', '..');

export const packagedVms: readonly PackagedVm[] = [
  {
    name: 'moat-firewall',
    description: 'sys-moat: a small memory-safe firewall qube in place of sys-firewall',
    templateConf: 'virt-mode=pvh\nkernel=\n',
    placeholder: { issue: '14' },
  },
  {
    name: 'moat-viewer',
    description: 'moat-viewer: a disposable image viewer qube with memory-safe decoders',
    // qrexec=1: the VM runs a qrexec agent, so qvm-template-postprocess may start it and wait.
    templateConf: 'virt-mode=pvh\nkernel=\nqrexec=1\n',
    placeholder: { issue: '17' },
    app: {
      entry: join(repositoryRoot, 'viewer', 'src', 'vm', 'main.ts'),
      bundles: [
        {
          path: '/app/decode-worker.js',
          entry: join(repositoryRoot, 'viewer', 'src', 'decoders', 'worker.ts'),
        },
      ],
      xenAddon: true,
    },
  },
];

export const placeholderEntry = join(here, 'placeholder-vm.ts');
/** rpm/specs, rpm/client, dom0-scripts */
export const specsDir = join(here, '..', 'specs');
export const clientDir = join(here, '..', 'client');
export const dom0ScriptsDir = join(here, '..', '..', 'dom0-scripts');
