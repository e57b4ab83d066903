/**
 * How stored pixels map to the screen: the EXIF orientation (1-8, TIFF 6.0 / Exif 2.32 tag
 * 0x0112) composed with the user's quarter turns. Each of the 8 is a symmetry of the
 * rectangle, kept as "flip the displayed coordinates, then maybe swap them": for a displayed
 * pixel (x, y) of a DW × DH view, u = flipX ? DW-1-x : x, v = flipY ? DH-1-y : y, and the
 * stored pixel is (v, u) when `swap`, else (u, v). Integer index arithmetic, so every
 * rotation shows the decoded pixels exactly.
 */

export interface Transform {
  readonly swap: boolean;
  readonly flipX: boolean;
  readonly flipY: boolean;
}

/** Displayed → stored, for EXIF orientations 1-8 (index 0 unused, treated as 1). */
const EXIF_TRANSFORMS: readonly Transform[] = [
  { swap: false, flipX: false, flipY: false },
  { swap: false, flipX: false, flipY: false }, // 1 top-left: as stored
  { swap: false, flipX: true, flipY: false }, // 2 top-right: mirrored
  { swap: false, flipX: true, flipY: true }, // 3 bottom-right: turned 180°
  { swap: false, flipX: false, flipY: true }, // 4 bottom-left: flipped
  { swap: true, flipX: false, flipY: false }, // 5 left-top: transposed
  { swap: true, flipX: true, flipY: false }, // 6 right-top: shown turned 90° clockwise
  { swap: true, flipX: true, flipY: true }, // 7 right-bottom: transversed
  { swap: true, flipX: false, flipY: true }, // 8 left-bottom: shown turned 90° anticlockwise
];

export const IDENTITY: Transform = EXIF_TRANSFORMS[1] as Transform;

export function isIdentity(t: Transform): boolean {
  return !t.swap && !t.flipX && !t.flipY;
}

/** The transform that shows an image of EXIF orientation `orientation` upright (invalid: 1). */
export function transformForOrientation(orientation: number): Transform {
  return (Number.isInteger(orientation) && EXIF_TRANSFORMS[orientation]) || IDENTITY;
}

/** As a matrix on centred coordinates: stored = M · displayed, M = P(swap) · diag(±1, ±1). */
type Matrix = readonly [number, number, number, number];

function toMatrix(t: Transform): Matrix {
  const a = t.flipX ? -1 : 1;
  const b = t.flipY ? -1 : 1;
  return t.swap ? [0, b, a, 0] : [a, 0, 0, b];
}

function fromMatrix(m: Matrix): Transform {
  if (m[0] !== 0) return { swap: false, flipX: m[0] < 0, flipY: m[3] < 0 };
  return { swap: true, flipX: m[2] < 0, flipY: m[1] < 0 };
}

function multiply(p: Matrix, q: Matrix): Matrix {
  return [
    p[0] * q[0] + p[1] * q[2],
    p[0] * q[1] + p[1] * q[3],
    p[2] * q[0] + p[3] * q[2],
    p[2] * q[1] + p[3] * q[3],
  ];
}

const CLOCKWISE = toMatrix(EXIF_TRANSFORMS[6] as Transform);
const ANTICLOCKWISE = toMatrix(EXIF_TRANSFORMS[8] as Transform);

/** `t` followed by turning what it shows a quarter turn clockwise (`turns` = 1) or back (-1). */
export function rotate(t: Transform, turns: 1 | -1): Transform {
  return fromMatrix(multiply(toMatrix(t), turns === 1 ? CLOCKWISE : ANTICLOCKWISE));
}

/** The displayed size of a stored width × height under `t`. */
export function displayedSize(t: Transform, width: number, height: number): [number, number] {
  return t.swap ? [height, width] : [width, height];
}
