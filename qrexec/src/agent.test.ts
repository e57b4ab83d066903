import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryVchanNetwork } from '@moat/vchan/memory';
import { afterEach, describe, expect, it } from 'vitest';
import { QrexecAgent } from './agent.ts';
import { registerBuiltinServices } from './builtins.ts';
import { AdjustableClock } from './clock.ts';
import { type PolicyDecision, QrexecDaemon, type TriggerPolicy, type TriggerRequest } from './dom0.ts';
import { QrexecRefusedError } from './errors.ts';

const VM = 3;

interface Setup {
  net: MemoryVchanNetwork;
  agent: QrexecAgent;
  daemon: QrexecDaemon;
  clock: AdjustableClock;
  logs: string[];
  qubesdb: Map<string, string>;
  requests: TriggerRequest[];
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function setup(
  options: { policy?: TriggerPolicy; helloReply?: 'echo' | 'own'; fakeNow?: () => number } = {},
): Promise<Setup> {
  const net = new MemoryVchanNetwork();
  const logs: string[] = [];
  const log = (level: string, message: string) => logs.push(`${level}: ${message}`);
  const agent = new QrexecAgent({ transport: net.transport(VM), log, connectTimeoutMs: 2000 });
  const clock = new AdjustableClock(options.fakeNow);
  const qubesdb = new Map<string, string>();
  registerBuiltinServices(agent, {
    clock,
    features: { qrexec: '1', 'qubes-firewall': '1' },
    qubesdb: { write: async (path, value) => void qubesdb.set(path, value) },
  });
  await agent.start();
  const requests: TriggerRequest[] = [];
  const policy: TriggerPolicy = async (request) => {
    requests.push(request);
    return options.policy ? options.policy(request) : { action: 'deny' };
  };
  const daemon = await QrexecDaemon.connect({
    transport: net.transport(0),
    domain: VM,
    name: 'test-vm',
    log,
    policy,
    helloReply: options.helloReply ?? 'echo',
    startupTimeoutMs: 2000,
  });
  await agent.connected();
  cleanups.push(async () => {
    await daemon.close();
    await agent.stop();
  });
  return { net, agent, daemon, clock, logs, qubesdb, requests };
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('dom0 → VM calls', () => {
  it('negotiates the control channel: agent 3, dom0 4 → 3, with dom0 echoing or sending its own version', async () => {
    const echo = await setup();
    expect(echo.daemon.version).toBe(3);
    const own = await setup({ helloReply: 'own' });
    expect(own.daemon.version).toBe(3);
    expect(own.agent.isConnected).toBe(true);
  });

  it('passes 1 MiB of stdin to a TypeScript service and returns its stdout and exit code, checksummed', async () => {
    const { agent, daemon } = await setup();
    agent.handle('test.Sha256', async (call) => {
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of call.stdin) {
        hash.update(chunk);
        size += chunk.length;
      }
      call.stdout.write(`${hash.digest('hex')} ${size} ${call.sourceDomain} ${call.argument}\n`);
      call.stderr.write('done\n');
      return 7;
    });
    const input = randomBytes(1024 * 1024);
    const result = await daemon.call('test.Sha256', { stdin: input, argument: 'x' });
    expect(result.exitCode).toBe(7);
    expect(result.stdout.toString()).toBe(`${sha256(input)} ${input.length} dom0 x\n`);
    expect(result.stderr.toString()).toBe('done\n');
    await result.terminated;
    expect(daemon.portsInUse()).toEqual([]);
  });

  it('streams 1 MiB of stdout back from a service (echo), checksummed', async () => {
    const { agent, daemon } = await setup();
    agent.handle('test.Echo', async (call) => {
      call.stdin.pipe(call.stdout);
      await new Promise((resolve) => call.stdout.on('finish', resolve));
      return 0;
    });
    const input = randomBytes(1024 * 1024 + 17);
    const result = await daemon.call('test.Echo', { stdin: input });
    expect(result.exitCode).toBe(0);
    expect(sha256(result.stdout)).toBe(sha256(input));
  });

  it('takes stdin from a file', async () => {
    const { agent, daemon } = await setup();
    agent.handle('test.Size', async (call) => {
      let n = 0;
      for await (const c of call.stdin) n += c.length;
      call.stdout.write(String(n));
      return 0;
    });
    const dir = mkdtempSync(join(tmpdir(), 'qrexec-'));
    cleanups.push(async () => rmSync(dir, { recursive: true }));
    const file = join(dir, 'input');
    writeFileSync(file, randomBytes(200_000));
    const result = await daemon.call('test.Size', { stdin: { path: file } });
    expect(result.stdout.toString()).toBe('200000');
  });

  it('refuses an unknown service with exit code 127 and empty output, then sends MSG_CONNECTION_TERMINATED', async () => {
    const { daemon, agent } = await setup();
    const result = await daemon.call('qubes.NoSuchService');
    expect(result).toMatchObject({ exitCode: 127 });
    expect(result.stdout.length + result.stderr.length).toBe(0);
    await result.terminated;
    expect(agent.stats.refused).toBe(1);
  });

  it('does not provide qubes.VMShell (127): no shell is ever spawned', async () => {
    const { daemon } = await setup();
    const result = await daemon.call('qubes.VMShell', { stdin: 'echo hi\n' });
    expect(result.exitCode).toBe(127);
  });

  it('refuses a legacy shell command line with 126 and an unparsable one with 125', async () => {
    const { daemon } = await setup();
    expect((await daemon.call('', { commandLine: 'user:rm -rf /' })).exitCode).toBe(126);
    expect((await daemon.call('', { commandLine: 'user:QUBESRPC  x dom0' })).exitCode).toBe(125);
    expect((await daemon.call('', { commandLine: 'no colon at all' })).exitCode).toBe(125);
  });

  it('runs MSG_JUST_EXEC detached: exit code 0 at start, the service runs to completion', async () => {
    const { agent, daemon } = await setup();
    let ran: () => void;
    const done = new Promise<void>((resolve) => {
      ran = resolve;
    });
    agent.handle('test.Background', async (call) => {
      for await (const _ of call.stdin) throw new Error('stdin should be empty');
      ran();
      return 0;
    });
    const result = await daemon.call('test.Background', { justExec: true });
    expect(result.exitCode).toBe(0);
    await done;
    expect((await daemon.call('test.Missing', { justExec: true })).exitCode).toBe(127);
  });

  it('turns a throwing service into exit code 1 with a stderr line', async () => {
    const { agent, daemon } = await setup();
    agent.handle('test.Throw', () => {
      throw new Error('boom');
    });
    const result = await daemon.call('test.Throw');
    expect(result.exitCode).toBe(1);
    expect(result.stderr.toString()).toContain('boom');
  });

  it('serves many calls at once on distinct ports and releases them all', async () => {
    const { agent, daemon } = await setup();
    agent.handle('test.Id', async (call) => {
      for await (const c of call.stdin) call.stdout.write(c);
      return Number(call.argument);
    });
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => daemon.call('test.Id', { argument: String(i), stdin: `#${i}` })),
    );
    expect(results.map((r) => r.exitCode)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(results.map((r) => r.stdout.toString())).toEqual(Array.from({ length: 20 }, (_, i) => `#${i}`));
    expect(new Set(results.map((r) => r.port)).size).toBe(20);
    await Promise.all(results.map((r) => r.terminated));
    expect(daemon.portsInUse()).toEqual([]);
  });

  it('waits for the GUI session before a wait-for-session service unless the call is nogui', async () => {
    const net = new MemoryVchanNetwork();
    let open!: () => void;
    const session = new Promise<void>((resolve) => {
      open = resolve;
    });
    const agent = new QrexecAgent({
      transport: net.transport(VM),
      sessionReady: () => session,
      log: () => undefined,
    });
    const order: string[] = [];
    agent.handle(
      'qubes.OpenInVM',
      () => {
        order.push('served');
        return 0;
      },
      { waitForSession: true },
    );
    await agent.start();
    const daemon = await QrexecDaemon.connect({
      transport: net.transport(0),
      domain: VM,
      name: 'v',
      log: () => undefined,
    });
    cleanups.push(async () => {
      await daemon.close();
      await agent.stop();
    });
    const nogui = await daemon.call('', { commandLine: 'user:nogui:QUBESRPC qubes.OpenInVM+ dom0' });
    expect(nogui.exitCode).toBe(0);
    const call = daemon.call('qubes.OpenInVM');
    await new Promise((r) => setTimeout(r, 20));
    order.push('session');
    open();
    expect((await call).exitCode).toBe(0);
    expect(order).toEqual(['served', 'session', 'served']);
  });
});

