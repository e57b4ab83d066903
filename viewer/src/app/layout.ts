/**
 * Window size and zoom levels. Decisions:
 * - The window opens on the first monitor of the layout (the one qubes.SetMonitorLayout lists
 *   first, the primary in dom0's xrandr order), centred, at most 90% of that monitor in each
 *   direction, and at least 320 × 240 (so the key help and error texts fit) unless the monitor
 *   is smaller.
 * - The image opens "fitted": shown whole, downscaled when larger than that 90% box, never
 *   upscaled, except tiny images (longest side under 128 pixels), which open at the largest whole
 *   zoom (nearest pixel, so still exact squares) that keeps them within 256 pixels.
 * - Zoom steps by 2^(1/4) (four steps per doubling), stopping on 100% and on the fitted zoom
 *   when a step crosses them, between 1/8 of the fitted zoom and 3200%.
 */
/** A monitor as the GUI agent reports it (`GuiAgent.monitors`, from qubes.SetMonitorLayout). */
export interface Monitor {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

export const SCREEN_SHARE = 0.9;
export const MIN_WINDOW_WIDTH = 320;
export const MIN_WINDOW_HEIGHT = 240;
export const TINY_IMAGE = 128;
export const TINY_TARGET = 256;
export const ZOOM_STEP = 2 ** 0.25;
export const MAX_ZOOM = 32;

export interface Box {
  readonly width: number;
  readonly height: number;
}

/** The monitor a new window goes on; a default 1920×1080 when the layout is empty. */
export function chooseMonitor(monitors: readonly Monitor[]): Monitor {
  return monitors[0] ?? { x: 0, y: 0, width: 1920, height: 1080 };
}

/** The largest window allowed on `monitor`. */
export function windowBox(monitor: Monitor): Box {
  return {
    width: Math.max(1, Math.floor(monitor.width * SCREEN_SHARE)),
    height: Math.max(1, Math.floor(monitor.height * SCREEN_SHARE)),
  };
}

/** The zoom that shows an image of width × height whole in `box` (see the module comment). */
export function fitZoom(width: number, height: number, box: Box): number {
  const z = Math.min(box.width / width, box.height / height);
  if (z < 1) return z;
  const longest = Math.max(width, height);
  if (longest >= TINY_IMAGE) return 1;
  return Math.max(1, Math.min(Math.floor(z), Math.floor(TINY_TARGET / longest)));
}

/** Pixels one side of `size` takes at `zoom` (at least 1), as sharp rounds a resize's size. */
export function scaledSize(size: number, zoom: number): number {
  return Math.max(1, Math.round(size * zoom));
}

/** The window for an image shown at `zoom`: its size, within the minimum and `box`. */
export function windowFor(displayWidth: number, displayHeight: number, box: Box): Box {
  return {
    width: Math.min(box.width, Math.max(MIN_WINDOW_WIDTH, displayWidth)),
    height: Math.min(box.height, Math.max(MIN_WINDOW_HEIGHT, displayHeight)),
  };
}

/** The next zoom level in (`direction` 1) or out (-1) from `zoom`, stopping on 1 and `fit`. */
export function stepZoom(zoom: number, direction: 1 | -1, fit: number): number {
  const next = direction === 1 ? zoom * ZOOM_STEP : zoom / ZOOM_STEP;
  const lo = Math.min(zoom, next);
  const hi = Math.max(zoom, next);
  const stops = [1, fit].filter((s) => s > lo * 1.0001 && s < hi / 1.0001);
  let result = next;
  if (stops.length > 0) result = direction === 1 ? Math.min(...stops) : Math.max(...stops);
  return Math.min(MAX_ZOOM, Math.max(Math.min(fit, 1) / 8, result));
}

/** Where a side of `displayed` pixels sits in `window` pixels: centred when it fits, else within bounds. */
export function clampOffset(offset: number, displayed: number, window: number): number {
  if (displayed <= window) return Math.floor((window - displayed) / 2);
  return Math.min(0, Math.max(window - displayed, Math.round(offset)));
}

/**
 * The JPEG reduction (1, 2, 4 or 8) to decode at for a view `ratio` times smaller than the
 * stored image, chosen as sharp 0.34 chooses libjpeg's `scale_denom` for `resize` (its
 * shrink-on-load with the default `fastShrinkOnLoad`: the largest of 8, 4, 2 not above the
 * ratio, halved when the ratio's whole part equals it, "for known libjpeg rounding errors"; none
 * when the image is rotated or flipped first), so the view matches `sharp.resize` of the same
 * size. `rotated`: an EXIF orientation or a user rotation applies.
 */
export function jpegShrinkOnLoad(ratio: number, rotated: boolean): 1 | 2 | 4 | 8 {
  if (rotated) return 1;
  let shrink: 1 | 2 | 4 | 8 = ratio >= 8 ? 8 : ratio >= 4 ? 4 : ratio >= 2 ? 2 : 1;
  if (shrink > 1 && Math.trunc(ratio) === shrink) shrink = (shrink / 2) as 2 | 4;
  return shrink;
}

/** The largest reduction (1, 2, 4, 8) that still leaves the view a downscale of the decode. */
export function largestShrink(ratio: number): 1 | 2 | 4 | 8 {
  return ratio >= 8 ? 8 : ratio >= 4 ? 4 : ratio >= 2 ? 2 : 1;
}
