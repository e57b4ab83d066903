import { describe, expect, it } from 'vitest';
import { ExitCode } from './errors.ts';
import { createReporter, type Envelope } from './output.ts';
import { type CommandModule, createProgram, handler, runProgram } from './program.ts';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, sink: { out: (l: string) => out.push(l), err: (l: string) => err.push(l), tty: false } };
}

describe('reporter', () => {
  it('emits one versioned JSON envelope per line in json mode', () => {
    const { out, err, sink } = capture();
    let t = 0;
    const r = createReporter('bench demo', true, sink, () => (t += 5));
    r.log('hello', { n: 1 });
    r.progress('boot', 2).update(1, 'kernel');
    r.result('figures', { ratio: 0.9 });
    r.end(0);
    expect(err).toEqual([]);
    const lines = out.map((l) => JSON.parse(l) as Envelope);
    expect(lines.map((l) => l.type)).toEqual(['start', 'log', 'progress', 'result', 'end']);
    for (const l of lines) {
      expect(l.v).toBe(1);
      expect(l.cmd).toBe('bench demo');
      expect(typeof l.t).toBe('number');
    }
    expect(lines[2]?.data).toMatchObject({ task: 'boot', index: 1, total: 2, what: 'kernel' });
    expect(lines[4]?.data).toEqual({ exitCode: 0 });
  });

  it('prints a plain line per progress step when not on a terminal', () => {
    const { out, err, sink } = capture();
    const r = createReporter('x', false, sink);
    const p = r.progress('build', 3);
    p.update(1, 'kernel');
    p.update(2, 'initramfs');
    p.done();
    expect(out).toEqual([]);
    expect(err).toHaveLength(3);
    expect(err[1]).toMatch(/^\[build 2\/3\] initramfs \(\d+\.\ds\)$/);
  });
});

describe('program', () => {
  const failing: CommandModule = {
    register(program) {
      program.command('fails').action(
        handler(async () => {
          throw new Error('boom');
        }),
      );
      program.command('checks').action(handler(async () => ExitCode.checkFailed));
    },
  };

  it('exits 2 on usage errors and 0 on help', async () => {
    const program = createProgram('/', [failing]);
    program.configureOutput({ writeErr: () => {}, writeOut: () => {} });
    expect(await runProgram(program, ['no-such-command'])).toBe(ExitCode.usage);
    const again = createProgram('/', [failing]);
    again.configureOutput({ writeErr: () => {}, writeOut: () => {} });
    expect(await runProgram(again, ['--help'])).toBe(ExitCode.ok);
  });

  it('maps a handler result and an unexpected error to exit code 1', async () => {
    const saved = process.exitCode;
    const write = process.stderr.write;
    process.stderr.write = () => true;
    try {
      expect(await runProgram(createProgram('/', [failing]), ['checks'])).toBe(ExitCode.checkFailed);
      process.exitCode = 0;
      expect(await runProgram(createProgram('/', [failing]), ['fails'])).toBe(ExitCode.checkFailed);
    } finally {
      process.stderr.write = write;
      process.exitCode = saved;
    }
  });
});
