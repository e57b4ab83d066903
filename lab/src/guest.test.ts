import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parseLine } from './protocol.ts';

const GUEST = new URL('./fixtures/long-lines.guest.ts', import.meta.url).pathname;

describe('guestMain', () => {
  it('ends only after its last lines left, on a stdout that is a socket pair (as dom0 runs bundles)', async () => {
    // stdio 'pipe' is how the dom0 agent (src/agent/agent.ts) starts a bundle: a socket pair,
    // which node writes asynchronously.
    const child = spawn(process.execPath, ['--import', 'tsx', GUEST], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, MOAT_ARGS: '{}' },
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    // A slow reader, as the agent forwarding lines over the control port is.
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      child.stdout.pause();
      setTimeout(() => child.stdout.resume(), 5);
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(0);
    const kinds = out
      .split('\n')
      .map(parseLine)
      .flatMap((p) => (p.kind === 'message' ? [p.message] : []));
    expect(kinds.map((m) => (m.kind === 'result' ? m.name : m.kind))).toEqual(['long 0', 'long 1', 'done']);
  }, 60_000);
});
