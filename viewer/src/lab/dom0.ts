/**
 * dom0's side of moat-viewer for the lab and the host test: the QubesDB daemon holding the
 * VM's database, the qrexec daemon calling `qubes.OpenInVM` and `qubes.GetImageRGBA` as
 * qvm-open-in-dvm and qvm-convert-img do, and the strict lab GUI daemon showing its window,
 * whose pixels are the screenshots. Drives input (keys, wheel) and the close button.
 */
import { keymapFor, Modifier } from '@moat/gui-agent';
import { GuiDaemon } from '@moat/gui-agent/daemon';
import { QrexecDaemon } from '@moat/qrexec/dom0';
import { QubesDbDaemon } from '@moat/qubesdb/dom0';
import type { VchanTransport } from '@moat/vchan';
import type { DomainId, GrantMapper } from '@moat/xen';
import { FILENAME_FIELD_SIZE, VIEW_ONLY_PREFIX } from '../vm/open-in-vm.ts';
import { DEADLINE_CONFIG } from '../vm/viewer-vm.ts';

type GuiMessage = GuiDaemon['received'][number];

/** The qube the lab's calls come from, as `qvm-open-in-dvm` in a qube named `work`. */
export const CALLER = 'work';

export interface ViewerDom0Options {
  readonly transport: VchanTransport;
  readonly grants: GrantMapper;
  readonly vmDomain: DomainId;
  readonly vmName: string;
  /** The root window size the GUI daemon announces (default 1920 × 1080). */
  readonly screen?: { width: number; height: number };
  /** Every wait (emulation on a shared machine needs minutes). */
  readonly waitMs: number;
  /** The VM's per-decode deadline, through QubesDB `/vm-config/` (emulation needs minutes). */
  readonly decodeDeadlineMs?: number;
  readonly log?: (line: string) => void;
}

/** One screenshot of the viewer's window: its RGBA (opaque) and title. */
export interface Shot {
  readonly width: number;
  readonly height: number;
  readonly title: string;
  /** width × height × 4 bytes. */
  readonly rgba: Uint8Array;
}

/** What dom0 does to the window after it first shows, one screenshot after each. */
export type ViewAction =
  /**
   * An X keysym name (`r`, `R`, `Left`, `plus`), pressed and released with Shift if it needs it.
   * With `quietMs`, the screenshot is the window once no full draw came for that long (an
   * animation paused): without it, a frame drawn just before the key could be taken for its effect.
   */
  | { readonly key: string; readonly quietMs?: number }
  | { readonly wheel: 'up' | 'down'; readonly at?: { x: number; y: number } }
  /** Screenshots of the next n full-window draws (animation frames), without input. */
  | { readonly frames: number };

export interface OpenReport {
  readonly exitCode: number;
  readonly stdoutBytes: number;
  readonly stderr: string;
  /** From the call's start to the daemon holding the window's first full frame. */
  readonly firstFrameMs: number;
  readonly first: Shot;
  /** One per action (`frames: n` gives n). */
  readonly after: Shot[];
  /** The agent sent MSG_CONNECTION_TERMINATED for the call's port. */
  readonly terminated: boolean;
}

/** QubesDB as qubesd writes it for a disposable (the keys the VM reads). */
export function viewerQubesDb(vmName: string, decodeDeadlineMs?: number): [string, string][] {
  return [
    // `qvm-features <vm> vm-config.<key> <value>` puts a key under /vm-config/.
    ...(decodeDeadlineMs
      ? [[`/vm-config/${DEADLINE_CONFIG}`, String(decodeDeadlineMs)] as [string, string]]
      : []),
    ['/name', vmName],
    ['/type', 'DispVM'],
    ['/qubes-vm-type', 'DispVM'],
    ['/qubes-vm-persistence', 'none'],
    ['/qubes-vm-updateable', 'False'],
    ['/default-user', 'user'],
    ['/keyboard-layout', 'us'],
    ['/qubes-timezone', 'UTC'],
  ];
}

/** The 256-byte name field followed by the file, as qopen-in-vm sends them. */
export function openInVmStdin(fileName: string, bytes: Uint8Array, viewOnly = true): Uint8Array {
  const field = new Uint8Array(FILENAME_FIELD_SIZE);
  const prefix = Buffer.from(viewOnly ? VIEW_ONLY_PREFIX : '', 'latin1');
  let name = Buffer.from(fileName, 'utf8');
  // qopen-in-vm keeps the tail of an over-long name (so the extension survives); byte 255 stays NUL.
  const room = FILENAME_FIELD_SIZE - 1 - prefix.length;
  if (name.length > room) name = name.subarray(name.length - room);
  field.set(Buffer.concat([prefix, name]));
  return Buffer.concat([field, bytes]);
}

