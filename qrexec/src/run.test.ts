/**
 * The agent and dom0 entry points as the lab runs them: esbuild bundles started with plain
 * node (no vitest, no tsx), talking over vchan-socket in a temporary directory.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let dir: string;
let agent: ChildProcess | undefined;
const here = new URL('.', import.meta.url).pathname;

function dom0(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(dir, 'qrexec-dom0.js'), ...args, '--socket-dir', join(dir, 'vchan'), '--timeout', '10000'],
      { encoding: 'latin1', timeout: 20_000 },
      (error, stdout, stderr) => {
        const code = error && typeof error.code === 'number' ? error.code : error ? -1 : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'qrexec-run-'));
  await build({
    entryPoints: [join(here, 'bin/qrexec-agent.ts'), join(here, 'bin/qrexec-dom0.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    outdir: dir,
    logLevel: 'error',
  });
  const socketDir = join(dir, 'vchan');
  mkdirSync(socketDir);
  agent = spawn(
    process.execPath,
    [join(dir, 'qrexec-agent.js'), '--socket-dir', socketDir, '--domain', '7', '--test-services'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  await new Promise<void>((resolve, reject) => {
    agent!.stderr!.on('data', (d: Buffer) => {
      if (d.toString().includes('listening')) resolve();
    });
    agent!.once('exit', (code) => reject(new Error(`agent exited ${code}`)));
  });
});

afterAll(async () => {
  if (agent && agent.exitCode === null) {
    const exited = new Promise((resolve) => agent!.once('exit', resolve));
    agent.kill('SIGTERM');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('bundled entry points under plain node', () => {
  it('calls moat.Sha256 with 1 MiB of stdin from a file and gets the checksum and exit code 0', async () => {
    const input = randomBytes(1 << 20);
    const file = join(dir, 'input');
    writeFileSync(file, input);
    const r = await dom0(['call', '7', 'moat.Sha256', '--stdin', file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${createHash('sha256').update(input).digest('hex')} ${input.length}\n`);
  });

  it('exits with the refusal code 127 for an unknown service and with the service exit code otherwise', async () => {
    expect((await dom0(['call', '7', 'qubes.NoSuchService'])).code).toBe(127);
    expect((await dom0(['call', '7', 'moat.Exit+3'])).code).toBe(3);
    expect((await dom0(['call', '7', 'qubes.VMShell'])).code).toBe(127);
  });

  it("passes every agent check (the lab's checks, run here over vchan-socket)", async () => {
    const r = await dom0(['check', '7']);
    const checks = r.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { name: string; ok: boolean; detail: string });
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(checks.length).toBe(11);
    expect(r.code).toBe(0);
  });

  it('prints usage and exits 2 on bad arguments', async () => {
    const r = await dom0(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('usage');
  });
});
