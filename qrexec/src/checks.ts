/**
 * Checks dom0 runs against a VM's agent, for the lab (real Xen) and for hosts alike: the
 * issue's "answers a qrexec call from dom0 with 1 MiB of stdin in and stdout/exit code out
 * (checksummed), and refuses an unknown service", plus the built-ins every moat VM answers.
 * The agent must have the test services (`registerTestServices`, `--test-services`).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { QrexecDaemon } from './dom0.ts';

export interface AgentCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** Wall time of the call, for reports (never asserted). */
  ms: number;
}

export async function checkAgent(
  daemon: QrexecDaemon,
  options: { stdinBytes?: number; timeoutMs?: number } = {},
): Promise<AgentCheck[]> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const checks: AgentCheck[] = [];
  const run = async (name: string, body: () => Promise<[boolean, string]>) => {
    const t0 = performance.now();
    try {
      const [ok, detail] = await body();
      checks.push({ name, ok, detail, ms: performance.now() - t0 });
    } catch (e) {
      checks.push({
        name,
        ok: false,
        detail: e instanceof Error ? e.message : String(e),
        ms: performance.now() - t0,
      });
    }
  };
  const size = options.stdinBytes ?? 1024 * 1024;

  await run(`moat.Sha256 with ${size} bytes of stdin`, async () => {
    const input = randomBytes(size);
    const expected = `${createHash('sha256').update(input).digest('hex')} ${size}\n`;
    const r = await daemon.call('moat.Sha256', { stdin: input, timeoutMs });
    const got = r.stdout.toString('latin1');
    return [
      r.exitCode === 0 && got === expected,
      `exit ${r.exitCode}, stdout ${JSON.stringify(got.slice(0, 80))}`,
    ];
  });
  await run('moat.Echo returns stdin byte for byte', async () => {
    const input = randomBytes(Math.min(size, 256 * 1024));
    const r = await daemon.call('moat.Echo', { stdin: input, timeoutMs });
    return [
      r.exitCode === 0 && Buffer.compare(r.stdout, input) === 0,
      `exit ${r.exitCode}, ${r.stdout.length} bytes`,
    ];
  });
  await run('moat.Exit+7 exits 7', async () => {
    const r = await daemon.call('moat.Exit', { argument: '7', timeoutMs });
    return [r.exitCode === 7, `exit ${r.exitCode}`];
  });
  await run('an unknown service is refused with 127', async () => {
    const r = await daemon.call('moat.NoSuchService', { timeoutMs });
    return [r.exitCode === 127 && r.stdout.length === 0, `exit ${r.exitCode}`];
  });
  await run('qubes.VMShell is not provided (127)', async () => {
    const r = await daemon.call('qubes.VMShell', { stdin: 'true\n', timeoutMs });
    return [r.exitCode === 127, `exit ${r.exitCode}`];
  });
  await run('the agent sends MSG_CONNECTION_TERMINATED after a call', async () => {
    const r = await daemon.call('qubes.WaitForRunningSystem', { timeoutMs });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        r.terminated,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('no MSG_CONNECTION_TERMINATED')), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    return [r.exitCode === 0, `exit ${r.exitCode}, port ${r.port} released`];
  });
  for (const [service, stdin] of [
    ['qubes.WaitForSession', 'user\n'],
    ['qubes.SuspendPre', ''],
    ['qubes.SuspendPost', ''],
    ['qubes.WaitForNetworkUplink', ''],
  ] as const) {
    await run(`${service} answers 0`, async () => {
      const r = await daemon.call(service, { stdin, user: 'root', timeoutMs });
      return [r.exitCode === 0, `exit ${r.exitCode}`];
    });
  }
  await run('qubes.GetDate answers a date -Iseconds line', async () => {
    const r = await daemon.call('qubes.GetDate', { timeoutMs });
    const line = r.stdout.toString('latin1');
    return [r.exitCode === 0 && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\n$/.test(line), JSON.stringify(line)];
  });
  return checks;
}
