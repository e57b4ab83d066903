import { spawn } from 'node:child_process';
import { ImageBuildError } from './errors.ts';

/**
 * Runs a program (never through a shell) and resolves with its stdout; rejects with the
 * program's stderr tail when it fails or outlives `timeoutMs`.
 */
export function runProgram(
  step: string,
  program: string,
  args: readonly string[],
  options: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 300_000;
  return new Promise((resolvePromise, reject) => {
    const child = spawn(program, args, { cwd: options.cwd, env: options.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new ImageBuildError(step, `${program} did not finish within ${timeoutMs} ms`, { args }));
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new ImageBuildError(step, `cannot start ${program}: ${error.message}`, { args }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) {
        resolvePromise(Buffer.concat(out).toString('utf8'));
        return;
      }
      const stderr = Buffer.concat(err).toString('utf8').slice(-2000);
      reject(
        new ImageBuildError(step, `${program} failed (${signal ?? `exit code ${code}`}): ${stderr.trim()}`, {
          args,
        }),
      );
    });
  });
}
