/**
 * The GUI scenario both halves of the lab test run (and the host test runs with sim): the VM
 * half is an application on our agent, the dom0 half our strict daemon driving it. They meet
 * only through the protocol, in this order:
 *
 * 1. the VM opens a window and draws a test pattern; dom0 checks its image and PNG pixel for pixel;
 * 2. dom0 resizes the window; the VM redraws the pattern at the new size; dom0 checks it;
 * 3. dom0 presses keys; on `a` the VM draws a patch (damage); dom0 checks only it changed;
 * 4. dom0 sends a close request; the VM closes the window; dom0 sees it destroyed;
 * 5. the VM opens and closes windows CYCLES times; both sides then count grants left;
 * 6. bench: the VM draws BENCH_FRAMES full frames of 800x600; dom0 times them and, in the same
 *    run, grant-copies the same bytes from the VM's refs as the baseline.
 *
 * Steps are ordered records of async functions (the lab's guestMain runs them in order).
 */
import { inflateSync } from 'node:zlib';
import type { VchanTransport } from '@moat/vchan';
import type { DomainId, GrantCopier, GrantMapper, GrantSharer } from '@moat/xen';
import { within } from '@moat/xen/conformance';
import { GuiAgent } from '../agent.ts';
import { GuiDaemon } from '../daemon/daemon.ts';
import type { GuiInputEvent, GuiWindow } from '../window.ts';

export const GUI_SCENARIO = {
  first: { width: 320, height: 240 },
  resized: { x: 40, y: 30, width: 400, height: 300 },
  patch: { x: 10, y: 20, width: 30, height: 40 },
  /** dom0 presses these (X keycodes); the VM reports what they meant in its layout. */
  keys: [38, 29, 113, 86],
  keyboardLayout: 'de',
  cycles: 100,
  bench: { width: 800, height: 600, frames: 30 },
  waitMs: 420_000,
} as const;

export type ScenarioSteps = Record<string, () => Promise<unknown>>;

/** A w × h RGBA test pattern: neighbouring pixels differ, alpha opaque. */
export function scenarioPattern(width: number, height: number, seed = 0): Uint8Array {
  const out = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      out[i] = (x * 7 + seed) & 0xff;
      out[i + 1] = (y * 5 + seed * 3) & 0xff;
      out[i + 2] = (x ^ y ^ seed) & 0xff;
      out[i + 3] = 255;
    }
  }
  return out;
}

export interface VmEnvironment {
  transport: VchanTransport;
  grants: GrantSharer;
  guiDomain: DomainId;
  log?: (text: string) => void;
}

