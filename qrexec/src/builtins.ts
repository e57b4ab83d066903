/**
 * The services dom0 calls on VMs of our kinds (a network-providing firewall VM, a disposable
 * viewer, their templates), found in QubesOS/qubes-core-admin and qubes-core-admin-client at
 * the commits fetched for this work. Each entry names its caller. None needs the network,
 * QubesDB or a GUI unless given them, so a VM booted as a TemplateVM with no netvm (as
 * `qvm-template-postprocess` boots it) answers all of them.
 *
 * Not provided on purpose (the agent answers 127, "service not found", as a Linux VM without
 * the service file would):
 * - qubes.VMShell, qubes.VMRootShell, qubes.VMExec, qubes.VMExecGUI, qubes.VMRootExec: dom0's
 *   `qvm-run` and `DispVM.run_service('qubes.VMShell', input=cmd)` feed them shell commands;
 *   a moat VM has no shell and never spawns one.
 * - qubes.DetachPciDevice (qubes/ext/pci.py): only for VMs with PCI devices; ours have none.
 * - qubes.SetAudioVM (qubes/ext/audio.py): sent to HVM stubdomains only (`stubdom=True`).
 * - qubes.SetGuiMode (qubes/ext/gui.py `send_gui_mode`): defined but not called at this commit.
 * - qubes.Backup / qubes.Restore (qubes/backup.py, qubesadmin/backup): run in the backup VM
 *   the user picks; not one of ours.
 */
import type { Readable } from 'node:stream';
import type { QrexecAgent } from './agent.ts';
import { type AdjustableClock, formatTimestamp, parseTimestamp } from './clock.ts';
import { QrexecRefusedError } from './errors.ts';
import type { ServiceCall } from './service.ts';

export interface FeatureRequestStore {
  /**
   * Writes one QubesDB entry (e.g. `/features-request/qrexec` = `1`); @moat/qubesdb's `QubesDb`
   * fits. Linux's qvm-features-request waits for the daemon's RESP_OK; a store that resolves
   * only then (rather than when queued) closes the window in which dom0 could handle
   * qubes.FeaturesRequest before the entries arrived.
   */
  write(path: string, value: string): Promise<void> | void;
}

export interface BuiltinOptions {
  /** The VM's clock; qubes.SetDateTime adjusts it and qubes.GetDate reads it. */
  clock: AdjustableClock;
  /**
   * Features announced by qubes.PostInstall (as qvm-features-request in Linux's
   * /etc/qubes/post-install.d/10-qubes-core-agent-features.sh), e.g. `{qrexec: '1'}`.
   */
  features?: Record<string, string>;
  /** Where feature requests are written before calling qubes.FeaturesRequest. */
  qubesdb?: FeatureRequestStore;
  /** qubes.SuspendPre(All) / qubes.SuspendPost(All): what to do around a host suspend. */
  onSuspend?: () => Promise<void> | void;
  onResume?: () => Promise<void> | void;
  /** qubes.WaitForNetworkUplink: resolves when the uplink is concluded (default: at once). */
  uplinkReady?: () => Promise<void>;
}

/** qubes.SetDateTime skips corrections of 2 s or less, as the Linux script does. */
const SET_DATE_TOLERANCE_MS = 2000;
/** Longest stdin line a built-in reads (a timestamp, a volume name, a user name). */
const MAX_LINE = 256;
/** QubesDB path limit applied by qvm-features-request (`len(path) > 63` is skipped). */
const MAX_FEATURE_PATH = 63;
/** dom0's safe set for feature values (qubes/api/misc.py qubes_features_request). */
const FEATURE_VALUE = /^[A-Za-z0-9\-.,_= ]*$/;

export const BUILTIN_SERVICES = [
  'qubes.WaitForSession',
  'qubes.WaitForRunningSystem',
  'qubes.SetDateTime',
  'qubes.GetDate',
  'qubes.PostInstall',
  'qubes.SuspendPre',
  'qubes.SuspendPost',
  'qubes.SuspendPreAll',
  'qubes.SuspendPostAll',
  'qubes.WaitForNetworkUplink',
  'qubes.ResizeDisk',
] as const;

