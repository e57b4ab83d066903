import { MemoryVchanNetwork } from '@moat/vchan/memory';
import { recordingVchanTransport, type TranscriptEvent } from '@moat/vchan/record';
import { describe, expect, it } from 'vitest';
import { QrexecAgent } from './agent.ts';
import { QrexecDaemon } from './dom0.ts';

describe('recordingVchanTransport under qrexec', () => {
  it('records every byte both ways per channel, and the peer’s EOF, without changing the session', async () => {
    const net = new MemoryVchanNetwork();
    const events: TranscriptEvent[] = [];
    const agent = new QrexecAgent({
      transport: recordingVchanTransport(net.transport(3), (e) => events.push(e)),
      log: () => undefined,
    });
    agent.handle('test.Upper', async (call) => {
      for await (const c of call.stdin) call.stdout.write(String(c).toUpperCase());
      return 0;
    });
    await agent.start();
    const daemon = await QrexecDaemon.connect({
      transport: net.transport(0),
      domain: 3,
      name: 'v',
      log: () => undefined,
    });
    const r = await daemon.call('test.Upper', { stdin: 'abc' });
    expect(r.stdout.toString()).toBe('ABC');
    await r.terminated;
    await daemon.close();
    await agent.stop();
    const channels = [...new Set(events.map((e) => e.channel))];
    expect(channels).toEqual(['listen 0:512 #1', 'connect 0:513 #2']);
    const bytes = (channel: string, direction: string) =>
      events
        .filter((e) => e.channel === channel && e.direction === direction)
        .map((e) => e.hex)
        .join('');
    expect(bytes('listen 0:512 #1', 'out')).toBe(
      // HELLO 3, then MSG_CONNECTION_TERMINATED {0, 513}
      '000300000400000003000000' + '110200000800000000000000' + '01020000',
    );
    expect(bytes('connect 0:513 #2', 'out')).toContain(Buffer.from('ABC').toString('hex'));
    // dom0 hung up first on the control channel: its EOF is recorded there.
    expect(events.filter((e) => e.direction === 'eof').map((e) => e.channel)).toContain('listen 0:512 #1');
  });
});
