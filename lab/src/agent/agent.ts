/**
 * The lab's agent in dom0 (bundled by esbuild, started by dom0's init with node from the node
 * disk): reads commands from the control port, runs bundles and creates domUs, and forwards
 * every output line back. It never decides whether a test passed; the host does, from the
 * guests' own lines.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  createReadStream,
  existsSync,
  openSync,
  readFileSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { type AgentCommand, type AgentEvent, LineSplitter } from '../control.ts';
import { followNewConsoleLog } from './console-tail.ts';

const SHARE = '/mnt/lab';
const NODE = [
  '/opt/node/lib64/ld-linux-x86-64.so.2',
  '--library-path',
  '/opt/node/lib',
  '/opt/node/bin/node',
];
const CONSOLE_LOGS = '/var/log/xen';

const port = process.argv[2];
if (!port) throw new Error('usage: agent.js <control port device>');
const fd = openSync(port, 'r+');
const children = new Set<ChildProcess>();

function send(event: AgentEvent): void {
  writeSync(fd, `${JSON.stringify(event)}\n`);
}

function pipeLines(
  id: number,
  child: ChildProcess,
  stream: 'stdout' | 'stderr',
  as: 'stdout' | 'stderr' | 'xl',
  observe?: (text: string) => void,
) {
  const splitter = new LineSplitter((text) => {
    observe?.(text);
    send({ kind: 'line', id, stream: as, text });
  });
  child[stream]?.setEncoding('utf8');
  child[stream]?.on('data', (chunk: string) => splitter.push(chunk));
  child[stream]?.on('end', () => splitter.flush());
}

function start(
  id: number,
  argv: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  as?: 'xl',
  observe?: (text: string) => void,
) {
  const [program, ...args] = argv;
  if (!program) {
    send({ kind: 'error', id, message: 'empty argv' });
    return undefined;
  }
  const child = spawn(program, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  pipeLines(id, child, 'stdout', as ?? 'stdout', observe);
  pipeLines(id, child, 'stderr', as ?? 'stderr', observe);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  child.on('error', (error) => send({ kind: 'error', id, message: `${program}: ${error.message}` }));
  return new Promise<{ code: number | null; signal: string | null; timedOut: boolean }>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, timedOut });
    });
  });
}

const baseEnv = { PATH: '/bin:/usr/bin:/usr/lib/xen-4.17/bin', HOME: '/tmp' };

/**
 * The last line our domU init (unikernel/src/init/init.c, power_off) prints before it powers the
 * domain off: once the log has it, everything the guest printed is in the log.
 */
const INIT_LAST_LINE = /^moat-init: power off \(status -?\d+\)$/;

/** Runs an xl subcommand quietly and returns its exit code (null if it could not run). */
function xlQuiet(args: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn('xl', args, { env: baseEnv, stdio: 'ignore' });
    child.on('error', () => resolve(null));
    child.on('close', (code) => resolve(code));
  });
}

async function handle(command: AgentCommand): Promise<void> {
  switch (command.op) {
    case 'run': {
      const bundle = join(SHARE, command.bundle);
      const addon = join(SHARE, 'addon', 'moat_xen.node');
      const env = {
        ...baseEnv,
        MOAT_ARGS: JSON.stringify(command.args),
        ...(existsSync(addon) ? { MOAT_XEN_ADDON: addon } : {}),
      };
      const result = await start(command.id, [...NODE, bundle], env, command.timeoutMs);
      if (result) send({ kind: 'exit', id: command.id, ...result });
      return;
    }
    case 'exec': {
      const result = await start(command.id, command.argv, baseEnv, command.timeoutMs);
      if (result) send({ kind: 'exit', id: command.id, ...result });
      return;
    }
    case 'create': {
      if (!/^[a-z0-9-]{1,40}$/.test(command.name)) {
        send({ kind: 'error', id: command.id, message: `bad domain name ${command.name}` });
        return;
      }
      // The console log is by name: a live domain of that name would lose its log to us.
      if ((await xlQuiet(['domid', command.name])) === 0) {
        send({ kind: 'error', id: command.id, message: `a domain named ${command.name} is running already` });
        return;
      }
      const config = `/run/${command.name}.cfg`;
      writeFileSync(config, command.config);
      const tail = followNewConsoleLog(join(CONSOLE_LOGS, `guest-${command.name}.log`), (text) =>
        send({ kind: 'line', id: command.id, stream: 'console', text }),
      );
      // -F: xl stays until the domain has shut down. The config preserves a shut-down domain,
      // so xenconsoled still reads what is left in its console ring (the guest's last lines, a
      // panic) while we drain the log; only then is the domain destroyed.
      // The id xl created (never the name: when the create fails because the name is taken,
      // the domain of that name is someone else's).
      let domid: number | undefined;
      const result = await start(
        command.id,
        ['xl', 'create', '-F', config],
        baseEnv,
        24 * 3600_000,
        'xl',
        (text) => {
          const created = /\(domid (\d+)\) to die/.exec(text);
          if (created) domid = Number(created[1]);
        },
      );
      if (domid !== undefined) {
        await tail.drain(INIT_LAST_LINE);
        // Quietly: a timeout may have destroyed it already.
        await xlQuiet(['destroy', String(domid)]);
      }
      tail.stop();
      if (result) send({ kind: 'exit', id: command.id, ...result });
      return;
    }
    case 'poweroff':
      for (const child of children) child.kill('SIGKILL');
      send({ kind: 'exit', id: command.id, code: 0, signal: null });
      closeSync(fd);
      process.exit(0);
  }
}

const splitter = new LineSplitter((line) => {
  if (!line.trim()) return;
  let command: AgentCommand;
  try {
    command = JSON.parse(line) as AgentCommand;
  } catch {
    send({ kind: 'error', id: -1, message: `bad command line: ${line.slice(0, 200)}` });
    return;
  }
  handle(command).catch((error: Error) => send({ kind: 'error', id: command.id, message: error.message }));
});
createReadStream('', { fd, autoClose: false, encoding: 'utf8' })
  .on('data', (chunk) => splitter.push(String(chunk)))
  .on('error', (error) => {
    console.error(`moat-agent: control port read failed: ${error.message}`);
    process.exit(1);
  });
// dom0's own uptime: how long Xen and dom0 took to get here.
const uptime = Number.parseFloat(readFileSync('/proc/uptime', 'utf8').split(' ')[0] ?? '0');
send({ kind: 'ready', uptimeMs: Math.round(uptime * 1000) });
