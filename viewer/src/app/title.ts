/**
 * The window title `name - WxH - zoom%`. The name comes from the sender (qubes.OpenInVM's file
 * name field), so it is made ASCII-safe here: the GUI daemon shows titles in dom0, where a
 * crafted name must not be able to imitate another window's title with look-alike characters
 * or break the line with control characters.
 */

/** Longest name kept in a title; longer names keep their start and their end (the extension). */
export const MAX_DISPLAY_NAME = 100;

/**
 * Printable ASCII only: every other character (controls, DEL, anything non-ASCII, one
 * replacement per code point) becomes `_`; an empty name becomes `image`; a name longer than
 * MAX_DISPLAY_NAME keeps its first and last characters around `...`.
 */
export function sanitiseDisplayName(name: string): string {
  let safe = '';
  for (const ch of name) {
    const code = ch.codePointAt(0) as number;
    safe += code >= 0x20 && code <= 0x7e ? ch : '_';
  }
  safe = safe.trim();
  if (safe === '') return 'image';
  if (safe.length <= MAX_DISPLAY_NAME) return safe;
  const tail = 40;
  return `${safe.slice(0, MAX_DISPLAY_NAME - tail - 3)}...${safe.slice(-tail)}`;
}

/** Zoom as the title shows it: whole percent, or one decimal below 10%. */
export function formatZoom(zoom: number): string {
  const percent = zoom * 100;
  if (percent >= 10) return `${Math.round(percent)}%`;
  return `${Math.max(0.1, Math.round(percent * 10) / 10)}%`;
}

/** `name - WxH - zoom%`, with W×H the image as shown upright (orientation applied), in file pixels. */
export function imageTitle(name: string, width: number, height: number, zoom: number): string {
  return `${name} - ${width}x${height} - ${formatZoom(zoom)}`;
}
