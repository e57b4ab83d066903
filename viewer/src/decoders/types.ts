/**
 * The decoders' common vocabulary: what a decode returns, the limits it runs under,
 * and the refusal it gives instead when the file is broken, unsupported or too big.
 */

export type ImageFormat = 'png' | 'gif' | 'jpeg' | 'bmp' | 'webp';

/** One displayable frame: the whole canvas, already composited, 8-bit RGBA, row-major. */
export interface Frame {
  readonly rgba: Uint8Array;
  /** How long the frame stays on screen, in milliseconds (0 for still images). */
  readonly delayMs: number;
}

export interface DecodedImage {
  readonly format: ImageFormat;
  /** Canvas size as stored in the file (orientation not applied). */
  readonly width: number;
  readonly height: number;
  /**
   * EXIF orientation 1–8 as read from the file (1 when absent or invalid). The pixels are
   * NOT rotated; the viewer applies it when drawing.
   */
  readonly orientation: number;
  /** Bits per sample of the source (1–16), for information. */
  readonly bitDepth: number;
  /** At least one frame. Animations have several, each with its delay. */
  readonly frames: readonly Frame[];
  /** Animation loop count: 0 means forever; 1 for still images. */
  readonly loopCount: number;
}

/** Why a file was refused. `kind` groups reasons; `reason` is for people. */
export type RefusalKind = 'unknown-format' | 'unsupported' | 'corrupt' | 'truncated' | 'limit' | 'deadline';

export type DecodeResult =
  | { readonly ok: true; readonly image: DecodedImage }
  | { readonly ok: false; readonly kind: RefusalKind; readonly reason: string };

/**
 * Resource limits for one decode. Every decoder reads dimensions, frame counts and sizes
 * from the headers and checks them here BEFORE allocating pixel memory.
 */
export interface DecodeLimits {
  /** Widest canvas or frame accepted. */
  readonly maxWidth: number;
  /** Tallest canvas or frame accepted. */
  readonly maxHeight: number;
  /** Most pixels in one canvas or frame (width × height). */
  readonly maxPixels: number;
  /** Most animation frames kept. */
  readonly maxFrames: number;
  /** Most bytes of decoded output and working buffers allocated over the whole decode. */
  readonly maxTotalBytes: number;
  /** Wall-clock budget for one decode, in milliseconds. */
  readonly deadlineMs: number;
}

/**
 * Defaults. Width and height: 16384, the widest window the Qubes GUI protocol accepts
 * (qubes-gui-common MAX_WINDOW_WIDTH); pixels: 8192 × 5120 = 41,943,040, the cap Qubes'
 * own image converter puts on images it accepts (qubesimgconverter); frames: 1000;
 * decoded bytes: 512 MiB (a 40 MP still is 160 MiB RGBA; an animation's frames share
 * this budget); deadline: 10 s.
 */
export const defaultDecodeLimits: DecodeLimits = Object.freeze({
  maxWidth: 16384,
  maxHeight: 16384,
  maxPixels: 8192 * 5120,
  maxFrames: 1000,
  maxTotalBytes: 512 * 1024 * 1024,
  deadlineMs: 10_000,
});

export function resolveLimits(limits?: Partial<DecodeLimits>): DecodeLimits {
  return { ...defaultDecodeLimits, ...(limits ?? {}) };
}
