/**
 * `qubes.GetImageRGBA` as qvm-convert-img expects it (QubesOS/qubes-linux-utils @ 25063069
 * `imgconverter/qubesimgconverter/__init__.py` `get_through_dvm`/`get_from_stream`, and the
 * shell service in QubesOS/qubes-core-agent-linux @ a37fac93 `qubes-rpc/qubes.GetImageRGBA`):
 * the caller writes one line, `-` or `<type>:-`, then the file until EOF; the answer is the
 * line `"<width> <height>\n"` and exactly width × height × 4 bytes of 8-bit straight RGBA,
 * row-major, top to bottom, of the first frame. GraphicsMagick's `gm convert` does not apply
 * EXIF orientation, and neither do we: the pixels come as stored.
 */
import type { Readable } from 'node:stream';

/** The longest request line we accept (`<type>:-`; GraphicsMagick format names are short). */
export const MAX_REQUEST_LINE = 64;

export type ImageRgbaRequest =
  | { readonly ok: true; readonly format?: string; readonly bytes: Uint8Array }
  | { readonly ok: false; readonly reason: string };

/**
 * The request line: `-`, or `<type>:-` with a format hint we ignore (we sniff the format from
 * the bytes). The `xdgicon:` form looks up an icon theme, which a moat VM has none of.
 */
export function parseRequestLine(
  line: string,
): { ok: true; format?: string } | { ok: false; reason: string } {
  if (line === '-') return { ok: true };
  const match = /^([A-Za-z0-9]{1,16}):-$/.exec(line);
  if (match?.[1] && match[1] !== 'xdgicon') return { ok: true, format: match[1].toLowerCase() };
  return { ok: false, reason: `unsupported request line ${JSON.stringify(line.slice(0, MAX_REQUEST_LINE))}` };
}

/** Reads the request line and the file (at most `maxFileBytes`; more is read, dropped and refused). */
export async function readImageRgbaRequest(stdin: Readable, maxFileBytes: number): Promise<ImageRgbaRequest> {
  let line: number[] | undefined = [];
  let lineDone = false;
  const chunks: Uint8Array[] = [];
  let fileBytes = 0;
  let problem: string | undefined;
  let format: string | undefined;
  for await (const piece of stdin as AsyncIterable<Uint8Array>) {
    let chunk = piece;
    if (!lineDone && line) {
      const newline = chunk.indexOf(0x0a);
      const part = chunk.subarray(0, newline < 0 ? chunk.length : newline);
      if (line.length + part.length > MAX_REQUEST_LINE) {
        problem = `the request line is longer than ${MAX_REQUEST_LINE} bytes`;
        line = undefined;
      } else line.push(...part);
      if (newline < 0) continue;
      lineDone = true;
      chunk = chunk.subarray(newline + 1);
      if (line) {
        const parsed = parseRequestLine(Buffer.from(line).toString('latin1'));
        if (!parsed.ok) problem = parsed.reason;
        else format = parsed.format;
      }
    }
    if (problem || chunk.length === 0) continue;
    fileBytes += chunk.length;
    if (fileBytes > maxFileBytes) {
      problem = `the file is more than ${maxFileBytes} bytes, more than this VM's memory allows`;
      chunks.length = 0;
    } else chunks.push(chunk);
  }
  if (problem) return { ok: false, reason: problem };
  if (!lineDone) return { ok: false, reason: 'the call ended before the request line did' };
  if (fileBytes === 0) return { ok: false, reason: 'the file is empty' };
  return format
    ? { ok: true, format, bytes: Buffer.concat(chunks) }
    : { ok: true, bytes: Buffer.concat(chunks) };
}

/** The answer's header line. */
export function rgbaHeader(width: number, height: number): string {
  return `${width} ${height}\n`;
}
