/**
 * Child process of `benchScaled`: decodes the file it is given once (or only reads them, for
 * the baseline) and prints its peak RSS and the decode's CPU time, so that each decode's
 * memory is measured in a process of its own.
 */
import { readFileSync } from 'node:fs';
import { decodeImage } from './decode.ts';
import type { ScaleDenominator } from './types.ts';

// A file, not stdin: reading a pipe of unknown length grows buffers that would dominate
// the peak.
const [path, mode, scaleArgument] = process.argv.slice(2);
const bytes = new Uint8Array(readFileSync(path as string));
let cpuMs = 0;
let size = '';
if (mode === 'decode') {
  const start = process.cpuUsage();
  const result = decodeImage(
    bytes,
    { maxTotalBytes: 4 * 2 ** 30, deadlineMs: 600_000 },
    { scale: Number(scaleArgument) as ScaleDenominator },
  );
  const used = process.cpuUsage(start);
  cpuMs = (used.user + used.system) / 1000;
  if (!result.ok) throw new Error(`bench input refused: ${result.reason}`);
  size = `${result.image.width}×${result.image.height}`;
}
// The peak RSS of this process image: /proc's VmHWM starts afresh at exec, where
// getrusage's maxRSS keeps the parent's size from before exec (Linux).
const status = readFileSync('/proc/self/status', 'utf8');
const peakKb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? process.resourceUsage().maxRSS);
process.stdout.write(JSON.stringify({ maxRssKb: peakKb, cpuMs, size }));
