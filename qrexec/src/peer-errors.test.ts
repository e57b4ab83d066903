/**
 * Bad input from the peer: each case ends that connection with a QrexecProtocolError-backed
 * log line and counters, never the process (an unhandled rejection would fail the run), and
 * the other side keeps working afterwards.
 */

import { MemoryVchanNetwork } from '@moat/vchan/memory';
import { afterEach, describe, expect, it } from 'vitest';
import { QrexecAgent } from './agent.ts';
import { QrexecDaemon } from './dom0.ts';
import { QrexecProtocolError } from './errors.ts';
import { accepted } from './frames.ts';
import { RawPeer } from './test-peer.ts';
import { encodeHeader, encodeMessage, MsgType, requestIdFromText } from './wire.ts';

const VM = 5;

const header = (type: number, length: number) => encodeHeader({ type, length });
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function agentWithRawDom0(): Promise<{
  net: MemoryVchanNetwork;
  agent: QrexecAgent;
  dom0: RawPeer;
  logs: string[];
  aborted: string[];
}> {
  const net = new MemoryVchanNetwork();
  const logs: string[] = [];
  const aborted: string[] = [];
  const agent = new QrexecAgent({
    transport: net.transport(VM),
    log: (level, m) => logs.push(`${level}: ${m}`),
    connectTimeoutMs: 500,
  });
  agent.handle('test.Cat', async (call) => {
    call.signal.addEventListener('abort', () => aborted.push(String(call.signal.reason)));
    for await (const c of call.stdin) call.stdout.write(c);
    return 0;
  });
  await agent.start();
  const dom0 = new RawPeer(await net.transport(0).connect({ peer: VM, port: 512, timeoutMs: 500 }));
  const hello = await dom0.message();
  expect(hello).toEqual({ type: MsgType.HELLO, payload: Buffer.from([3, 0, 0, 0]) });
  dom0.send({ kind: 'hello', version: 3 });
  await agent.connected();
  cleanups.push(() => agent.stop());
  return { net, agent, dom0, logs, aborted };
}

/** After a control failure the agent offers a fresh port-512 server, like a restarted agent. */
async function expectAgentRecovers(net: MemoryVchanNetwork, agent: QrexecAgent): Promise<void> {
  await expect.poll(() => net.advertised()).toContain(`${VM}.0.512`);
  const daemon = await QrexecDaemon.connect({
    transport: net.transport(0),
    domain: VM,
    name: 'vm',
    log: () => undefined,
  });
  cleanups.push(() => daemon.close());
  const r = await daemon.call('test.Cat', { stdin: 'still alive' });
  expect(r.stdout.toString()).toBe('still alive');
  expect(agent.isConnected).toBe(true);
}

