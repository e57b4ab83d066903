/**
 * `qubes.OpenInVM` as qvm-open-in-dvm sends it (QubesOS/qubes-core-agent-linux @ a37fac93
 * `qubes-rpc/qopen-in-vm.c`, `qubes-rpc/dvm2.h`, `qubes-rpc/vm-file-editor.c`): a 256-byte
 * NUL-padded file name field (`DVM_FILENAME_SIZE`), optionally prefixed `view-only-`, then the
 * file's bytes until EOF. A viewer never changes the file, so nothing is sent back.
 */
import type { Readable } from 'node:stream';

/** `DVM_FILENAME_SIZE`: the fixed name field before the file's bytes. */
export const FILENAME_FIELD_SIZE = 256;
/** `DVM_VIEW_ONLY_PREFIX`. */
export const VIEW_ONLY_PREFIX = 'view-only-';

export interface OpenInVmName {
  /** The base name with every byte outside `0-9 a-z A-Z . _ - + @` replaced by `_` (vm-file-editor's rule). */
  readonly name: string;
  readonly viewOnly: boolean;
}

/**
 * The name field as vm-file-editor reads it: up to the first NUL, `view-only-` stripped and
 * remembered, then sanitised. An empty name, `.` or `..` (which vm-file-editor cannot create)
 * becomes `unnamed`: we only show the name, we never create a file from it.
 */
export function parseNameField(field: Uint8Array): OpenInVmName {
  if (field.length !== FILENAME_FIELD_SIZE) {
    throw new RangeError(`the name field is ${FILENAME_FIELD_SIZE} bytes, not ${field.length}`);
  }
  // vm-file-editor sets byte 255 to NUL before reading the name.
  const name255 = field.subarray(0, FILENAME_FIELD_SIZE - 1);
  const end = name255.indexOf(0);
  let raw = Buffer.from(end < 0 ? name255 : name255.subarray(0, end)).toString('latin1');
  const viewOnly = raw.startsWith(VIEW_ONLY_PREFIX);
  if (viewOnly) raw = raw.slice(VIEW_ONLY_PREFIX.length);
  const name = raw.replace(/[^0-9a-zA-Z._\-+@]/g, '_');
  return { name: name === '' || name === '.' || name === '..' ? 'unnamed' : name, viewOnly };
}

export type OpenInVmRequest =
  | { readonly ok: true; readonly file: OpenInVmName; readonly bytes: Uint8Array }
  | { readonly ok: false; readonly file?: OpenInVmName; readonly reason: string };

/**
 * Reads one request from the caller's stream until EOF, keeping at most `maxFileBytes` of the
 * file (the rest is read and dropped, so the caller is never blocked, and the file is refused).
 */
export async function readOpenInVmRequest(stdin: Readable, maxFileBytes: number): Promise<OpenInVmRequest> {
  const head = new Uint8Array(FILENAME_FIELD_SIZE);
  let headBytes = 0;
  const chunks: Uint8Array[] = [];
  let fileBytes = 0;
  let tooBig = false;
  for await (const piece of stdin as AsyncIterable<Uint8Array>) {
    let chunk = piece;
    if (headBytes < FILENAME_FIELD_SIZE) {
      const take = Math.min(FILENAME_FIELD_SIZE - headBytes, chunk.length);
      head.set(chunk.subarray(0, take), headBytes);
      headBytes += take;
      chunk = chunk.subarray(take);
    }
    if (chunk.length === 0) continue;
    fileBytes += chunk.length;
    if (fileBytes > maxFileBytes) tooBig = true;
    if (!tooBig) chunks.push(chunk);
    else chunks.length = 0;
  }
  if (headBytes < FILENAME_FIELD_SIZE) {
    return {
      ok: false,
      reason: `the call ended after ${headBytes} bytes, inside the 256-byte file name field`,
    };
  }
  const file = parseNameField(head);
  if (tooBig) {
    return {
      ok: false,
      file,
      reason: `the file is ${fileBytes} bytes, more than the ${maxFileBytes} this VM's memory allows`,
    };
  }
  if (fileBytes === 0) return { ok: false, file, reason: 'the file is empty' };
  return { ok: true, file, bytes: Buffer.concat(chunks) };
}