export function registerBuiltinServices(agent: QrexecAgent, options: BuiltinOptions): void {
  const { clock } = options;

  // qvm-run --gui (qubesadmin/tools/qvm_run.py), backups to a DispVM (qubesadmin/backup/dispvm.py),
  // preloaded disposables (qubes/vm/dispvm.py) and disposable templates
  // (qubes/vm/mix/dvmtemplate.py). stdin: the user name. Succeeds once the GUI session is up.
  agent.handle('qubes.WaitForSession', async (call) => {
    await readLine(call.stdin);
    await agent.waitForSession();
    return 0;
  });

  // Preloaded disposables (qubes/vm/dispvm.py on_domain_started_dispvm) and dvmtemplate.py:
  // "is the system up". Our VM's services are up once the agent answers.
  agent.handle('qubes.WaitForRunningSystem', async (call) => {
    await drain(call.stdin);
    return 0;
  });

  // dom0's clock sync (qvm-sync-clock; qubes-core-agent-linux qubes-rpc/qubes.SetDateTime): one
  // line on stdin in `date -u -Iseconds` form. Sets the offset of the VM's Clock.
  agent.handle('qubes.SetDateTime', async (call) => {
    const line = await readLine(call.stdin);
    const parsed = parseTimestamp(line);
    if (!parsed.ok) {
      call.stderr.write(`qubes.SetDateTime: invalid timestamp (${parsed.reason})\n`);
      return 1;
    }
    if (Math.abs(parsed.epochMs - clock.now()) > SET_DATE_TOLERANCE_MS) clock.set(parsed.epochMs);
    return 0;
  });

  // dom0's qubes.GetDate passthrough and qvm-sync-clock, when this VM is the clockvm
  // (qubes-core-admin qubes-rpc/qubes.GetDate, qvm-tools/qvm-sync-clock: `qubes.GetDate+nanoseconds`).
  agent.handle('qubes.GetDate', async (call) => {
    await drain(call.stdin);
    call.stdout.write(`${formatTimestamp(clock.now(), call.argument !== '')}\n`);
    return 0;
  });

  // qvm-template-postprocess post-install (qubesadmin/tools/qvm_template_postprocess.py): the
  // template is started with netvm None and qrexec enabled; Linux runs post-install.d scripts,
  // which announce features with qvm-features-request (QubesDB /features-request/<name>, then
  // `qrexec-client-vm dom0 qubes.FeaturesRequest`). We do the same from `features`.
  agent.handle('qubes.PostInstall', async (call) => {
    await drain(call.stdin);
    const features = options.features ?? { qrexec: '1' };
    const store = options.qubesdb;
    if (!store) {
      call.stderr.write('qubes.PostInstall: no QubesDB, feature requests not sent\n');
      return 0;
    }
    let failed = false;
    for (const [name, value] of Object.entries(features)) {
      const path = `/features-request/${name}`;
      if (path.length > MAX_FEATURE_PATH || !FEATURE_VALUE.test(value)) {
        call.stderr.write(`qubes.PostInstall: feature ${JSON.stringify(name)} not requestable, skipped\n`);
        failed = true;
        continue;
      }
      await store.write(path, value);
    }
    try {
      const result = await agent.call('dom0', 'qubes.FeaturesRequest', { stdin: new Uint8Array(0) });
      if (result.exitCode !== 0) {
        call.stderr.write(`qubes.FeaturesRequest exited ${result.exitCode}\n`);
        failed = true;
      }
    } catch (e) {
      call.stderr.write(
        `qubes.FeaturesRequest: ${e instanceof QrexecRefusedError ? 'refused' : e instanceof Error ? e.message : String(e)}\n`,
      );
      failed = true;
    }
    return failed ? 1 : 0;
  });

  // QubesVM.suspend()/resume() (qubes/vm/qubesvm.py, user root, for VMs with the qrexec feature;
  // network VMs around host suspend) and the all-VM variants from qubes/api/internal.py.
  const suspend = async (call: ServiceCall) => {
    await drain(call.stdin);
    await options.onSuspend?.();
    return 0;
  };
  const resume = async (call: ServiceCall) => {
    await drain(call.stdin);
    await options.onResume?.();
    return 0;
  };
  agent.handle('qubes.SuspendPre', suspend);
  agent.handle('qubes.SuspendPreAll', suspend);
  agent.handle('qubes.SuspendPost', resume);
  agent.handle('qubes.SuspendPostAll', resume);

  // NetVMMixin.apply_deferred_netvm (qubes/vm/mix/net.py): after a netvm change, dom0 waits
  // (10 s) for "uplink established or absent" in the VM whose netvm changed — our firewall VM.
  agent.handle('qubes.WaitForNetworkUplink', async (call) => {
    await drain(call.stdin);
    await (options.uplinkReady?.() ?? Promise.resolve());
    return 0;
  });

  // Storage.resize (qubes/storage/__init__.py) after `qvm-volume resize`: stdin is the volume
  // name. Our root is read-only and nothing lives on a private filesystem, so, like the Linux
  // script for an unknown volume, we say so and exit 1 (dom0 logs it; the resize stands).
  agent.handle('qubes.ResizeDisk', async (call) => {
    const volume = (await readLine(call.stdin)).replace(/[^A-Za-z0-9_.-]/g, '_');
    call.stderr.write(`Automatic resize of '${volume}' not supported\n`);
    return 1;
  });
}

/** Reads up to the first newline (or EOF, or MAX_LINE bytes), then drains the rest. */
async function readLine(stdin: Readable): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  let line: string | undefined;
  for await (const chunk of stdin) {
    if (line !== undefined) continue;
    const buf: Buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    parts.push(buf.subarray(0, MAX_LINE - size));
    size = Math.min(MAX_LINE, size + buf.length);
    const text = Buffer.concat(parts).toString('latin1');
    const nl = text.indexOf('\n');
    if (nl >= 0) line = text.slice(0, nl);
    else if (size >= MAX_LINE) line = text;
  }
  return line ?? Buffer.concat(parts).toString('latin1');
}

async function drain(stdin: Readable): Promise<void> {
  for await (const _ of stdin) {
    // discarded
  }
}