export function guiVmSteps(env: VmEnvironment): ScenarioSteps {
  const S = GUI_SCENARIO;
  let agent: GuiAgent | undefined;
  let window: GuiWindow | undefined;
  const need = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`${what} is not there (an earlier step failed)`);
    return value;
  };
  return {
    'agent up': async () => {
      agent = await within(
        S.waitMs,
        'the GUI daemon connecting',
        GuiAgent.start({
          transport: env.transport,
          grants: env.grants,
          guiDomain: env.guiDomain,
          keyboardLayout: S.keyboardLayout,
          log: (level, message) => env.log?.(`gui ${level}: ${message}`),
        }),
      );
      return { version: agent.version, screen: agent.screen };
    },
    'window drawn': async () => {
      window = need(agent, 'the agent').openWindow({ title: 'moat gui lab', ...S.first });
      window.draw(scenarioPattern(S.first.width, S.first.height));
      return { id: window.id, sharedPages: window.sharedPages };
    },
    'events handled': async () => {
      const w = need(window, 'the window');
      const events: GuiInputEvent[] = [];
      const iterator = w[Symbol.asyncIterator]();
      for (;;) {
        const next = await within(S.waitMs, 'the next input event', iterator.next());
        if (next.done) break;
        const event = next.value;
        if (event.type !== 'motion') events.push(event);
        if (event.type === 'resize') w.draw(scenarioPattern(event.width, event.height, 1));
        if (event.type === 'key' && event.pressed && event.keysym === 'a') {
          w.draw(scenarioPattern(S.patch.width, S.patch.height, 7), S.patch);
        }
        if (event.type === 'close-request') {
          await within(S.waitMs, 'the destroy echo', w.close());
          break;
        }
      }
      return { events, size: { width: w.width, height: w.height }, sharedPages: w.sharedPages };
    },
    'open/close cycles': async () => {
      const a = need(agent, 'the agent');
      for (let i = 0; i < S.cycles; i++) {
        const w = a.openWindow({ title: `cycle ${i}`, width: 64, height: 48 });
        w.draw(scenarioPattern(64, 48, i));
        await within(S.waitMs, `cycle ${i} closing`, w.close());
      }
      return { sharedPages: a.sharedPages, windows: a.windows.length };
    },
    'bench frames': async () => {
      const a = need(agent, 'the agent');
      const { width, height, frames } = S.bench;
      const w = a.openWindow({ title: 'bench', width, height });
      const patterns = [scenarioPattern(width, height, 1), scenarioPattern(width, height, 2)];
      const bgrx = patterns.map((p) => {
        const out = p.slice();
        for (let i = 0; i < out.length; i += 4) [out[i], out[i + 2]] = [p[i + 2]!, p[i]!];
        return out;
      });
      const iterator = w[Symbol.asyncIterator]();
      const drawMs: Record<string, number> = {};
      // dom0 focuses the window when it is ready to time a run of frames: RGBA, then BGRX.
      for (const format of ['rgba', 'bgrx'] as const) {
        for (;;) {
          const next = await within(S.waitMs, `dom0 starting the ${format} frames`, iterator.next());
          if (next.done) throw new Error('the bench window closed before the bench');
          if (next.value.type === 'focus' && next.value.focused) break;
        }
        const start = performance.now();
        for (let f = 0; f < frames; f++) {
          w.draw((format === 'rgba' ? patterns : bgrx)[f % 2]!, undefined, { format });
          await new Promise((resolve) => setImmediate(resolve));
        }
        drawMs[format] = Math.round(performance.now() - start);
      }
      // dom0 closes it when it has seen every frame.
      for (;;) {
        const next = await within(S.waitMs, 'dom0 ending the bench', iterator.next());
        if (next.done || next.value.type === 'close-request') break;
      }
      await within(S.waitMs, 'the bench window closing', w.close());
      a.close();
      return { frames, drawMs, sharedPages: a.sharedPages };
    },
  };
}

export interface Dom0Environment {
  transport: VchanTransport;
  grants: GrantMapper;
  copier: GrantCopier;
  vmDomain: DomainId;
  log?: (text: string) => void;
}

/** Pixels that differ between two RGBA images of the same size, as "x,y" (first 10) and a count. */
function differences(a: Uint8Array, b: Uint8Array, width: number): { count: number; first: string[] } {
  const first: string[] = [];
  let count = 0;
  for (let i = 0; i < Math.max(a.length, b.length); i += 4) {
    if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) {
      count++;
      if (first.length < 10) first.push(`${(i / 4) % width},${Math.floor(i / 4 / width)}`);
    }
  }
  return { count, first };
}

/** RGBA of a PNG written by encodePngFromBgrx (8-bit RGB, filter 0). */
export function decodeOurPng(png: Uint8Array): { width: number; height: number; rgba: Uint8Array } {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  const idat: Uint8Array[] = [];
  for (let at = 8; at < png.length; ) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...png.subarray(at + 4, at + 8));
    if (type === 'IDAT') idat.push(png.subarray(at + 8, at + 8 + length));
    at += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const rgba = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const s = y * (width * 3 + 1) + 1 + x * 3;
      rgba.set([raw[s]!, raw[s + 1]!, raw[s + 2]!, 255], (y * width + x) * 4);
    }
  }
  return { width, height, rgba };
}