describe('built-in services', () => {
  it('answers every built-in in a VM with no network (TemplateVM boot for qubes.PostInstall)', async () => {
    const { daemon } = await setup({ policy: () => ({ action: 'allow', service: () => ({ exitCode: 0 }) }) });
    const calls: Array<[string, string, number]> = [
      ['qubes.WaitForSession', 'user\n', 0],
      ['qubes.WaitForRunningSystem', '', 0],
      ['qubes.SetDateTime', '2030-01-02T03:04:05+00:00\n', 0],
      ['qubes.GetDate', '', 0],
      ['qubes.PostInstall', '', 0],
      ['qubes.SuspendPre', '', 0],
      ['qubes.SuspendPost', '', 0],
      ['qubes.SuspendPreAll', '', 0],
      ['qubes.SuspendPostAll', '', 0],
      ['qubes.WaitForNetworkUplink', '', 0],
      ['qubes.ResizeDisk', 'private\n', 1],
    ];
    for (const [service, stdin, code] of calls) {
      const r = await daemon.call(service, { stdin, user: 'root' });
      expect([service, r.exitCode]).toEqual([service, code]);
    }
  });

  it('qubes.SetDateTime sets the clock the VM reads; qubes.GetDate reports it', async () => {
    let base = Date.UTC(2020, 0, 1);
    const { daemon, clock } = await setup({ fakeNow: () => base });
    const set = await daemon.call('qubes.SetDateTime', { stdin: '2031-07-31T16:10:43+0000\n' });
    expect(set.exitCode).toBe(0);
    expect(new Date(clock.now()).toISOString()).toBe('2031-07-31T16:10:43.000Z');
    base += 1500;
    const date = await daemon.call('qubes.GetDate');
    expect(date.stdout.toString()).toBe('2031-07-31T16:10:44+00:00\n');
    const ns = await daemon.call('qubes.GetDate', { argument: 'nanoseconds' });
    expect(ns.stdout.toString()).toBe('2031-07-31T16:10:44,500000000+00:00\n');
    expect(ns.stdout.length).toBe(36); // what qvm-sync-clock expects
    const small = await daemon.call('qubes.SetDateTime', { stdin: '2031-07-31T16:10:45+00:00\n' });
    expect(small.exitCode).toBe(0);
    expect(clock.now()).toBe(Date.UTC(2031, 6, 31, 16, 10, 44, 500)); // within 2 s: left alone
    const bad = await daemon.call('qubes.SetDateTime', { stdin: 'yesterday\n' });
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr.toString()).toContain('invalid timestamp');
  });

  it('qubes.PostInstall writes feature requests to QubesDB and calls qubes.FeaturesRequest in dom0', async () => {
    let seen: string[] = [];
    const s = await setup({
      policy: () => ({
        action: 'allow',
        service: () => {
          seen = [...s.qubesdb.keys()];
          return { exitCode: 0 };
        },
      }),
    });
    const result = await s.daemon.call('qubes.PostInstall', { user: 'root' });
    expect(result.exitCode).toBe(0);
    expect(Object.fromEntries(s.qubesdb)).toEqual({
      '/features-request/qrexec': '1',
      '/features-request/qubes-firewall': '1',
    });
    expect(seen.length).toBe(2);
    expect(s.requests).toMatchObject([
      { source: 'test-vm', target: 'dom0', service: 'qubes.FeaturesRequest' },
    ]);
  });

  it('qubes.PostInstall exits 1 when dom0 refuses qubes.FeaturesRequest', async () => {
    const { daemon } = await setup();
    const result = await daemon.call('qubes.PostInstall');
    expect(result.exitCode).toBe(1);
    expect(result.stderr.toString()).toContain('refused');
  });
});

