/**
 * The decoders' common vocabulary: what a decode returns, the limits it runs under,
 * and the refusal it gives instead when the file is broken, unsupported or too big.
 */

export type ImageFormat = 'png' | 'gif' | 'jpeg' | 'bmp' | 'webp';

/**
 * How a layer meets the canvas: `source` replaces the pixels under it, `over` composites
 * with straight (non-premultiplied) alpha, Porter-Duff "over" (APNG, WebP; a GIF's
 * transparent index is alpha 0, its other colours alpha 255).
 */
export type LayerBlend = 'source' | 'over';

/**
 * What happens to a layer's rectangle once the layer has been shown, before the next layer
 * is drawn: `none` keeps it, `background` clears it to transparent black, `previous`
 * restores what was there before the layer was drawn.
 */
export type LayerDispose = 'none' | 'background' | 'previous';

/**
 * One decoded sub-image of an animation (or the whole of a still image), stored at its own
 * size so that memory grows with what the file holds rather than frames × canvas.
 */
export interface Layer {
  /** Position and size on the canvas; decoders clip layers to the canvas. */
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
  /**
   * width × height pixels, row-major: 8-bit RGBA (4 bytes each), or indices into `palette`
   * (1 byte each) when `palette` is present.
   */
  readonly pixels: Uint8Array;
  /** 256 RGBA entries (1024 bytes) for indexed `pixels`; may be shared between layers. */
  readonly palette?: Uint8Array;
  readonly blend: LayerBlend;
  readonly dispose: LayerDispose;
}

/**
 * One displayed frame: its layers drawn in order onto the canvas as the previous frame left
 * it (a GIF's images without a delay are layers of the next displayed frame). Use
 * `FrameCompositor` to get the composed canvas.
 */
export interface Frame {
  /** At least one. A still image has one layer covering the canvas (blend `source`). */
  readonly layers: readonly Layer[];
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
  /** At least one frame. Animations have several, each with its delay and its layers. */
  readonly frames: readonly Frame[];
  /** Animation loop count: 0 means forever; 1 for still images. */
  readonly loopCount: number;
  /**
   * Present when the image was decoded at a reduced size (`DecodeOptions`): `width` and
   * `height` above are then the decoded size, ceil(stored / denominator).
   */
  readonly scaled?: {
    readonly denominator: ScaleDenominator;
    readonly storedWidth: number;
    readonly storedHeight: number;
  };
  /**
   * Damage that was tolerated, for people (e.g. an ancillary PNG chunk with a wrong CRC,
   * discarded as libpng does). Absent when there was none.
   */
  readonly warnings?: readonly string[];
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
  /**
   * Most animation frames kept, counted as layers while the file is parsed (a GIF's images
   * without a delay count although they are drawn into the next displayed frame).
   */
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
 * decoded bytes: 512 MiB (a 40 MP still is 160 MiB RGBA; an animation's layers and the
 * canvas it is played on share this budget); deadline: 10 s.
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

/** Decoding at 1/2, 1/4 or 1/8 of the stored size, as libjpeg's `scale_denom`. */
export type ScaleDenominator = 1 | 2 | 4 | 8;

/**
 * How to decode, besides the limits. Still images only: animations are always decoded at
 * their stored size.
 */
export interface DecodeOptions {
  /**
   * Decode at 1/`scale` of the stored size: JPEG by smaller IDCTs (as libjpeg-turbo), PNG,
   * GIF and BMP by averaging each `scale`×`scale` box of pixels. The output is
   * ceil(width / scale) × ceil(height / scale).
   */
  readonly scale?: ScaleDenominator;
  /** Or: the least reduction (1, 2, 4 or 8) that fits the image in this box, 8 at most. */
  readonly fit?: { readonly width: number; readonly height: number };
}

/** The denominator `options` ask for, for an image of width × height. */
export function chooseScale(width: number, height: number, options: DecodeOptions): ScaleDenominator {
  if (options.scale !== undefined) {
    if (![1, 2, 4, 8].includes(options.scale))
      throw new RangeError(`scale must be 1, 2, 4 or 8, not ${options.scale}`);
    return options.scale;
  }
  const fit = options.fit;
  if (!fit) return 1;
  for (const d of [1, 2, 4] as const)
    if (Math.ceil(width / d) <= fit.width && Math.ceil(height / d) <= fit.height) return d;
  return 8;
}
