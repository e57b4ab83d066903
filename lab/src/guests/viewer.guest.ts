/**
 * dom0's half of the moat-viewer lab runs (test/viewer.lab.test.ts, `./moat view`, `./moat bench
 * viewer`, `./moat demo`): @moat/viewer/lab's dom0 side (QubesDB, qrexec and GUI daemons) against
 * the real moat-viewer image in a domU, calling qubes.OpenInVM and qubes.GetImageRGBA with the
 * shared files, and destroying the disposable at the end as qubesd does.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { xenVchanTransport } from '@moat/vchan';
import { type OpenReport, ViewerDom0 } from '@moat/viewer/lab';
import { openNativeDomain } from '@moat/xen';
import { type GuestStep, guestArgs, guestLog, guestMain } from '../guest.ts';
import {
  SHOT_PART_CHARS,
  type ViewerDestroyResult,
  type ViewerLabArgs,
  type ViewerOpenResult,
  type ViewerRgbaResult,
} from '../viewer-wire.ts';

const WAIT_MS = 420_000;
const args = guestArgs() as unknown as ViewerLabArgs;

function xl(argv: string[]): number | null {
  try {
    execFileSync('xl', argv, { stdio: 'ignore', timeout: 60_000 });
    return 0;
  } catch (error) {
    return (error as { status?: number | null }).status ?? null;
  }
}

function steps(): Record<string, GuestStep> {
  const domain = openNativeDomain();
  const transport = xenVchanTransport(domain);
  let dom0: ViewerDom0 | undefined;
  const need = () => {
    if (!dom0) throw new Error('dom0 side is not up (an earlier step failed)');
    return dom0;
  };
  const out: Record<string, GuestStep> = {
    'dom0 up': async () => {
      const start = performance.now();
      dom0 = await ViewerDom0.start({
        transport,
        grants: domain.grantMapper,
        vmDomain: args.peer,
        vmName: args.vmName,
        waitMs: WAIT_MS,
        decodeDeadlineMs: args.decodeDeadlineMs,
        ...(args.screen ? { screen: args.screen } : {}),
        log: (line) => guestLog(line),
      });
      return { ms: Math.round(performance.now() - start) };
    },
  };
  for (const c of args.open) {
    let shotData = '';
    out[`open ${c.label}`] = async (): Promise<ViewerOpenResult> => {
      const report: OpenReport = await need().openInVm(c.name, readFileSync(c.path), c.actions);
      const shots = [report.first, ...report.after];
      shotData = JSON.stringify(shots.map((s) => deflateSync(s.rgba).toString('base64')));
      return {
        exitCode: report.exitCode,
        stdoutBytes: report.stdoutBytes,
        stderr: report.stderr,
        firstFrameMs: report.firstFrameMs,
        terminated: report.terminated,
        shots: shots.map((s) => ({ width: s.width, height: s.height, title: s.title })),
        shotChars: shotData.length,
      };
    };
    for (let i = 0; i < args.shotParts; i++) {
      out[`shots ${c.label} ${i}`] = () => ({
        data: shotData.slice(i * SHOT_PART_CHARS, (i + 1) * SHOT_PART_CHARS),
      });
    }
  }
  for (const r of args.rgba) {
    out[`rgba ${r.label}`] = async (): Promise<ViewerRgbaResult> => {
      const got = await need().getImageRgba(readFileSync(r.path));
      return {
        exitCode: got.exitCode,
        width: got.width,
        height: got.height,
        extraBytes: got.extraBytes,
        stderr: got.stderr,
        sha256: createHash('sha256').update(got.rgba).digest('hex'),
      };
    };
  }
  out.destroy = async (): Promise<ViewerDestroyResult> => {
    await need().stop();
    const destroyExit = xl(['destroy', args.vmName]);
    return { destroyExit, listedAfter: xl(['domid', args.vmName]) === 0 };
  };
  return out;
}

function guarded(): Record<string, GuestStep> {
  try {
    return steps();
  } catch (error) {
    return {
      setup: () => {
        throw error;
      },
    };
  }
}

void guestMain(guarded()).then(() => {
  setTimeout(() => process.exit(), 3000).unref();
});
