/**
 * @moat/viewer/app: the image viewer's application core, sans-IO (no window, clock or worker of
 * its own). `ImageViewer` turns window events and decode results into frames (BGRX), titles,
 * window sizes, timer and decode requests; `decodeBudget` sizes the decoder limits from the VM's
 * memory.
 */
export { type DecodeBudgetOptions, decodeBudget, RUNTIME_RESERVE_BYTES } from './budget.ts';
export { pngExifOrientation, readTiffOrientation } from './exif.ts';
export { commandForKey, HELP_LINES, type ViewerCommand } from './keys.ts';
export { fitZoom, type Monitor, windowBox } from './layout.ts';
export { rotate, type Transform, transformForOrientation } from './orientation.ts';
export {
  BACKGROUND,
  CHECKER_LIGHT,
  CHECKER_SQUARE,
  CHECKER_WHITE,
  checkerLevel,
  compositeOverCheckerboard,
} from './render.ts';
export { formatZoom, imageTitle, sanitiseDisplayName } from './title.ts';
export {
  type DecodeRequest,
  ImageViewer,
  type ImageViewerOptions,
  type ViewerInputEvent,
  type ViewerState,
  type ViewerUpdate,
} from './viewer.ts';
