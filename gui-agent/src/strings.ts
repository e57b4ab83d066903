/**
 * Titles and class names as the daemon accepts them (gui-daemon/xside.c `handle_wmname`,
 * `handle_wmclass`, `sanitize_string_from_vm`): at most 127 bytes before the NUL, printable
 * ASCII or (if the user allows UTF-8 titles) valid UTF-8; class fields printable ASCII only.
 * We send only what it would pass through unchanged, so what the user sees is what we meant.
 */
import { fixedString, WMCLASS_FIELD_SIZE, WMNAME_SIZE } from './wire.ts';

const encoder = new TextEncoder();
const ELLIPSIS = '\u2026';

/** Control characters (C0, DEL, C1) become `_`, as the daemon would make them. */
function withoutControls(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are exactly what we replace
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '_');
}

/**
 * The 128-byte MSG_WMNAME field for `title`: valid UTF-8 (TextEncoder turns lone surrogates into U+FFFD),
 * no control characters, and a title longer than 127 bytes cut at a character boundary
 * with U+2026 at the end, as the C agent's `send_wmname` does.
 */
export function encodeTitle(title: string): Uint8Array {
  let bytes = encoder.encode(withoutControls(title));
  if (bytes.length > WMNAME_SIZE - 1) {
    const room = WMNAME_SIZE - 1 - encoder.encode(ELLIPSIS).length;
    let cut = room;
    while (cut > 0 && (bytes[cut]! & 0xc0) === 0x80) cut--; // not inside a multi-byte character
    const head = bytes.subarray(0, cut);
    bytes = new Uint8Array([...head, ...encoder.encode(ELLIPSIS)]);
  }
  return fixedString(bytes, WMNAME_SIZE);
}

/** One 64-byte MSG_WMCLASS field: printable ASCII, other characters `_`, at most 63 bytes. */
export function encodeClassField(text: string): Uint8Array {
  const ascii = [...text].map((c) => (c >= ' ' && c <= '~' ? c : '_')).join('');
  return fixedString(encoder.encode(ascii.slice(0, WMCLASS_FIELD_SIZE - 1)), WMCLASS_FIELD_SIZE);
}