/** The X keycode and modifier state that make `keysym` in the us layout (unshifted first). */
function keyFor(keysym: string): { keycode: number; state: number } {
  const map = keymapFor('us');
  for (const state of [0, Modifier.Shift])
    for (let keycode = 8; keycode < 256; keycode++)
      if (map.lookup(keycode, state).keysym === keysym) return { keycode, state };
  throw new Error(`no key gives ${keysym} in the us layout`);
}

export class ViewerDom0 {
  readonly qubesdb: QubesDbDaemon;
  readonly qrexec: QrexecDaemon;
  readonly gui: GuiDaemon;
  readonly #options: ViewerDom0Options;

  private constructor(
    options: ViewerDom0Options,
    qubesdb: QubesDbDaemon,
    qrexec: QrexecDaemon,
    gui: GuiDaemon,
  ) {
    this.#options = options;
    this.qubesdb = qubesdb;
    this.qrexec = qrexec;
    this.gui = gui;
  }

  /** Serves the VM's QubesDB, then connects to its qrexec and GUI agents (as qubesd starts a VM). */
  static async start(options: ViewerDom0Options): Promise<ViewerDom0> {
    const log = options.log ?? (() => {});
    const qubesdb = new QubesDbDaemon({
      vmDomain: options.vmDomain,
      vmName: options.vmName,
      transport: options.transport,
      initial: viewerQubesDb(options.vmName, options.decodeDeadlineMs),
      log: (line) => log(`qubesdb: ${line}`),
    });
    await qubesdb.start();
    const [qrexec, gui] = await Promise.all([
      QrexecDaemon.connect({
        transport: options.transport,
        domain: options.vmDomain,
        name: options.vmName,
        startupTimeoutMs: options.waitMs,
        log: (level, message) => log(`qrexec ${level}: ${message}`),
      }),
      GuiDaemon.connect({
        transport: options.transport,
        vmDomain: options.vmDomain,
        grants: options.grants,
        ...(options.screen ? { screen: options.screen } : {}),
        timeoutMs: options.waitMs,
        waitTimeoutMs: options.waitMs,
      }),
    ]);
    return new ViewerDom0(options, qubesdb, qrexec, gui);
  }

