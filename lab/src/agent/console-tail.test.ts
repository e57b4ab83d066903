import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeMessage } from '../protocol.ts';
import { followNewConsoleLog } from './console-tail.ts';

const POWER_OFF = /^moat-init: power off \(status -?\d+\)$/;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("dom0 agent's domU console tail (xenconsoled's guest-<name>.log)", () => {
  let dir: string;
  let log: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'moat-console-tail-'));
    log = join(dir, 'guest-lab-pvh.log');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('never hands a new domain the log of an earlier domain with the same name (its done line)', async () => {
    // xenconsoled appends to guest-<name>.log: a second domain of that name finds the first's lines.
    writeFileSync(
      log,
      `moat-init: node started (pid 81)\n${encodeMessage({ kind: 'done', ok: true, results: 3 })}\n`,
    );
    const lines: string[] = [];
    const tail = followNewConsoleLog(log, (line) => lines.push(line), { intervalMs: 10 });
    appendFileSync(log, '[    2.1] the new domain\n');
    await sleep(50);
    tail.stop();
    expect(lines).toEqual(['[    2.1] the new domain']);
  });

  it('drains the lines xenconsoled writes after xl has returned, up to init’s last line', async () => {
    const lines: string[] = [];
    const tail = followNewConsoleLog(log, (line) => lines.push(line), {
      intervalMs: 10,
      settleMs: 60_000,
      maxDrainMs: 60_000,
    });
    appendFileSync(log, 'moat-init: node started (pid 81)\n');
    await sleep(30);
    // xl has seen the shutdown; xenconsoled is scheduled later and writes the ring's rest.
    setTimeout(() => {
      appendFileSync(log, `${encodeMessage({ kind: 'done', ok: true, results: 3 })}\n`);
      appendFileSync(
        log,
        'moat-init: node exited with code 0 after 4000 ms\nmoat-init: power off (status 0)\n',
      );
    }, 300);
    // Only the marker can end this drain before the test's timeout (the quiet time is 60 s).
    await tail.drain(POWER_OFF);
    tail.stop();
    expect(lines.some((line) => line.includes('"kind":"done"'))).toBe(true);
    expect(lines.at(-1)).toBe('moat-init: power off (status 0)');
  }, 20_000);

  it('without the marker (a crash) drains until the log is quiet, and keeps a last partial line', async () => {
    const lines: string[] = [];
    const tail = followNewConsoleLog(log, (line) => lines.push(line), { intervalMs: 10, settleMs: 200 });
    setTimeout(
      () =>
        appendFileSync(
          log,
          '[   9.9] Kernel panic - not syncing: Attempted to kill init!\n[   9.9] ---[ end',
        ),
      100,
    );
    await tail.drain(POWER_OFF);
    tail.stop();
    expect(lines).toEqual([
      '[   9.9] Kernel panic - not syncing: Attempted to kill init!',
      '[   9.9] ---[ end',
    ]);
  });

  it('a domain that never wrote its console leaves no lines and the drain ends', async () => {
    const lines: string[] = [];
    const tail = followNewConsoleLog(log, (line) => lines.push(line), { intervalMs: 10, settleMs: 50 });
    await tail.drain(POWER_OFF);
    tail.stop();
    expect(lines).toEqual([]);
  });
});
