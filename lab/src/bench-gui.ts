import { GUI_SCENARIO } from '@moat/gui-agent/lab';
import { buildGuestAddon } from './addon.ts';
import { guestImage } from './guest-image.ts';
import { expectGuestOk } from './guest-run.ts';
import type { GuiLabArgs } from './guests/gui.guest.ts';
import { bootLab, type LabOptions } from './lab.ts';
import { domainId } from './vchan-lab.ts';

const GUI_GUEST = new URL('./guests/gui.guest.ts', import.meta.url).pathname;

export interface GuiBenchFigures {
  width: number;
  height: number;
  frames: number;
  /** Full-window updates per second: the domU draws, the dom0 daemon has copied each frame. */
  fps: number;
  /** The same bytes grant-copied by dom0 from the window's refs, in the same run. */
  grantCopyFps: number;
  grantCopyMiBps: number;
  /** fps / grantCopyFps. */
  ratio: number;
  /** The same with pixels already in the daemon's BGRX order (`draw(..., { format: 'bgrx' })`, no conversion). */
  bgrxFps: number;
  bgrxRatio: number;
  /** The domU's time to convert (or copy) and send the frames, RGBA and BGRX runs. */
  domUDrawMs: { rgba: number; bgrx: number };
}

/**
 * `./moat bench gui`: our GUI agent in a PV domU draws full 800x600 frames to our lab daemon in
 * dom0, beside dom0's grant-copy rate of the same bytes (the scenario's bench steps).
 */
export async function runGuiBench(
  options: LabOptions & { onStep?: (text: string) => void } = {},
): Promise<GuiBenchFigures> {
  options.onStep?.('building the guest image');
  const addon = await buildGuestAddon(options.cacheDir);
  const built = await guestImage(GUI_GUEST, { addon, cacheDir: options.cacheDir });
  options.onStep?.('booting the lab');
  const lab = await bootLab({ addon, bootTimeoutMs: 600_000, ...options });
  try {
    options.onStep?.('drawing frames');
    const vm = lab.createDomU(built.image, {
      type: 'pv',
      name: 'gui-bench',
      memoryMb: 192,
      args: { role: 'vm', only: ['agent up', 'bench frames'] } satisfies GuiLabArgs,
    });
    const peer = await domainId(lab, 'gui-bench');
    const dom0 = lab.runInDom0(built.bundle, {
      args: {
        role: 'dom0',
        peer,
        only: ['daemon connected', 'bench frames and grant copy'],
      } satisfies GuiLabArgs,
      timeoutMs: 900_000,
    });
    const d = expectGuestOk(await dom0.finished({ timeoutMs: 900_000 }));
    const v = expectGuestOk(await vm.finished({ timeoutMs: 300_000 }));
    const bench = d.results.find((r) => r.name === 'bench frames and grant copy')?.data as Omit<
      GuiBenchFigures,
      'width' | 'height' | 'domUDrawMs'
    >;
    const drawn = v.results.find((r) => r.name === 'bench frames')?.data as {
      drawMs: { rgba: number; bgrx: number };
    };
    return {
      width: GUI_SCENARIO.bench.width,
      height: GUI_SCENARIO.bench.height,
      frames: bench.frames,
      fps: bench.fps,
      grantCopyFps: bench.grantCopyFps,
      grantCopyMiBps: bench.grantCopyMiBps,
      ratio: bench.ratio,
      bgrxFps: bench.bgrxFps,
      bgrxRatio: bench.bgrxRatio,
      domUDrawMs: drawn.drawMs,
    };
  } finally {
    await lab.shutdown();
  }
}