describe('agent against a misbehaving dom0 (control channel)', () => {
  const cases: Array<[string, Uint8Array, string]> = [
    ['a truncated header then EOF', header(MsgType.EXEC_CMDLINE, 20).subarray(0, 5), 'early-eof'],
    ['an exec message with len 8 (no cmdline)', header(MsgType.EXEC_CMDLINE, 8), 'bad-length'],
    ['an oversized exec message', header(MsgType.JUST_EXEC, 8 + 65536), 'bad-length'],
    ['SERVICE_CONNECT with the wrong length', header(MsgType.SERVICE_CONNECT, 41), 'bad-length'],
    ['an unknown message type', header(0x555, 0), 'unknown-type'],
    ['a data message on the control channel', header(MsgType.DATA_STDIN, 1), 'unexpected-type'],
    [
      'a message cut short by EOF',
      Buffer.concat([header(MsgType.EXEC_CMDLINE, 30), Buffer.alloc(10)]),
      'early-eof',
    ],
  ];
  for (const [what, bytes, reason] of cases) {
    it(`ends the control connection on ${what} (${reason}) and listens again`, async () => {
      const { net, agent, dom0, logs } = await agentWithRawDom0();
      dom0.stream.write(bytes);
      if (reason === 'early-eof') dom0.stream.end();
      await dom0.eof();
      await expect.poll(() => agent.stats.controlErrors).toBe(1);
      expect(logs.join('\n')).toContain(reason);
      await expectAgentRecovers(net, agent);
    });
  }

  it('refuses a dom0 HELLO below version 2', async () => {
    const net = new MemoryVchanNetwork();
    const logs: string[] = [];
    const agent = new QrexecAgent({ transport: net.transport(VM), log: (_l, m) => logs.push(m) });
    agent.handle('test.Cat', async (call) => {
      for await (const c of call.stdin) call.stdout.write(c);
      return 0;
    });
    cleanups.push(() => agent.stop());
    await agent.start();
    const dom0 = new RawPeer(await net.transport(0).connect({ peer: VM, port: 512, timeoutMs: 500 }));
    await dom0.message();
    dom0.send({ kind: 'hello', version: 1 });
    await dom0.eof();
    expect(logs.join('\n')).toContain('bad-version');
    await expectAgentRecovers(net, agent);
  });

  it('ignores SERVICE_CONNECT / SERVICE_REFUSED for requests it never made', async () => {
    const { agent, dom0, logs, net } = await agentWithRawDom0();
    dom0.send({
      kind: 'service-connect',
      connectDomain: 0,
      connectPort: 600,
      requestId: requestIdFromText('X'),
    });
    dom0.send({ kind: 'service-refused', requestId: requestIdFromText('Y') });
    await expect.poll(() => logs.filter((l) => l.includes('unknown')).length).toBe(2);
    expect(agent.isConnected).toBe(true);
    expect(net.advertised()).not.toContain(`${VM}.0.512`);
  });
});

