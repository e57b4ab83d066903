/**
 * Entry points for plain node scripts and esbuild bundles (the lab runs bundles in its guests
 * and in its dom0, not vitest):
 *
 *   qrexec-agent [--socket-dir DIR --domain N] [--test-services] [--record FILE]
 *   qrexec-dom0 call <vm-domid> <service>[+arg] [--name NAME] [--stdin FILE] [--user U] [--socket-dir DIR]
 *   qrexec-dom0 serve <vm-domid> <vm-name> [--allow SERVICE]... [--socket-dir DIR]
 *   qrexec-dom0 check <vm-domid> [--socket-dir DIR]   (checks.ts; JSON lines, exit 0 if all pass)
 *
 * Without --socket-dir the transport is real Xen (libxenvchan through @moat/xen's native
 * addon); with it, Qubes' vchan-socket layout in DIR (our domain id from --domain, as
 * qubes-core-vchan-socket reads VCHAN_DOMAIN). --record FILE appends every byte sent and
 * received as JSON lines (`recordingVchanTransport` of `@moat/vchan/record`).
 */
import { createHash } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { type VchanTransport, xenVchanTransport } from '@moat/vchan';
import { recordingVchanTransport } from '@moat/vchan/record';
import { socketVchanTransport } from '@moat/vchan/socket';
import { openNativeDomain } from '@moat/xen';
import type { QrexecAgent } from './agent.ts';
import { checkAgent } from './checks.ts';
import { QrexecDaemon } from './dom0.ts';
import { startAgent } from './start.ts';

type Out = (text: string | Uint8Array) => void;

interface Io {
  stdout: Out;
  stderr: Out;
  /** Resolves when the process is asked to stop (SIGTERM/SIGINT). */
  stopped: Promise<void>;
}

function processIo(): Io {
  return {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    stopped: new Promise((resolve) => {
      process.once('SIGTERM', () => resolve());
      process.once('SIGINT', () => resolve());
    }),
  };
}

/** The transport, recording every byte as JSON lines to `record` when given. */
function transport(
  socketDir: string | undefined,
  domain: number,
  record: string | undefined,
): VchanTransport {
  const base = socketDir
    ? socketVchanTransport({ directory: socketDir, localDomain: domain })
    : xenVchanTransport(openNativeDomain());
  if (!record) return base;
  return recordingVchanTransport(base, (event) => appendFileSync(record, `${JSON.stringify(event)}\n`));
}

/**
 * Test services for the lab: `moat.Sha256` (stdout = hex SHA-256 of stdin and its length),
 * `moat.Echo` (stdout = stdin), `moat.Exit+N` (exit code N).
 */
export function registerTestServices(agent: QrexecAgent): void {
  agent.handle('moat.Sha256', async (call) => {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of call.stdin) {
      hash.update(chunk);
      size += chunk.length;
    }
    call.stdout.write(`${hash.digest('hex')} ${size}\n`);
    return 0;
  });
  agent.handle('moat.Echo', async (call) => {
    for await (const chunk of call.stdin) {
      if (!call.stdout.write(chunk)) await new Promise((r) => call.stdout.once('drain', r));
    }
    return 0;
  });
  agent.handle('moat.Exit', (call) => Number.parseInt(call.argument, 10) || 0);
}

/** The VM agent as a process: runs until SIGTERM. Returns the process exit code. */
export async function runAgentMain(argv: string[], io: Io = processIo()): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'socket-dir': { type: 'string' },
      domain: { type: 'string' },
      'test-services': { type: 'boolean' },
      record: { type: 'string' },
    },
  });
  const socketDir = values['socket-dir'];
  const { agent } = await startAgent({
    transport: transport(socketDir, Number(values.domain ?? 0), values.record),
    log: (level, message) => io.stderr(`qrexec-agent ${level}: ${message}\n`),
  });
  if (values['test-services']) registerTestServices(agent);
  io.stderr(`qrexec-agent: listening on port 512 (${agent.serviceNames().length} services)\n`);
  await io.stopped;
  await agent.stop();
  return 0;
}

/** dom0 side as a process: `call` prints the service's stdout/stderr and exits with its exit code. */
export async function runDom0Main(argv: string[], io: Io = processIo()): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'socket-dir': { type: 'string' },
      name: { type: 'string' },
      stdin: { type: 'string' },
      user: { type: 'string' },
      allow: { type: 'string', multiple: true },
      timeout: { type: 'string' },
      record: { type: 'string' },
    },
  });
  const [command, domidText, third] = positionals;
  const domain = Number(domidText);
  const known = command === 'call' || command === 'serve' || command === 'check';
  if (!known || !Number.isInteger(domain) || (command !== 'check' && !third)) {
    io.stderr(
      'usage: qrexec-dom0 call <domid> <service>[+arg] [--stdin FILE] | serve <domid> <name> [--allow S] | check <domid>\n',
    );
    return 2;
  }
  const log = (level: string, message: string) => {
    if (level !== 'info') io.stderr(`qrexec-dom0 ${level}: ${message}\n`);
  };
  const allowed = new Set(values.allow ?? []);
  const daemon = await QrexecDaemon.connect({
    transport: transport(values['socket-dir'], 0, values.record),
    domain,
    name: command === 'serve' && third ? third : (values.name ?? `domain-${domain}`),
    log,
    startupTimeoutMs: Number(values.timeout ?? 60_000),
    policy: (request) => {
      if (!allowed.has(request.service)) return { action: 'deny' };
      io.stdout(`${JSON.stringify({ trigger: request })}\n`);
      return { action: 'allow', service: ({ stdin }) => ({ exitCode: 0, stdout: stdin }) };
    },
  });
  try {
    if (command === 'serve') {
      io.stderr(`qrexec-dom0: connected to domain ${domain} (protocol ${daemon.version})\n`);
      await Promise.race([io.stopped, daemon.closed()]);
      return 0;
    }
    if (command === 'check' || !third) {
      const checks = await checkAgent(daemon);
      for (const c of checks) io.stdout(`${JSON.stringify(c)}\n`);
      return checks.every((c) => c.ok) ? 0 : 1;
    }
    const plus = third.indexOf('+');
    const service = plus < 0 ? third : third.slice(0, plus);
    const result = await daemon.call(service, {
      ...(plus < 0 ? {} : { argument: third.slice(plus + 1) }),
      ...(values.stdin ? { stdin: { path: values.stdin } } : {}),
      user: values.user ?? 'user',
    });
    io.stdout(result.stdout);
    io.stderr(result.stderr);
    // Give the agent's MSG_CONNECTION_TERMINATED a moment, as qrexec-client does not wait for it.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([result.terminated, new Promise((r) => (timer = setTimeout(r, 1000)))]);
    clearTimeout(timer);
    return result.exitCode;
  } finally {
    await daemon.close();
  }
}
