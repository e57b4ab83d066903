import { describe, expect, it } from 'vitest';
import { LabError, LabTimeout } from './errors.ts';
import { expectGuestOk, GuestHandle } from './guest-run.ts';
import { encodeMessage } from './protocol.ts';

describe('GuestHandle', () => {
  it('resolves a named result from the guest own line', async () => {
    const guest = new GuestHandle('domU t');
    const waiting = guest.result('step');
    guest.line('kernel noise');
    guest.line(encodeMessage({ kind: 'result', name: 'step', ok: true, ms: 1, data: 7 }));
    await expect(waiting).resolves.toMatchObject({ name: 'step', ok: true, data: 7 });
  });

  it('fails a wait when the guest ends without the result, naming it and showing the console', async () => {
    const guest = new GuestHandle('domU t');
    const waiting = guest.result('step');
    guest.line('moat-init: node exited with code 1');
    guest.exited(0, 'exit code 0');
    await expect(waiting).rejects.toThrow(LabError);
    await expect(guest.result('step')).rejects.toThrow(
      /without reporting "step"[\s\S]*node exited with code 1/,
    );
  });

  it('waits for a console line, and fails naming the pattern when the guest ends without it', async () => {
    const guest = new GuestHandle('domU t');
    const waiting = guest.consoleLine(/agent listening/);
    guest.line('sys-moat info: qrexec agent listening');
    await expect(waiting).resolves.toBe('sys-moat info: qrexec agent listening');
    const never = guest.consoleLine(/stopped/);
    guest.line('moat-init: node exited with code 1');
    guest.exited(0, 'exit code 0');
    await expect(never).rejects.toThrow(/without printing \/stopped\/[\s\S]*node exited with code 1/);
  });

  it('waits for a console line printed after a given count, passing over earlier matches', async () => {
    const guest = new GuestHandle('domU t');
    guest.line('sys-moat info: New firewall rules for 10.137.0.10: 1 rules, policy drop');
    const seen = guest.lineCount;
    expect(seen).toBe(1);
    const waiting = guest.consoleLine(/New firewall rules/, { after: seen, timeoutMs: 1000 });
    guest.line('sys-moat info: New firewall rules for 10.137.0.10: 2 rules, policy drop');
    await expect(waiting).resolves.toMatch(/2 rules/);
  });

  it('gives the lines printed since a mark', async () => {
    const guest = new GuestHandle('domU t');
    guest.line('sys-moat debug: accept vif1.0: tcp a -> b:7 by rule 0000');
    const mark = guest.lineCount;
    const waiting = guest.consoleLine(/accept vif1\.0/, { after: mark });
    guest.line('other');
    guest.line('sys-moat debug: accept vif1.0: tcp a -> b:7 by rule 0001');
    await expect(waiting).resolves.toMatch(/rule 0001$/);
    expect(guest.linesFrom(mark)).toEqual([
      'other',
      'sys-moat debug: accept vif1.0: tcp a -> b:7 by rule 0001',
    ]);
  });

  it('times out with a message naming what did not happen, and calls the cleanup', async () => {
    let cleaned = false;
    const guest = new GuestHandle('domU t', () => {
      cleaned = true;
    });
    await expect(guest.finished({ timeoutMs: 10 })).rejects.toThrow(LabTimeout);
    await expect(guest.finished({ timeoutMs: 10 })).rejects.toThrow(/domU t: end of the run did not happen/);
    expect(cleaned).toBe(true);
  });

  it('never calls a silent run a success: no done line means not ok', async () => {
    const guest = new GuestHandle('domU t');
    guest.exited(0, 'exit code 0');
    const run = await guest.finished();
    expect(run.done).toBe(false);
    expect(run.ok).toBe(false);
    expect(() => expectGuestOk(run)).toThrow(/never reported done/);
  });

  it('reports failed steps by name', async () => {
    const guest = new GuestHandle('dom0 x');
    guest.line(encodeMessage({ kind: 'result', name: 'a', ok: false, ms: 1, error: 'boom' }));
    guest.line(encodeMessage({ kind: 'done', ok: false, results: 1 }));
    guest.exited(1, 'exit code 1');
    expect(() => expectGuestOk(guest.snapshot())).toThrow(/failed steps: a: boom/);
  });
});