describe('agent service side against a misbehaving caller (data channel)', () => {
  /** dom0 has the agent run `service` for a caller listening on `port`; returns the caller's data end. */
  async function execService(
    s: { net: MemoryVchanNetwork; dom0: RawPeer },
    service: string,
    port = 513,
  ): Promise<RawPeer> {
    const listener = await s.net
      .transport(0)
      .listen({ peer: VM, port: port, readMin: 65536, writeMin: 65536 });
    s.dom0.send({
      kind: 'exec-cmdline',
      connectDomain: 0,
      connectPort: port,
      cmdline: `user:QUBESRPC ${service}+ dom0`,
    });
    return new RawPeer(await accepted(listener));
  }

  async function openCall() {
    const s = await agentWithRawDom0();
    const data = await execService(s, 'test.Cat');
    expect(await data.message()).toEqual({ type: MsgType.HELLO, payload: Buffer.from([3, 0, 0, 0]) });
    return { ...s, data };
  }

  async function expectTerminated(dom0: RawPeer): Promise<void> {
    const m = await dom0.message();
    expect(m.type).toBe(MsgType.CONNECTION_TERMINATED);
    expect([m.payload.readUInt32LE(0), m.payload.readUInt32LE(4)]).toEqual([0, 513]);
  }

  const cases: Array<[string, (data: RawPeer) => void, string]> = [
    [
      'a data chunk over 64 KiB',
      (d) => {
        d.send({ kind: 'hello', version: 4 });
        d.send(header(MsgType.DATA_STDIN, 65537));
      },
      'too-big-data-chunk',
    ],
    [
      'an unknown message type',
      (d) => {
        d.send({ kind: 'hello', version: 4 });
        d.send(header(0x777, 0));
      },
      'unknown-type',
    ],
    [
      'a control message on the data channel',
      (d) => {
        d.send({ kind: 'hello', version: 4 });
        d.send({ kind: 'connection-terminated', connectDomain: 0, connectPort: 513 });
      },
      'unexpected-type',
    ],
    [
      'EOF in the middle of a message',
      (d) => {
        d.send({ kind: 'hello', version: 4 });
        d.send(Buffer.concat([header(MsgType.DATA_STDIN, 100), Buffer.alloc(10)]));
        d.stream.end();
      },
      'early-eof',
    ],
    [
      'a HELLO with the wrong length',
      (d) => d.send(Buffer.concat([header(MsgType.HELLO, 5), Buffer.alloc(5)])),
      'bad-length',
    ],
    ['a HELLO below version 2', (d) => d.send({ kind: 'hello', version: 1 }), 'bad-version'],
    ['data before HELLO', (d) => d.send({ kind: 'data-stdin', data: Uint8Array.of(1) }), 'unexpected-type'],
  ];
  for (const [what, act, reason] of cases) {
    it(`ends the call on ${what} (${reason}), aborts the service, sends MSG_CONNECTION_TERMINATED`, async () => {
      const { data, dom0, agent, logs, net } = await openCall();
      act(data);
      await data.eof();
      await expectTerminated(dom0);
      expect(agent.stats.connectionErrors).toBe(1);
      expect(logs.join('\n')).toContain(reason);
      expect(agent.isConnected).toBe(true);
      // The same control connection still serves calls.
      const ok = await execService({ net, dom0 }, 'test.Cat', 514);
      await ok.message();
      ok.send({ kind: 'hello', version: 3 });
      ok.send({ kind: 'data-stdin', data: Buffer.from('hi') });
      ok.send({ kind: 'data-stdin', data: new Uint8Array(0) });
      const got: Array<[number, string]> = [];
      for (;;) {
        const m = await ok.message();
        got.push([m.type, m.payload.toString('hex')]);
        if (m.type === MsgType.DATA_EXIT_CODE) break;
      }
      expect(got).toEqual([
        [MsgType.DATA_STDOUT, Buffer.from('hi').toString('hex')],
        [MsgType.DATA_STDOUT, ''],
        [MsgType.DATA_STDERR, ''],
        [MsgType.DATA_EXIT_CODE, '00000000'],
      ]);
    });
  }

  it('accepts MSG_DATA_STDOUT from the caller as stdin (with one warning) and ignores STDERR/EXIT_CODE', async () => {
    const { data, logs } = await openCall();
    data.send({ kind: 'hello', version: 3 });
    data.send({ kind: 'data-stdout', data: Buffer.from('a') });
    data.send({ kind: 'data-stdout', data: Buffer.from('b') });
    data.send({ kind: 'data-stderr', data: Buffer.from('x') });
    data.send({ kind: 'data-exit-code', code: 9 });
    data.send({ kind: 'data-stdin', data: new Uint8Array(0) });
    let out = '';
    for (;;) {
      const m = await data.message();
      if (m.type !== MsgType.DATA_STDOUT || m.payload.length === 0) break;
      out += m.payload.toString();
    }
    expect(out).toBe('ab');
    expect(logs.filter((l) => l.includes('MSG_DATA_STDOUT')).length).toBe(1);
  });

  it('survives a caller that vanishes while the service is still writing (write errors after EOF)', async () => {
    const s = await agentWithRawDom0();
    let wrote = 0;
    s.agent.handle('test.Late', async (call) => {
      for await (const _ of call.stdin) {
        // read to EOF first, so our reader has finished before the writes fail
      }
      await new Promise((r) => setTimeout(r, 20));
      for (let i = 0; i < 32 && !call.signal.aborted; i++) {
        call.stdout.write(Buffer.alloc(65536, i));
        wrote++;
        await new Promise((r) => setImmediate(r));
      }
      return 0;
    });
    const data = await execService(s, 'test.Late');
    await data.message();
    data.send({ kind: 'hello', version: 3 });
    data.send({ kind: 'data-stdin', data: new Uint8Array(0) });
    await new Promise((r) => setTimeout(r, 5));
    data.stream.destroy();
    await expectTerminated(s.dom0);
    expect(wrote).toBeGreaterThan(0);
    expect(s.agent.isConnected).toBe(true);
  });

  it('sends MSG_CONNECTION_TERMINATED when the caller vanishes even if the service never returns', async () => {
    const s = await agentWithRawDom0();
    let signalled = false;
    s.agent.handle('test.Stuck', (call) => {
      call.signal.addEventListener('abort', () => {
        signalled = true;
      });
      return new Promise<number>(() => undefined); // ignores everything, forever
    });
    const data = await execService(s, 'test.Stuck');
    await data.message();
    data.send({ kind: 'hello', version: 3 });
    data.send(header(0x999, 0)); // then misbehaves: the agent drops the connection
    await expectTerminated(s.dom0);
    expect(signalled).toBe(true);
  });

  // vchan has no half-close (libvchan_close ends both directions; so does our VchanStream's end()):
  // a caller that stops without stdin EOF has closed the channel, and nothing can reach it after.
  it('gives the service EOF when the caller closes without stdin EOF', async () => {
    const s = await agentWithRawDom0();
    const read: string[] = [];
    let ended = false;
    s.agent.handle('test.Read', async (call) => {
      for await (const c of call.stdin) read.push(String(c));
      ended = true;
      return 0;
    });
    const data = await execService(s, 'test.Read');
    expect(await data.message()).toEqual({ type: MsgType.HELLO, payload: Buffer.from([3, 0, 0, 0]) });
    data.send({ kind: 'hello', version: 3 });
    data.send({ kind: 'data-stdin', data: Buffer.from('partial') });
    data.stream.end();
    await expectTerminated(s.dom0);
    expect(read.join('')).toBe('partial');
    expect(ended).toBe(true);
    expect(s.agent.isConnected).toBe(true);
  });
});

