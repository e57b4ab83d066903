/**
 * Replays byte transcripts captured against Qubes' own C programs (qubes-core-qrexec built
 * with vchan-socket; see qrexec/fixtures/README.md): the C side's bytes are fed to our code,
 * and what our code sends must match what it sent to the real C peer. Data messages are
 * compared after merging consecutive non-empty chunks (chunk boundaries of stdout depend on
 * timing); control messages byte for byte.
 */
import { readFileSync } from 'node:fs';
import { MemoryVchanNetwork } from '@moat/vchan/memory';
import type { TranscriptEvent } from '@moat/vchan/record';
import { afterEach, describe, expect, it } from 'vitest';
import { QrexecAgent } from './agent.ts';
import { registerBuiltinServices } from './builtins.ts';
import { AdjustableClock } from './clock.ts';
import { QrexecDaemon } from './dom0.ts';
import { QrexecRefusedError } from './errors.ts';
import { accepted } from './frames.ts';
import { registerTestServices } from './run.ts';
import { RawPeer } from './test-peer.ts';
import { MsgType } from './wire.ts';

interface Transcript {
  results: unknown[];
  events: TranscriptEvent[];
}

const load = (name: string): Transcript =>
  JSON.parse(readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8')) as Transcript;

/** Bytes per channel and direction, channels in the order they were opened. */
function channels(t: Transcript): Map<string, { in: Buffer; out: Buffer }> {
  const map = new Map<string, { in: Buffer[]; out: Buffer[] }>();
  for (const e of t.events) {
    const c = map.get(e.channel) ?? { in: [], out: [] };
    map.set(e.channel, c);
    if (e.direction !== 'eof') c[e.direction].push(Buffer.from(e.hex, 'hex'));
  }
  const order = [...map.keys()].sort((a, b) => Number(a.split('#')[1]) - Number(b.split('#')[1]));
  return new Map(
    order.map((k) => [k, { in: Buffer.concat(map.get(k)!.in), out: Buffer.concat(map.get(k)!.out) }]),
  );
}

interface Frame {
  type: number;
  payload: Buffer;
}

function frames(bytes: Buffer): Frame[] {
  const out: Frame[] = [];
  let off = 0;
  while (off + 8 <= bytes.length) {
    const len = bytes.readUInt32LE(off + 4);
    out.push({ type: bytes.readUInt32LE(off), payload: bytes.subarray(off + 8, off + 8 + len) });
    off += 8 + len;
  }
  expect(off).toBe(bytes.length);
  return out;
}

function encode(f: Frame): Buffer {
  const bytes = Buffer.concat([Buffer.alloc(8), f.payload]);
  bytes.writeUInt32LE(f.type, 0);
  bytes.writeUInt32LE(f.payload.length, 4);
  return bytes;
}

/** Frames as comparable text, consecutive non-empty data chunks of one type merged. */
function normalise(bytes: Buffer): string[] {
  const out: Array<{ type: number; hex: string }> = [];
  for (const f of frames(bytes)) {
    const last = out[out.length - 1];
    const data = f.type >= MsgType.DATA_STDIN && f.type <= MsgType.DATA_STDERR && f.payload.length > 0;
    if (data && last && last.type === f.type && last.hex !== '') last.hex += f.payload.toString('hex');
    else out.push({ type: f.type, hex: f.payload.toString('hex') });
  }
  return out.map(
    (f) => `${f.type.toString(16)}:${f.hex.length > 64 ? `${f.hex.length / 2}B:${hash(f.hex)}` : f.hex}`,
  );
}

function hash(hex: string): string {
  let h = 0;
  for (let i = 0; i < hex.length; i++) h = (h * 31 + hex.charCodeAt(i)) >>> 0;
  return h.toString(16);
}

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

describe("transcript: Qubes' C qrexec-daemon + qrexec-client against our agent", () => {
  const t = load('c-daemon-vs-moat-agent.json');
  const byChannel = channels(t);
  const [controlName, ...dataNames] = [...byChannel.keys()];

  it('was a successful session with the real C dom0 (exit codes as recorded)', () => {
    expect(
      t.results.map(
        (r) => (r as { exitCode?: number; outcome?: string }).exitCode ?? (r as { outcome: string }).outcome,
      ),
    ).toEqual([0, 127, 126, 5, 0, 0, 'QrexecRefusedError']);
    expect(controlName).toBe('listen 0:512 #1');
  });

  it('replays the C side and our agent answers with the same messages', async () => {
    const net = new MemoryVchanNetwork();
    const agent = new QrexecAgent({ transport: net.transport(7), log: () => undefined });
    registerBuiltinServices(agent, { clock: new AdjustableClock() });
    registerTestServices(agent);
    await agent.start();
    stops.push(() => agent.stop());
    const dom0 = net.transport(0);
    const control = new RawPeer(await dom0.connect({ peer: 7, port: 512, timeoutMs: 1000 }));
    const recorded = byChannel.get(controlName!)!;
    const sent: Buffer[] = [];
    const cFrames = frames(recorded.in);
    let data = 0;
    let trigger: Promise<unknown> | undefined;
    for (const f of cFrames) {
      const bytes = Buffer.concat([Buffer.alloc(8), f.payload]);
      bytes.writeUInt32LE(f.type, 0);
      bytes.writeUInt32LE(f.payload.length, 4);
      if (f.type === MsgType.HELLO) {
        sent.push(await control.frame()); // our HELLO comes first
        control.stream.write(bytes);
        await agent.connected();
      } else if (f.type === MsgType.EXEC_CMDLINE || f.type === MsgType.JUST_EXEC) {
        const port = f.payload.readUInt32LE(4);
        const listener = await dom0.listen({ peer: 7, port: port, readMin: 65536, writeMin: 65536 });
        control.stream.write(bytes);
        const channel = byChannel.get(dataNames[data++]!)!;
        const peer = new RawPeer(await accepted(listener));
        peer.stream.write(channel.in);
        const ours = await peer.all();
        expect(normalise(ours)).toEqual(normalise(channel.out));
        sent.push(await control.frame()); // MSG_CONNECTION_TERMINATED
      } else if (f.type === MsgType.SERVICE_REFUSED) {
        trigger = agent.call('dom0', 'qubes.FeaturesRequest').catch((e: unknown) => e);
        sent.push(await control.frame()); // our MSG_TRIGGER_SERVICE3
        control.stream.write(bytes);
      }
    }
    expect(await trigger).toBeInstanceOf(QrexecRefusedError);
    expect(data).toBe(dataNames.length);
    expect(Buffer.concat(sent).toString('hex')).toBe(recorded.out.toString('hex'));
  });
});

describe("transcript: Qubes' C qrexec-agent + qrexec-client-vm against our dom0", () => {
  const t = load('c-agent-vs-moat-dom0.json');
  const byChannel = channels(t);
  const names = [...byChannel.keys()];
  const pattern = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) % 251);

  it('was a successful session with the real C agent (exit codes as recorded)', () => {
    expect(t.results.map((r) => (r as { exitCode: number }).exitCode)).toEqual([0, 127, 4, 0, 3, 126]);
    expect(names[0]).toBe('connect 9:512 #1');
  });

  it('replays the C side and our dom0 answers with the same messages', async () => {
    const net = new MemoryVchanNetwork();
    const vm = net.transport(9);
    const listener = await vm.listen({ peer: 0, port: 512, readMin: 4096, writeMin: 4096 });
    const connecting = QrexecDaemon.connect({
      transport: net.transport(0),
      domain: 9,
      name: 'cvm',
      log: () => undefined,
      policy: (r) =>
        r.service === 'qubes.FeaturesRequest'
          ? {
              action: 'allow',
              service: ({ stdin }) => ({ exitCode: 3, stdout: Buffer.concat([Buffer.from('ok:'), stdin]) }),
            }
          : { action: 'deny' },
    });
    const control = new RawPeer(await accepted(listener));
    const recorded = byChannel.get(names[0]!)!;
    const cFrames = frames(recorded.in);
    const sent: Buffer[] = [];
    const write = (f: Frame) => {
      const bytes = Buffer.concat([Buffer.alloc(8), f.payload]);
      bytes.writeUInt32LE(f.type, 0);
      bytes.writeUInt32LE(f.payload.length, 4);
      control.stream.write(bytes);
    };
    write(cFrames[0]!); // the agent's HELLO
    const daemon = await connecting;
    stops.push(() => daemon.close());
    sent.push(await control.frame());
    const calls: Array<[string, Parameters<QrexecDaemon['call']>[1]]> = [
      ['moat.Echo', { stdin: pattern(66000) }],
      ['qubes.NoSuchService', {}],
      ['moat.Exit', { argument: '4' }],
      ['moat.Exit', { argument: '0', justExec: true }],
    ];
    let next = 1;
    const exitCodes: number[] = [];
    for (const [i, [service, options]] of calls.entries()) {
      const call = daemon.call(service, options);
      const exec = await control.frame();
      sent.push(exec);
      const port = exec.readUInt32LE(12);
      const channel = byChannel.get(names[i + 1]!)!;
      const peer = new RawPeer(await vm.connect({ peer: 0, port: port, timeoutMs: 1000 }));
      // As the C service did: HELLO, then its output only after our stdin EOF arrived.
      const [hello, ...rest] = frames(channel.in);
      peer.stream.write(encode(hello!));
      const before: Buffer[] = [];
      for (;;) {
        const m = await peer.frame();
        before.push(m);
        if (m.readUInt32LE(0) === MsgType.DATA_STDIN && m.readUInt32LE(4) === 0) break;
      }
      peer.stream.write(Buffer.concat(rest.map(encode)));
      const result = await call;
      exitCodes.push(result.exitCode);
      const ours = Buffer.concat([...before, await peer.all()]);
      expect(normalise(ours)).toEqual(normalise(channel.out));
      write(cFrames[next++]!); // MSG_CONNECTION_TERMINATED
      await result.terminated; // as in the capture, the next call starts after the port is free
    }
    expect(exitCodes).toEqual([0, 127, 4, 0]);
    // The VM-initiated calls: TRIGGER_SERVICE4 from the C agent (protocol 4).
    const allowedTrigger = cFrames[next++]!;
    expect(allowedTrigger.type).toBe(MsgType.TRIGGER_SERVICE4);
    write(allowedTrigger);
    const connect = await control.frame();
    sent.push(connect);
    const port = connect.readUInt32LE(12);
    const serviceChannel = byChannel.get(names[5]!)!;
    const vmServer = await vm.listen({ peer: 0, port: port, readMin: 65536, writeMin: 65536 });
    const peer = new RawPeer(await accepted(vmServer));
    peer.stream.write(serviceChannel.in);
    const ours = await peer.all();
    expect(normalise(ours)).toEqual(normalise(serviceChannel.out));
    write(cFrames[next++]!); // MSG_CONNECTION_TERMINATED for the trigger's port
    write(cFrames[next++]!); // the denied TRIGGER_SERVICE4
    sent.push(await control.frame()); // MSG_SERVICE_REFUSED
    expect(next).toBe(cFrames.length);
    expect(Buffer.concat(sent).toString('hex')).toBe(recorded.out.toString('hex'));
    await expect.poll(() => daemon.portsInUse()).toEqual([]);
  });
});
