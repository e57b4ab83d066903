/**
 * Where a displayed pixel comes from in the stored image, for EXIF orientation (1–8, TIFF 6.0
 * tag 274) followed by the user's quarter turns clockwise. Orientation o is a mirror (2, 4, 5,
 * 7) followed by quarter turns: 2 = mirror, 3 = 2 turns, 4 = mirror + 2, 5 = mirror + 3,
 * 6 = 1, 7 = mirror + 1, 8 = 3.
 */
const EXIF: Record<number, { mirror: boolean; turns: number }> = {
  1: { mirror: false, turns: 0 },
  2: { mirror: true, turns: 0 },
  3: { mirror: false, turns: 2 },
  4: { mirror: true, turns: 2 },
  5: { mirror: true, turns: 3 },
  6: { mirror: false, turns: 1 },
  7: { mirror: true, turns: 1 },
  8: { mirror: false, turns: 3 },
};

/**
 * An affine map from displayed (dx, dy) to stored (sx, sy): sx = x0 + xx·dx + xy·dy,
 * sy = y0 + yx·dx + yy·dy, with the displayed size.
 */
export interface DisplayMap {
  readonly width: number;
  readonly height: number;
  readonly x0: number;
  readonly xx: number;
  readonly xy: number;
  readonly y0: number;
  readonly yx: number;
  readonly yy: number;
}

export function displayMap(
  storedWidth: number,
  storedHeight: number,
  orientation: number,
  userTurns: number,
): DisplayMap {
  const exif = EXIF[orientation] ?? EXIF[1]!;
  const turns = (((exif.turns + userTurns) % 4) + 4) % 4;
  const W = storedWidth;
  const H = storedHeight;
  // After the mirror, the image is still W × H with m(x) = W-1-x. Then `turns` clockwise
  // turns; inverting each: displayed (X, Y) of a clockwise turn of a w × h image came from
  // (Y, h-1-X).
  // Compose the inverse directly for each case (u, v = the mirrored image's coordinates).
  let map: { width: number; height: number; u: [number, number, number]; v: [number, number, number] };
  switch (turns) {
    case 0:
      map = { width: W, height: H, u: [0, 1, 0], v: [0, 0, 1] };
      break;
    case 1: // u = Y, v = H-1-X
      map = { width: H, height: W, u: [0, 0, 1], v: [H - 1, -1, 0] };
      break;
    case 2: // u = W-1-X, v = H-1-Y
      map = { width: W, height: H, u: [W - 1, -1, 0], v: [H - 1, 0, -1] };
      break;
    default: // u = W-1-Y, v = X
      map = { width: H, height: W, u: [W - 1, 0, -1], v: [0, 1, 0] };
  }
  const [u0, ux, uy] = map.u;
  const [v0, vx, vy] = map.v;
  // Stored x = mirror ? W-1-u : u.
  return exif.mirror
    ? { width: map.width, height: map.height, x0: W - 1 - u0, xx: -ux, xy: -uy, y0: v0, yx: vx, yy: vy }
    : { width: map.width, height: map.height, x0: u0, xx: ux, xy: uy, y0: v0, yx: vx, yy: vy };
}