describe('dom0 daemon against a misbehaving agent', () => {
  async function rawAgent(version = 3) {
    const net = new MemoryVchanNetwork();
    const listener = await net.transport(VM).listen({ peer: 0, port: 512, readMin: 4096, writeMin: 4096 });
    const logs: string[] = [];
    const connecting = QrexecDaemon.connect({
      transport: net.transport(0),
      domain: VM,
      name: 'bad-vm',
      log: (_l, m) => logs.push(m),
      policy: () => ({ action: 'allow', service: () => ({ exitCode: 0 }) }),
    });
    const agent = new RawPeer(await accepted(listener));
    agent.send({ kind: 'hello', version });
    return { net, agent, connecting, logs };
  }

  it('echoes the agent version in its HELLO reply (the C daemon quirk) and negotiates min(agent, 4)', async () => {
    const { agent, connecting } = await rawAgent(3);
    const daemon = await connecting;
    cleanups.push(() => daemon.close());
    expect(await agent.message()).toEqual({ type: MsgType.HELLO, payload: Buffer.from([3, 0, 0, 0]) });
    expect(daemon.version).toBe(3);
  });

  it('rejects an agent HELLO below version 2', async () => {
    const { connecting } = await rawAgent(1);
    await expect(connecting).rejects.toMatchObject({ reason: 'bad-version' });
  });

  it('rejects a first message that is not HELLO', async () => {
    const net = new MemoryVchanNetwork();
    const listener = await net.transport(VM).listen({ peer: 0, port: 512, readMin: 4096, writeMin: 4096 });
    const connecting = QrexecDaemon.connect({
      transport: net.transport(0),
      domain: VM,
      name: 'x',
      log: () => undefined,
    });
    new RawPeer(await accepted(listener)).send(header(MsgType.CONNECTION_TERMINATED, 8));
    await expect(connecting).rejects.toBeInstanceOf(QrexecProtocolError);
  });

  const cases: Array<[string, Uint8Array, string]> = [
    ['an unknown type', header(0x999, 0), 'unknown-type'],
    ['MSG_CONNECTION_TERMINATED with len 9', header(MsgType.CONNECTION_TERMINATED, 9), 'bad-length'],
    [
      'MSG_CONNECTION_TERMINATED for port 512',
      encodeMessage({ kind: 'connection-terminated', connectDomain: 0, connectPort: 512 }),
      'bad-port',
    ],
    [
      'MSG_CONNECTION_TERMINATED for port 769',
      encodeMessage({ kind: 'connection-terminated', connectDomain: 0, connectPort: 769 }),
      'bad-port',
    ],
    ['the v2 MSG_TRIGGER_SERVICE at v3', header(MsgType.TRIGGER_SERVICE, 128), 'unexpected-type'],
    ['MSG_TRIGGER_SERVICE4 at v3', header(MsgType.TRIGGER_SERVICE4, 200), 'unexpected-type'],
    ['MSG_TRIGGER_SERVICE3 with no service name', header(MsgType.TRIGGER_SERVICE3, 96), 'bad-length'],
    [
      'MSG_TRIGGER_SERVICE3 over 65000 bytes of name',
      header(MsgType.TRIGGER_SERVICE3, 96 + 65001),
      'bad-length',
    ],
    ['a second HELLO', encodeMessage({ kind: 'hello', version: 3 }), 'unexpected-type'],
    ['a truncated header then EOF', header(MsgType.CONNECTION_TERMINATED, 8).subarray(0, 3), 'early-eof'],
  ];
  for (const [what, bytes, reason] of cases) {
    it(`closes the control connection on ${what} (${reason})`, async () => {
      const { agent, connecting } = await rawAgent();
      const daemon = await connecting;
      await agent.message(); // HELLO reply
      agent.stream.write(bytes);
      if (reason === 'early-eof') agent.stream.end();
      await daemon.closed();
      expect(daemon.closedReason).toMatchObject({ reason });
      await agent.eof();
      await expect(daemon.call('test.X')).rejects.toThrow(/not connected/);
    });
  }

  it('answers a trigger with a malformed request id with MSG_SERVICE_REFUSED carrying the same bytes', async () => {
    const { agent, connecting } = await rawAgent();
    const daemon = await connecting;
    cleanups.push(() => daemon.close());
    await agent.message();
    const id = requestIdFromText('bad/id');
    agent.send({ kind: 'trigger-service3', targetDomain: 'dom0', requestId: id, serviceName: 'qubes.X' });
    const refused = await agent.message();
    expect(refused.type).toBe(MsgType.SERVICE_REFUSED);
    expect(refused.payload.toString('hex')).toBe(Buffer.from(id).toString('hex'));
    expect(daemon.connected).toBe(true);
    expect(daemon.counters.refused).toBe(1);
  });

  it('releases a data port only for the domain it was reserved for', async () => {
    const { agent, connecting, net } = await rawAgent();
    const daemon = await connecting;
    cleanups.push(() => daemon.close());
    await agent.message();
    const call = daemon.call('test.Y', { timeoutMs: 2000 });
    const exec = await agent.message();
    expect(exec.type).toBe(MsgType.EXEC_CMDLINE);
    expect(exec.payload.subarray(8).toString('latin1')).toBe('user:QUBESRPC test.Y+ dom0\0');
    const data = new RawPeer(await net.transport(VM).connect({ peer: 0, port: 513, timeoutMs: 500 }));
    expect((await data.message()).payload.readUInt32LE(0)).toBe(4); // dom0 sends its own version
    data.send({ kind: 'hello', version: 3 });
    data.send({ kind: 'data-stdout', data: new Uint8Array(0) });
    data.send(Buffer.concat([header(MsgType.DATA_EXIT_CODE, 1), Buffer.from([7])])); // short: status 255
    const result = await call;
    expect(result.exitCode).toBe(255);
    agent.send({ kind: 'connection-terminated', connectDomain: 9, connectPort: 513 });
    await new Promise((r) => setTimeout(r, 10));
    expect(daemon.portsInUse()).toEqual([513]);
    agent.send({ kind: 'connection-terminated', connectDomain: 0, connectPort: 513 });
    await result.terminated;
    expect(daemon.portsInUse()).toEqual([]);
  });

  const dataCases: Array<[string, (d: RawPeer) => void, string]> = [
    ['an oversized stdout chunk', (d) => d.send(header(MsgType.DATA_STDOUT, 65537)), 'too-big-data-chunk'],
    ['EOF before the exit code', (d) => d.stream.end(), 'early-eof'],
    ['an unknown data message type', (d) => d.send(header(0x194, 0)), 'unknown-type'],
  ];
  for (const [what, act, reason] of dataCases) {
    it(`fails the dom0 call on ${what} (${reason}) but keeps the control connection`, async () => {
      const { agent, connecting, net } = await rawAgent();
      const daemon = await connecting;
      cleanups.push(() => daemon.close());
      await agent.message();
      const call = daemon.call('test.Z', { stdin: 'x', timeoutMs: 2000 });
      await agent.message();
      const data = new RawPeer(await net.transport(VM).connect({ peer: 0, port: 513, timeoutMs: 500 }));
      await data.message();
      data.send({ kind: 'hello', version: 3 });
      act(data);
      await expect(call).rejects.toMatchObject({ reason });
      expect(daemon.connected).toBe(true);
    });
  }
});
