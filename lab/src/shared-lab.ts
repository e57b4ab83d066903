/**
 * One booted lab for all the lab test files of a vitest run. lab/vitest.config.ts runs the files
 * one after another in a single process with a shared module registry (singleFork, isolate off),
 * so this module outlives each file: the first file boots Xen and dom0 (about 30 s on an idle
 * machine) and the others reuse them.
 *
 * A file takes a session in beforeAll and ends it in afterAll. Ending destroys the domUs the file
 * left running and checks that dom0 answers and runs no domU any more; when that fails (a dom0
 * bundle still running, a domain that will not go, a lab that does not answer) the lab is shut
 * down and the next file boots a new one, so one file's failure never reaches the next. QEMU
 * dies with the test process (parent-death signal, exit hook) when vitest ends it.
 */
import { buildGuestAddon } from './addon.ts';
import type { GuestHandle } from './guest-run.ts';
import { bootLab, type DomUOptions, type Lab, type LabOptions } from './lab.ts';

/** A file's use of the shared lab; `shutdown()` ends the session, never the shared lab. */
export interface LabSession extends Lab {
  /** Whether an earlier file booted this lab. */
  readonly reused: boolean;
  /** Destroys what this file left running and checks the lab for the next file. */
  end(): Promise<void>;
}

interface Shared {
  readonly lab: Promise<Lab>;
  readonly bootedAt: number;
  sessions: number;
}

/** Every file boots the same way, so the one lab serves them all (the addon for dom0 bundles). */
async function bootForFiles(options: LabOptions): Promise<Lab> {
  const addon = options.addon ?? (await buildGuestAddon(options.cacheDir));
  // A busy shared machine (other labs running) can take minutes to boot dom0 under TCG.
  return bootLab({ bootTimeoutMs: 600_000, ...options, addon });
}

function running(handle: GuestHandle): boolean {
  return handle.snapshot().ending === '';
}

/** Hands out sessions of one lab, booting it on first use and again after a discard. */
export class SharedLab {
  private shared: Shared | undefined;

  constructor(
    private readonly boot: (options: LabOptions) => Promise<Lab> = bootForFiles,
    private readonly log: (line: string) => void = console.log,
    /** How long end() waits for a destroyed domU's end. */
    readonly endWaitMs = 120_000,
  ) {}

  /** `file` names the session in the log; `options` only matter for a boot. */
  async session(file: string, options: LabOptions = {}): Promise<LabSession> {
    if (!this.shared) this.shared = { lab: this.boot(options), bootedAt: performance.now(), sessions: 0 };
    return openSession(this, this.shared, file);
  }

  /** Forgets `shared` if it is still the current lab (the next session boots a new one). */
  drop(shared: Shared): void {
    if (this.shared === shared) this.shared = undefined;
  }

  isCurrent(shared: Shared): boolean {
    return this.shared === shared;
  }

  say(line: string): void {
    this.log(line);
  }
}

const runLab = new SharedLab();

/**
 * Takes the run's shared lab (booting it on first use). `file` names the session in the log.
 * `options` only matter for the boot; files must not need a lab different from the others'.
 */
export function labSession(file: string, options: LabOptions = {}): Promise<LabSession> {
  return runLab.session(file, options);
}

async function openSession(owner: SharedLab, current: Shared, file: string): Promise<LabSession> {
  let lab: Lab;
  try {
    lab = await current.lab;
  } catch (error) {
    owner.drop(current);
    throw error;
  }
  const reused = current.sessions++ > 0;
  owner.say(
    reused
      ? `lab: ${file} reuses the lab booted ${((performance.now() - current.bootedAt) / 1000).toFixed(0)} s ago (session ${current.sessions})`
      : `lab: ${file} booted Xen and dom0 in ${(lab.timings.bootMs / 1000).toFixed(1)} s (images ${(lab.timings.imageBuildMs / 1000).toFixed(1)} s); later lab files reuse it`,
  );

  const domUs: { name: string; handle: GuestHandle }[] = [];
  const dom0Runs: GuestHandle[] = [];
  let ended = false;
  let unnamed = 0;

  const discard = async (why: string) => {
    owner.say(`lab: ${file} leaves the lab unusable (${why}); the next lab file boots a new one`);
    owner.drop(current);
    await lab.shutdown();
  };

  const end = async () => {
    if (ended) return;
    ended = true;
    if (!owner.isCurrent(current)) return;
    const left = domUs.filter((d) => running(d.handle));
    for (const { name } of left)
      await lab.exec(['xl', 'destroy', name], { timeoutMs: 60_000 }).catch(() => {});
    for (const { handle } of left) await handle.finished({ timeoutMs: owner.endWaitMs }).catch(() => {});
    const stuck = [...left.map((d) => d.handle), ...dom0Runs].filter(running);
    if (stuck.length > 0) return discard(`still running: ${stuck.map((h) => h.guest).join(', ')}`);
    const list = await lab.exec(['xl', 'list'], { timeoutMs: 60_000 }).catch((error: Error) => error);
    if (list instanceof Error || list.code !== 0) return discard(`xl list failed in dom0`);
    const others = list.lines.filter((line) => /^\S+\s+\d+\s/.test(line) && !line.startsWith('Domain-0'));
    if (others.length > 0) return discard(`domains left: ${others.map((l) => l.split(/\s+/)[0]).join(', ')}`);
  };

  return {
    reused,
    timings: lab.timings,
    consoleTail: (n) => lab.consoleTail(n),
    exec: (argv, o) => lab.exec(argv, o),
    shareFile: (source) => lab.shareFile(source),
    runInDom0(bundle, o) {
      const handle = lab.runInDom0(bundle, o);
      dom0Runs.push(handle);
      return handle;
    },
    createDomU(image, o: DomUOptions) {
      // A name the session knows, so end() can destroy what is left.
      const name = o.name ?? `${file.replace(/[^a-z0-9-]/g, '-').slice(0, 24)}-${o.type}-${++unnamed}`;
      const handle = lab.createDomU(image, { ...o, name });
      domUs.push({ name, handle });
      return handle;
    },
    end,
    shutdown: end,
  };
}