export function guiDom0Steps(env: Dom0Environment): ScenarioSteps {
  const S = GUI_SCENARIO;
  let daemon: GuiDaemon | undefined;
  let id = 0;
  const need = () => {
    if (!daemon) throw new Error('the daemon is not connected (an earlier step failed)');
    return daemon;
  };
  /** Until every SHMIMAGE of `window` sent so far covering (w × h) was processed. */
  const waitForImage = (d: GuiDaemon, window: number, width: number, height: number, since: number) =>
    within(
      S.waitMs,
      `an image of ${width}x${height}`,
      d.waitFor('shmimage', (m) => m.window === window && m.width === width && m.height === height, {
        since,
      }),
    );
  return {
    'daemon connected': async () => {
      daemon = await GuiDaemon.connect({
        transport: env.transport,
        vmDomain: env.vmDomain,
        grants: env.grants,
        timeoutMs: S.waitMs,
        waitTimeoutMs: S.waitMs,
      });
      return { agentVersion: daemon.agentVersion, version: daemon.version };
    },
    'pattern matches': async () => {
      const d = need();
      const create = await within(
        S.waitMs,
        'the window',
        d.waitFor('create', () => true, { since: 0 }),
      );
      id = create.window;
      // The damage after the first dump: the last SHMIMAGE of the opening sequence is the drawn pattern.
      await waitForImage(d, id, S.first.width, S.first.height, 0);
      const shown = d.received.filter((m) => m.kind === 'shmimage' && m.window === id).length;
      if (shown < 2)
        await within(
          S.waitMs,
          'the drawn pattern',
          d.waitFor('shmimage', (m) => m.window === id, { since: d.received.length }),
        );
      const expected = scenarioPattern(S.first.width, S.first.height);
      const png = decodeOurPng(d.png(id));
      return {
        window: d.window(id).title,
        image: differences(d.rgba(id), expected, S.first.width),
        png: { width: png.width, height: png.height, ...differences(png.rgba, expected, S.first.width) },
      };
    },
    'resize reached the domU': async () => {
      const d = need();
      const since = d.received.length;
      d.configure(id, S.resized);
      await within(
        S.waitMs,
        'the configure acknowledgement',
        d.waitFor('configure', (m) => m.window === id, { since }),
      );
      await within(
        S.waitMs,
        'the new buffer',
        d.waitFor('window-dump', (m) => m.window === id && m.width === S.resized.width, { since }),
      );
      // The VM's redraw at the new size: the second full-size SHMIMAGE after the dump.
      const full = (m: { window: number; width: number; height: number }) =>
        m.window === id && m.width === S.resized.width && m.height === S.resized.height;
      await within(
        S.waitMs,
        'the redraw',
        (async () => {
          while (d.received.slice(since).filter((m) => m.kind === 'shmimage' && full(m)).length < 2) {
            await d.waitFor('shmimage', full);
          }
        })(),
      );
      const w = d.window(id);
      return {
        geometry: { x: w.x, y: w.y, width: w.width, height: w.height, queued: w.queuedConfigure },
        image: differences(
          d.rgba(id),
          scenarioPattern(S.resized.width, S.resized.height, 1),
          S.resized.width,
        ),
      };
    },
    'keys and damage': async () => {
      const d = need();
      const before = d.rgba(id);
      const since = d.received.length;
      d.focus(id, true);
      for (const keycode of S.keys) {
        d.key(id, keycode, true);
        d.key(id, keycode, false);
      }
      const { x, y, width, height } = S.patch;
      await within(
        S.waitMs,
        'the damaged rectangle',
        d.waitFor('shmimage', (m) => m.window === id && m.x === x && m.y === y && m.width === width, {
          since,
        }),
      );
      const after = d.rgba(id);
      const patch = scenarioPattern(width, height, 7);
      let outside = 0;
      let insideWrong = 0;
      for (let py = 0; py < S.resized.height; py++) {
        for (let px = 0; px < S.resized.width; px++) {
          const i = (py * S.resized.width + px) * 4;
          const inside = px >= x && px < x + width && py >= y && py < y + height;
          const want = inside ? patch.subarray(((py - y) * width + (px - x)) * 4) : before.subarray(i);
          const same = after[i] === want[0] && after[i + 1] === want[1] && after[i + 2] === want[2];
          if (!same && inside) insideWrong++;
          if (!same && !inside) outside++;
        }
      }
      const changed = differences(before, after, S.resized.width).count;
      return { changed, insideWrong, outsideChanged: outside, patchPixels: width * height };
    },
    'close request ended it': async () => {
      const d = need();
      const since = d.received.length;
      d.close(id);
      await within(
        S.waitMs,
        'the destroy',
        d.waitFor('destroy', (m) => m.window === id, { since }),
      );
      return { windows: d.windows.size, mappedPages: d.mappedPages, warnings: d.warnings };
    },
    'cycles leave no grants': async () => {
      const d = need();
      let destroyed = 0;
      await within(
        S.waitMs,
        `${S.cycles} windows opened and closed`,
        new Promise<void>((resolve, reject) => {
          const off = d.on((event) => {
            if (event.kind === 'ended') {
              off();
              reject(event.error ?? new Error('the agent disconnected'));
            } else if (event.message.kind === 'destroy' && ++destroyed === S.cycles) {
              off();
              resolve();
            }
          });
        }),
      );
      return { destroyed, windows: d.windows.size, mappedPages: d.mappedPages, error: d.error?.message };
    },
    'bench frames and grant copy': async () => {
      const d = need();
      const { width, height, frames } = S.bench;
      const create = await within(
        S.waitMs,
        'the bench window',
        d.waitFor('create', (m) => m.width === width),
      );
      const bench = create.window;
      const full = (m: { window: number; width: number; height: number }) =>
        m.window === bench && m.width === width && m.height === height;
      await within(S.waitMs, 'the bench window shown', d.waitFor('shmimage', full, { since: 0 }));
      /** Focuses the window (the VM's cue) and times until `frames` full updates were copied. */
      const timeFrames = async (format: string): Promise<number> => {
        let seen = 0;
        const all = new Promise<void>((resolve) => {
          const off = d.on((event) => {
            if (
              event.kind === 'message' &&
              event.message.kind === 'shmimage' &&
              full(event.message) &&
              ++seen >= frames
            ) {
              off();
              resolve();
            }
          });
        });
        const start = performance.now();
        d.focus(bench, true);
        await within(S.waitMs, `${frames} ${format} frames`, all);
        return performance.now() - start;
      };
      const framesMs = await timeFrames('rgba');
      const bgrxMs = await timeFrames('bgrx');
      // The baseline, same run: grant-copy the same bytes (the window's pages) frames times.
      const dump = [...d.received].reverse().find((m) => m.kind === 'window-dump' && m.window === bench);
      if (dump?.kind !== 'window-dump') throw new Error('no dump for the bench window');
      const target = new Uint8Array(dump.refs.length * 4096);
      const segments = [...dump.refs].map((ref, k) => ({
        direction: 'from-grant' as const,
        domain: env.vmDomain,
        ref,
        offset: 0,
        length: 4096,
        target,
        targetOffset: k * 4096,
      }));
      const copyStart = performance.now();
      for (let f = 0; f < frames; f++) {
        const status = env.copier.copy(segments);
        if (status.some((s) => s !== 0))
          throw new Error(`grant copy failed: ${[...status].find((s) => s !== 0)}`);
      }
      const copyMs = performance.now() - copyStart;
      d.close(bench);
      await within(
        S.waitMs,
        'the bench window closing',
        d.waitFor('destroy', (m) => m.window === bench),
      );
      const fps = frames / (framesMs / 1000);
      const bgrxFps = frames / (bgrxMs / 1000);
      const copyFps = frames / (copyMs / 1000);
      return {
        frames,
        framesMs: Math.round(framesMs),
        fps: Number(fps.toFixed(2)),
        bgrxFps: Number(bgrxFps.toFixed(2)),
        bgrxRatio: Number((bgrxFps / copyFps).toFixed(3)),
        grantCopyFps: Number(copyFps.toFixed(2)),
        grantCopyMiBps: Number(((frames * width * height * 4) / (1024 * 1024) / (copyMs / 1000)).toFixed(1)),
        ratio: Number((fps / copyFps).toFixed(3)),
        mappedPages: d.mappedPages,
      };
    },
  };
}

/** Runs both halves' steps concurrently, each in order (the host test; the lab runs them in two domains). */
export async function runScenario(
  vm: ScenarioSteps,
  dom0: ScenarioSteps,
): Promise<{ vm: Record<string, unknown>; dom0: Record<string, unknown> }> {
  const run = async (steps: ScenarioSteps) => {
    const out: Record<string, unknown> = {};
    for (const [name, step] of Object.entries(steps)) out[name] = await step();
    return out;
  };
  const [v, d] = await Promise.all([run(vm), run(dom0)]);
  return { vm: v, dom0: d };
}