describe('VM-initiated calls (MSG_TRIGGER_SERVICE3)', () => {
  it('calls a dom0 service allowed by policy, with stdin in and stdout/exit code out', async () => {
    const decide = (r: TriggerRequest): PolicyDecision =>
      r.service === 'qubes.FeaturesRequest'
        ? {
            action: 'allow',
            service: ({ stdin, source, argument }) => ({
              exitCode: 3,
              stdout: `${source}:${argument}:${sha256(stdin)}`,
              stderr: 'note',
            }),
          }
        : { action: 'deny' };
    const { agent, daemon } = await setup({ policy: decide });
    const input = randomBytes(300_000);
    const result = await agent.call('dom0', 'qubes.FeaturesRequest', { argument: 'arg', stdin: input });
    expect(result).toMatchObject({ exitCode: 3 });
    expect(result.stdout.toString()).toBe(`test-vm:arg:${sha256(input)}`);
    expect(result.stderr.toString()).toBe('note');
    await new Promise((r) => setTimeout(r, 10));
    expect(daemon.portsInUse()).toEqual([]);
  });

  it('rejects with QrexecRefusedError when policy denies', async () => {
    const { agent, requests } = await setup();
    await expect(agent.call('@default', 'qubes.Filecopy')).rejects.toBeInstanceOf(QrexecRefusedError);
    expect(requests).toMatchObject([{ target: '@default', service: 'qubes.Filecopy', argument: '' }]);
  });

  it('treats a throwing policy as deny', async () => {
    const { agent } = await setup({
      policy: () => {
        throw new Error('policy broke');
      },
    });
    await expect(agent.call('dom0', 'qubes.X')).rejects.toBeInstanceOf(QrexecRefusedError);
  });

  it('lets dom0 refuse a service name that starts with + without dropping the agent', async () => {
    const { agent, daemon } = await setup({
      policy: () => ({ action: 'allow', service: () => ({ exitCode: 0 }) }),
    });
    await expect(agent.call('dom0', '+bad')).rejects.toBeInstanceOf(QrexecRefusedError);
    expect(daemon.connected).toBe(true);
    expect((await agent.call('dom0', 'qubes.Ok')).exitCode).toBe(0);
  });
});

