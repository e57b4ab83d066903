/**
 * qrexec `moat.CpuProfile+<ms>`: V8's sampling profiler over the next `<ms>` milliseconds of this
 * VM's node process (1 ms interval), written to stdout as the `Profiler.stop` JSON (the format
 * `node --cpu-prof` writes; Chrome's DevTools and speedscope read it). For finding where sys-moat
 * spends its time under load (`./moat bench firewall` calls it during iperf3). Reveals code
 * names and timing only; dom0's qrexec policy decides who may call it.
 *
 *   dom0$ qrexec-client -d sys-moat root:'QUBESRPC moat.CpuProfile+10000 dom0' > sys-moat.cpuprofile
 */
import { Session } from 'node:inspector';
import type { ServiceCall } from '@moat/qrexec';

export const PROFILE_SERVICE = 'moat.CpuProfile';
export const PROFILE_DEFAULT_MS = 10_000;
export const PROFILE_MAX_MS = 300_000;

/** The argument as milliseconds: default when empty, undefined when not a whole number in range. */
export function profileMs(argument: string): number | undefined {
  if (argument === '') return PROFILE_DEFAULT_MS;
  if (!/^[0-9]{1,6}$/.test(argument)) return undefined;
  const ms = Number(argument);
  return ms >= 1 && ms <= PROFILE_MAX_MS ? ms : undefined;
}

/** One profiling session at a time: a second caller is refused rather than queued. */
let running = false;

export async function profileService(call: ServiceCall): Promise<number> {
  const ms = profileMs(call.argument);
  if (ms === undefined) {
    call.stderr.write(`${PROFILE_SERVICE}: the argument is milliseconds, 1 to ${PROFILE_MAX_MS}\n`);
    return 2;
  }
  if (running) {
    call.stderr.write(`${PROFILE_SERVICE}: a profile is already being taken\n`);
    return 1;
  }
  running = true;
  const session = new Session();
  const post = <T>(method: string, params?: object) =>
    new Promise<T>((resolve, reject) =>
      session.post(method, params, (error, result) => (error ? reject(error) : resolve(result as T))),
    );
  try {
    session.connect();
    await post('Profiler.enable');
    await post('Profiler.setSamplingInterval', { interval: 1000 });
    await post('Profiler.start');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      call.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    const { profile } = await post<{ profile: unknown }>('Profiler.stop');
    call.stdout.write(`${JSON.stringify(profile)}\n`);
    return 0;
  } finally {
    session.disconnect();
    running = false;
  }
}
