import { spawn, spawnSync } from 'node:child_process';
import { SetupProblem } from './errors.ts';

/** Runs a program (never through a shell) with inherited stdio; resolves with its exit code. */
export function run(
  program: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(program, args, {
      stdio: 'inherit',
      cwd: options.cwd,
      env: options.env ?? process.env,
    });
    child.on('error', (error) => reject(new SetupProblem(`cannot start ${program}: ${error.message}`)));
    child.on('exit', (code, signal) => resolvePromise(code ?? (signal ? 128 : 1)));
  });
}

/** The Debian packages of `names` that are not installed. */
export function missingDebianPackages(names: readonly string[]): string[] {
  if (names.length === 0) return [];
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a dpkg-query format, not a JS template
  const format = '-f=${Package} ${db:Status-Abbrev}\n';
  const query = spawnSync('dpkg-query', ['-W', format, ...names], { encoding: 'utf8' });
  const installed = new Set(
    query.stdout
      .split('\n')
      .filter((line) => line.trimEnd().endsWith(' ii'))
      .map((line) => line.split(' ')[0]?.split(':')[0]),
  );
  return names.filter((name) => !installed.has(name));
}

/** Installs missing Debian packages with apt-get (root only); a no-op when all are present. */
export async function ensureDebianPackages(
  names: readonly string[],
  log: (line: string) => void,
): Promise<void> {
  const missing = missingDebianPackages(names);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    throw new SetupProblem(
      `missing Debian packages: ${missing.join(' ')} (run as root, or: apt-get install ${missing.join(' ')})`,
    );
  }
  log(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // apt-get update only when the package lists are not usable yet.
  if ((await run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { env })) === 0)
    return;
  if ((await run('apt-get', ['update', '-q'], { env })) !== 0)
    throw new SetupProblem('apt-get update failed');
  if ((await run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { env })) !== 0) {
    throw new SetupProblem(`apt-get install failed for: ${missing.join(' ')}`);
  }
}
