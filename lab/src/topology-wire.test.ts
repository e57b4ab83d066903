import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { vifSpecParts } from './lab.ts';
import { meminfoAvailableMiB, qubesMac } from './topology.ts';
import { patternChunk, patternStreamSha256, xenstoreWriteArg } from './topology-wire.ts';

describe('topology wire', () => {
  it('stream pattern blocks differ and hash the same way in pieces or whole', async () => {
    const a = patternChunk(7, 0, 65536);
    const b = patternChunk(7, 65536, 65536);
    expect(a.equals(b)).toBe(false);
    expect(patternChunk(7, 0, 100).equals(a.subarray(0, 100))).toBe(true);
    const whole = createHash('sha256').update(a).update(b.subarray(0, 1000)).digest('hex');
    expect(await patternStreamSha256(7, 65536 + 1000)).toBe(whole);
    expect(() => patternChunk(7, 10, 10)).toThrow('whole 64 KiB blocks');
  });

  it('vif specs in xl syntax, refusing characters that would break the config', () => {
    expect(
      vifSpecParts({ backend: 'netvm', mac: qubesMac(10), ip: '10.137.0.10', script: 'vif-moat' }),
    ).toEqual(['backend=netvm', 'mac=00:16:3e:5e:6c:0a', 'ip=10.137.0.10', 'script=vif-moat']);
    expect(vifSpecParts({ backend: 'netvm', untrusted: true })).toEqual(['backend=netvm', 'untrusted']);
    expect(() => vifSpecParts({ backend: "x',y" })).toThrow('bad vif backend');
    expect(() => qubesMac(256)).toThrow('out of 0..255');
  });
});

describe('xenstoreWriteArg', () => {
  /** What xenstore-write does to its value argument (unsanitise_value, xen tools/xenstore/xs_lib.c). */
  function unsanitise(arg: string): string {
    let out = '';
    for (let i = 0; i < arg.length; i++) {
      const c = arg[i]!;
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = arg[++i];
      if (e === undefined) break;
      if (e === 't') out += ' ';
      else if (e === 'n') out += '\n';
      else if (e === 'r') out += '\r';
      else if (e === 'x') {
        out += String.fromCharCode(Number.parseInt(arg.slice(i + 1, i + 3), 16));
        i += 2;
      } else if (/[0-7]/.test(e)) {
        out += String.fromCharCode(Number.parseInt(arg.slice(i, i + 3), 8));
        i += 2;
      } else out += e;
    }
    return out;
  }

  it('survives xenstore-write: a JSON command with quotes and backslashes arrives as written', () => {
    const command = JSON.stringify({ op: 'exec', argv: ['sh', '-c', 'echo "$d" a\\nb \\x41 \\101'] });
    expect(unsanitise(command)).not.toBe(command);
    expect(unsanitise(xenstoreWriteArg(command))).toBe(command);
    expect(JSON.parse(unsanitise(xenstoreWriteArg(command)))).toEqual(JSON.parse(command));
  });

  it('reads MemAvailable from /proc/meminfo in MiB, refusing text without it', () => {
    const meminfo = 'MemTotal:         160000 kB\nMemFree:           50000 kB\nMemAvailable:      48333 kB\n';
    expect(meminfoAvailableMiB(meminfo)).toBe(47.2);
    expect(() => meminfoAvailableMiB('MemTotal: 160000 kB\n')).toThrow('no MemAvailable line');
  });
});
