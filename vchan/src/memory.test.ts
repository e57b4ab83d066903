import { describe, expect, it } from 'vitest';
import { VchanError } from './errors.ts';
import { MemoryVchanNetwork } from './memory.ts';
import { recordingVchanTransport, type TranscriptEvent } from './record.ts';
import { collect, readExactly } from './test-support.ts';

describe('MemoryVchanNetwork', () => {
  it('connects a client to the server it names, once, and withdraws the server', async () => {
    const net = new MemoryVchanNetwork();
    const server = await net.transport(3).listen({ peer: 0, port: 512 });
    expect(server.state).toBe('waiting');
    expect(net.advertised()).toEqual(['3.0.512']);
    const client = await net.transport(0).connect({ peer: 3, port: 512, timeoutMs: 1000 });
    await server.whenConnected();
    expect(net.advertised()).toEqual([]);
    client.end('hello');
    expect((await collect(server)).toString()).toBe('hello');
    expect(client.channel).toMatchObject({ localDomain: 0, remoteDomain: 3, port: 512, role: 'client' });
  });

  it('lets a client wait for a server that appears later', async () => {
    const net = new MemoryVchanNetwork();
    const connecting = net.transport(0).connect({ peer: 5, port: 600, timeoutMs: 1000 });
    const server = await net.transport(5).listen({ peer: 0, port: 600 });
    const client = await connecting;
    server.write('x');
    expect((await readExactly(client, 1)).toString()).toBe('x');
    server.destroy();
    client.destroy();
  });

  it('refuses a second live server on one port, and times a client out with ETIMEDOUT', async () => {
    const net = new MemoryVchanNetwork();
    const first = await net.transport(3).listen({ peer: 0, port: 512 });
    await expect(net.transport(3).listen({ peer: 0, port: 512 })).rejects.toMatchObject({
      code: 'EADDRINUSE',
    });
    first.destroy();
    expect(net.advertised()).toEqual([]);
    const again = await net.transport(3).listen({ peer: 0, port: 512 });
    again.destroy();
    const late = net.transport(0).connect({ peer: 9, port: 1, timeoutMs: 20 });
    await expect(late).rejects.toBeInstanceOf(VchanError);
    await expect(late).rejects.toMatchObject({ code: 'ETIMEDOUT' });
  });
});

describe('recordingVchanTransport', () => {
  it('records the bytes each stream writes and reads, and the peer’s EOF, per numbered channel', async () => {
    const net = new MemoryVchanNetwork();
    const events: TranscriptEvent[] = [];
    const vm = recordingVchanTransport(net.transport(3), (e) => events.push(e));
    const server = await vm.listen({ peer: 0, port: 512 });
    const client = await net.transport(0).connect({ peer: 3, port: 512, timeoutMs: 1000 });
    server.write('ping');
    expect((await readExactly(client, 4)).toString()).toBe('ping');
    client.end('pong');
    expect((await collect(server)).toString()).toBe('pong');
    expect(events).toEqual([
      { channel: 'listen 0:512 #1', direction: 'out', hex: Buffer.from('ping').toString('hex') },
      { channel: 'listen 0:512 #1', direction: 'in', hex: Buffer.from('pong').toString('hex') },
      { channel: 'listen 0:512 #1', direction: 'eof', hex: '' },
    ]);
  });
});