describe('VM → VM calls routed by dom0 policy', () => {
  it('connects the caller agent (data server) to the target agent (data client) with the target daemon’s port', async () => {
    const net = new MemoryVchanNetwork();
    const quiet = () => undefined;
    const work = new QrexecAgent({ transport: net.transport(4), log: quiet });
    const viewer = new QrexecAgent({ transport: net.transport(6), log: quiet });
    let seen: { source: string; argument: string; connectDomain: number; ports: number[] } | undefined;
    viewer.handle('qubes.OpenInVM', async (call) => {
      seen = {
        source: call.sourceDomain,
        argument: call.argument,
        connectDomain: call.connectDomain,
        ports: viewerDaemon.portsInUse(),
      };
      const chunks: Buffer[] = [];
      for await (const c of call.stdin) chunks.push(c);
      call.stdout.write(createHash('sha256').update(Buffer.concat(chunks)).digest('hex'));
      return 0;
    });
    await work.start();
    await viewer.start();
    const viewerDaemon = await QrexecDaemon.connect({
      transport: net.transport(0),
      domain: 6,
      name: 'viewer',
      log: quiet,
    });
    const workDaemon = await QrexecDaemon.connect({
      transport: net.transport(0),
      domain: 4,
      name: 'work',
      log: quiet,
      policy: (r) =>
        r.target === '@dispvm:viewer' ? { action: 'allow', target: viewerDaemon } : { action: 'deny' },
    });
    cleanups.push(async () => {
      await workDaemon.close();
      await viewerDaemon.close();
      await work.stop();
      await viewer.stop();
    });
    await work.connected();
    await viewer.connected();
    const input = randomBytes(200_000);
    const result = await work.call('@dispvm:viewer', 'qubes.OpenInVM', { stdin: input });
    expect(result.exitCode).toBe(0);
    expect(result.stdout.toString()).toBe(sha256(input));
    // The viewer's daemon (domain 6) allocated for a lower peer (4): even offsets, first 513.
    expect(seen).toEqual({ source: 'work', argument: '', connectDomain: 4, ports: [513] });
    await expect.poll(() => viewerDaemon.portsInUse()).toEqual([]);
    await expect(work.call('@dispvm:other', 'qubes.OpenInVM')).rejects.toBeInstanceOf(QrexecRefusedError);
  });
});
