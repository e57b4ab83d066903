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
  readSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { type AgentCommand, type AgentEvent, LineSplitter } from '../control.ts';

const SHARE = '/mnt/lab';
const NODE = [
  '/opt/node/lib64/ld-linux-x86-64.so.2',
  '--library-path',
  '/opt/node/lib',
  '/opt/node/bin/node',
];
const CONSOLE_LOGS = '/var/log/xen';
const TAIL_INTERVAL_MS = 200;

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
) {
  const splitter = new LineSplitter((text) => send({ kind: 'line', id, stream: as, text }));
  child[stream]?.setEncoding('utf8');
  child[stream]?.on('data', (chunk: string) => splitter.push(chunk));
  child[stream]?.on('end', () => splitter.flush());
}

function start(id: number, argv: string[], env: NodeJS.ProcessEnv, timeoutMs: number, as?: 'xl') {
  const [program, ...args] = argv;
  if (!program) {
    send({ kind: 'error', id, message: 'empty argv' });
    return undefined;
  }
  const child = spawn(program, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  pipeLines(id, child, 'stdout', as ?? 'stdout');
  pipeLines(id, child, 'stderr', as ?? 'stderr');
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

/** Follows a domU's console log (xenconsoled writes it) until `stop` says the domain is gone. */
function tailConsole(id: number, name: string): { stop(): void } {
  const path = join(CONSOLE_LOGS, `guest-${name}.log`);
  const splitter = new LineSplitter((text) => send({ kind: 'line', id, stream: 'console', text }));
  const buffer = Buffer.alloc(64 * 1024);
  let offset = 0;
  const poll = () => {
    if (!existsSync(path)) return;
    const logFd = openSync(path, 'r');
    try {
      for (;;) {
        const n = readSync(logFd, buffer, 0, buffer.length, offset);
        if (n <= 0) break;
        offset += n;
        splitter.push(buffer.toString('utf8', 0, n));
      }
    } finally {
      closeSync(logFd);
    }
  };
  const timer = setInterval(poll, TAIL_INTERVAL_MS);
  return {
    stop() {
      clearInterval(timer);
      poll();
      splitter.flush();
    },
  };
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
      const config = `/run/${command.name}.cfg`;
      writeFileSync(config, command.config);
      const tail = tailConsole(command.id, command.name);
      // -F: xl stays until the domain is gone, so its exit is the domain's end.
      const result = await start(command.id, ['xl', 'create', '-F', config], baseEnv, 24 * 3600_000, 'xl');
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