  #shot(id: number): Shot {
    const w = this.gui.window(id);
    return { width: w.width, height: w.height, title: w.title, rgba: this.gui.rgba(id) };
  }

  /**
   * The window once at least one full-window update of `id` came after message `since` and
   * then none for `quietMs`.
   */
  #settled(id: number, since: number, quietMs: number): Promise<Shot> {
    const d = this.gui;
    const draws = () => d.received.slice(since).filter((m) => this.#isFull(id, m)).length;
    return new Promise((resolve, reject) => {
      const deadline = performance.now() + this.#options.waitMs;
      let seen = -1;
      let quietSince = performance.now();
      const timer = setInterval(
        () => {
          const now = performance.now();
          const count = draws();
          if (count !== seen) {
            seen = count;
            quietSince = now;
          } else if (count > 0 && now - quietSince >= quietMs) {
            clearInterval(timer);
            resolve(this.#shot(id));
          }
          if (now > deadline) {
            clearInterval(timer);
            reject(
              new Error(
                `window ${id}: ${count} full draws in ${this.#options.waitMs} ms, never ${quietMs} ms without one`,
              ),
            );
          }
        },
        Math.max(10, Math.min(100, quietMs >> 3)),
      );
    });
  }

  #isFull(id: number, m: GuiMessage): boolean {
    if (m.kind !== 'shmimage' || m.window !== id) return false;
    const w = this.gui.window(id);
    return m.x === 0 && m.y === 0 && m.width === w.width && m.height === w.height;
  }

  /** The next `count` full-window updates of window `id` after message `since`, each as a screenshot. */
  #fullDraws(id: number, count: number, since: number): Promise<Shot[]> {
    const shots: Shot[] = [];
    const d = this.gui;
    const full = (m: GuiMessage) => this.#isFull(id, m);
    // Draws already received (the listener below only sees later ones).
    for (const m of d.received.slice(since)) if (full(m) && shots.length < count) shots.push(this.#shot(id));
    if (shots.length >= count) return Promise.resolve(shots);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        const w = d.window(id);
        const seen = d.received
          .slice(since)
          .filter((m) => 'window' in m && m.window === id)
          .map((m) => m.kind);
        reject(
          new Error(
            `window ${id} (${w.width}x${w.height}): ${shots.length} of ${count} full draws within ${this.#options.waitMs} ms; its messages since: ${seen.join(', ')}`,
          ),
        );
      }, this.#options.waitMs);
      const off = d.on((event) => {
        if (event.kind === 'ended') {
          clearTimeout(timer);
          off();
          reject(event.error ?? new Error('the GUI agent disconnected'));
        } else if (full(event.message)) {
          shots.push(this.#shot(id));
          if (shots.length >= count) {
            clearTimeout(timer);
            off();
            resolve(shots);
          }
        }
      });
    });
  }

  /**
   * qvm-open-in-dvm: sends the file, waits for the window and its first frame, runs `actions`
   * (a screenshot after each), presses the close button, and returns when the call ended.
   */
  async openInVm(
    fileName: string,
    bytes: Uint8Array,
    actions: readonly ViewAction[] = [],
  ): Promise<OpenReport> {
    const d = this.gui;
    const since = d.received.length;
    const start = performance.now();
    const call = this.qrexec.call('qubes.OpenInVM', {
      stdin: openInVmStdin(fileName, bytes),
      user: 'user',
      source: CALLER,
      timeoutMs: this.#options.waitMs,
    });
    call.catch(() => {}); // awaited below; a failure before then surfaces through the waits
    const create = await Promise.race([
      d.waitFor('create', () => true, { since, timeoutMs: this.#options.waitMs }),
      call.then((r) => {
        throw new Error(
          `qubes.OpenInVM ended (exit ${r.exitCode}) before a window opened: ${r.stderr.toString()}`,
        );
      }),
    ]);
    const id = create.window;
    // The first draw of the whole window at 0,0 (the agent's opening SHMIMAGE carries the
    // window's screen position, as the C agent's does, and covers nothing of the buffer).
    const [first] = await this.#fullDraws(id, 1, since);
    const firstFrameMs = performance.now() - start;
    const after: Shot[] = [];
    for (const action of actions) {
      const mark = d.received.length;
      if ('frames' in action) {
        after.push(...(await this.#fullDraws(id, action.frames, mark)));
        continue;
      }
      if ('key' in action) {
        const { keycode, state } = keyFor(action.key);
        d.focus(id, true);
        d.key(id, keycode, true, state);
        d.key(id, keycode, false, state);
        if (action.quietMs !== undefined) {
          after.push(await this.#settled(id, mark, action.quietMs));
          continue;
        }
      } else {
        const w = d.window(id);
        d.wheel(id, action.wheel, action.at ?? { x: w.width >> 1, y: w.height >> 1 });
      }
      const [shot] = await this.#fullDraws(id, 1, mark);
      after.push(shot!);
    }
    const closing = d.received.length;
    d.close(id);
    await d.waitFor('destroy', (m) => m.window === id, { since: closing, timeoutMs: this.#options.waitMs });
    const result = await call;
    let terminated = false;
    await Promise.race([
      result.terminated.then(() => {
        terminated = true;
      }),
      new Promise((resolve) => setTimeout(resolve, this.#options.waitMs)),
    ]);
    return {
      exitCode: result.exitCode,
      stdoutBytes: result.stdout.length,
      stderr: result.stderr.toString('latin1').slice(0, 500),
      firstFrameMs: Math.round(firstFrameMs),
      first: first!,
      after,
      terminated,
    };
  }

  /** qvm-convert-img's call: `-\n`, the file, EOF; parses `"<w> <h>\n"` + RGBA as qubesimgconverter does. */
  async getImageRgba(bytes: Uint8Array): Promise<{
    exitCode: number;
    width: number;
    height: number;
    rgba: Uint8Array;
    stderr: string;
    extraBytes: number;
  }> {
    const r = await this.qrexec.call('qubes.GetImageRGBA', {
      stdin: Buffer.concat([Buffer.from('-\n'), bytes]),
      user: 'user',
      source: CALLER,
      timeoutMs: this.#options.waitMs,
      maxOutputBytes: 8192 * 5120 * 4 + 64,
    });
    const newline = r.stdout.indexOf(0x0a);
    const header = r.stdout.subarray(0, newline < 0 ? 0 : newline + 1).toString('latin1');
    const match = /^(\d+) (\d+)\n$/.exec(header);
    const width = match ? Number(match[1]) : 0;
    const height = match ? Number(match[2]) : 0;
    const body = r.stdout.subarray(header.length);
    return {
      exitCode: r.exitCode,
      width,
      height,
      rgba: body.subarray(0, width * height * 4),
      stderr: r.stderr.toString('latin1').slice(0, 500),
      extraBytes: body.length - width * height * 4,
    };
  }

  async stop(): Promise<void> {
    this.gui.disconnect();
    await this.qrexec.close();
    await this.qubesdb.stop();
  }
}
