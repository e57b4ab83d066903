import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GuiInputEvent } from '@moat/gui-agent';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../decoders/decode.ts';
import { fixtures } from '../decoders/oracle.ts';
import { type DecodeLimits, defaultDecodeLimits } from '../decoders/types.ts';
import type { Monitor } from './layout.ts';
import { BACKGROUND } from './render.ts';
import { ImageViewer, type ViewerInputEvent, type ViewerUpdate } from './viewer.ts';

// The GUI agent's events go in as they are.
const fromGuiAgent: (event: GuiInputEvent) => ViewerInputEvent = (event) => event;
void fromGuiAgent;

const read = (path: string) => new Uint8Array(readFileSync(join(fixtures, path)));
const FULL_HD: Monitor = { x: 0, y: 0, width: 1920, height: 1080 };

/** Opens `bytes` and runs every decode the viewer asks for, as the VM's main loop does. */
function open(
  bytes: Uint8Array,
  { monitors = [FULL_HD], name = 'image', limits = defaultDecodeLimits, now = 0 } = {} as {
    monitors?: Monitor[];
    name?: string;
    limits?: DecodeLimits;
    now?: number;
  },
): { viewer: ImageViewer; update: ViewerUpdate; bytes: Uint8Array } {
  const viewer = new ImageViewer({ name, monitors, limits });
  const request = viewer.open(bytes);
  const update = viewer.decoded(decodeImage(bytes, request.limits, request.options), now);
  return { viewer, update: settle(viewer, bytes, update, now), bytes };
}

function settle(viewer: ImageViewer, bytes: Uint8Array, update: ViewerUpdate, now = 0): ViewerUpdate {
  let current = update;
  for (let i = 0; current.decode && i < 5; i++) {
    const { limits, options } = current.decode;
    current = viewer.decoded(decodeImage(bytes, limits, options), now);
  }
  return current;
}

const key = (keysym: string, state = 0): ViewerInputEvent => ({ type: 'key', pressed: true, keysym, state });

describe('opening', () => {
  it('fits a large photo in 90% of the monitor, centred on it', () => {
    const { viewer, update } = open(read('jpeg/exif-orientation/Landscape_1.jpg'), { name: 'photo.jpg' });
    expect(viewer.state).toBe('showing');
    expect(viewer.window).toEqual({ x: 231, y: 54, width: 1458, height: 972 });
    expect(update).toMatchObject({
      width: 1458,
      height: 972,
      redraw: true,
      title: 'photo.jpg - 1800x1200 - 81%',
    });
    expect(update.close).toBe(false);
    expect(update.wakeAt).toBeUndefined();
    expect(viewer.render().length).toBe(1458 * 972 * 4);
    expect(viewer.imageArea).toEqual({ left: 0, top: 0, width: 1458, height: 972 });
  });

  it('shows an image that fits at 100%, never enlarged', () => {
    const { viewer, update } = open(read('jpeg/jpeg-js-fixtures/tree-rgb.jpg'));
    expect(update.title).toBe('image - 400x250 - 100%');
    expect([update.width, update.height]).toEqual([400, 250]);
    expect(viewer.view).toMatchObject({ zoom: 1, left: 0, top: 0 });
  });

  it('enlarges a tiny image by a whole factor, in a window of at least 320x240', () => {
    const { viewer, update } = open(read('png/pngsuite/basn2c08.png'));
    expect(update.title).toBe('image - 32x32 - 800%');
    expect([update.width, update.height]).toEqual([320, 256]);
    expect(viewer.view).toMatchObject({ zoom: 8, left: 32, top: 0 });
  });

  it('applies the EXIF orientation', () => {
    const { viewer, update } = open(read('jpeg/exif-orientation/Landscape_6.jpg'));
    expect(update.title).toBe('image - 1800x1200 - 81%');
    expect(viewer.view.transform).toEqual({ swap: true, flipX: true, flipY: false });
  });

  it('opens on the first monitor of the layout', () => {
    const second: Monitor = { x: 1920, y: 0, width: 1280, height: 1024 };
    const { viewer } = open(read('jpeg/jpeg-js-fixtures/tree-rgb.jpg'), { monitors: [second, FULL_HD] });
    expect(viewer.window).toEqual({ x: 1920 + 440, y: 387, width: 400, height: 250 });
  });

  it('makes the name ASCII-safe in the title', () => {
    const { update } = open(read('jpeg/jpeg-js-fixtures/tree-rgb.jpg'), { name: 'b\u00e4r\n.jpg' });
    expect(update.title).toBe('b_r_.jpg - 400x250 - 100%');
  });

  it('decodes a JPEG at the reduction its fitted view allows', () => {
    const { viewer } = open(read('jpeg/exif-orientation/Landscape_1.jpg'), {
      monitors: [{ x: 0, y: 0, width: 640, height: 480 }],
    });
    expect(viewer.decodedScale).toBe(2);
  });
});

describe('errors', () => {
  it('shows what is wrong with a broken file in a window', () => {
    const { viewer, update } = open(read('png/pngsuite/xcrn0g04.png'), { name: 'broken.png' });
    expect(viewer.state).toBe('error');
    expect(update.title).toBe('broken.png - cannot open');
    expect(viewer.errorText).toMatch(/^This file cannot be shown:\n\nbroken.png\n\nThe file is damaged: /);
    const pixels = new Int32Array(viewer.render().buffer);
    expect(pixels.some((p) => p !== BACKGROUND)).toBe(true); // the text
    expect(update.width).toBeGreaterThanOrEqual(320);
  });

  it('says which formats it reads for a file that is no image', () => {
    const { viewer } = open(new TextEncoder().encode('#!/bin/sh\necho hello\n'));
    expect(viewer.errorText).toMatch(/not an image this viewer reads \(PNG, JPEG, GIF, WebP, BMP\)/);
  });

  it('shows an error the host reports', () => {
    const viewer = new ImageViewer({ name: 'x.png', monitors: [FULL_HD], limits: defaultDecodeLimits });
    viewer.open(new Uint8Array(0));
    const update = viewer.failed('the decoder worker stopped', 0);
    expect(update.title).toBe('x.png - cannot open');
    expect(viewer.errorText).toContain('the decoder worker stopped');
  });

  it('closes on q from the error window', () => {
    const { viewer } = open(new Uint8Array([1, 2, 3]));
    expect(viewer.handle(key('q'), 0).close).toBe(true);
  });
});

describe('zoom', () => {
  it('steps in and out, stopping on 100% and on the fitted zoom', () => {
    const { viewer } = open(read('jpeg/exif-orientation/Landscape_1.jpg'));
    expect(viewer.handle(key('plus'), 0).title).toMatch(/ - 96%$/);
    expect(viewer.handle(key('plus'), 0).title).toMatch(/ - 100%$/);
    expect(viewer.handle(key('plus'), 0).title).toMatch(/ - 119%$/);
    expect(viewer.handle(key('minus'), 0).title).toMatch(/ - 100%$/);
    expect(viewer.handle(key('minus'), 0).title).toMatch(/ - 84%$/);
    expect(viewer.handle(key('minus'), 0).title).toMatch(/ - 81%$/); // the fitted zoom
    expect(viewer.view.fit).toBe(true);
    expect(viewer.handle(key('1'), 0).title).toMatch(/ - 100%$/);
    expect(viewer.handle(key('f'), 0).title).toMatch(/ - 81%$/);
    expect(viewer.handle(key('KP_Add'), 0).title).toMatch(/ - 96%$/);
    expect(viewer.handle(key('0'), 0).title).toMatch(/ - 81%$/);
  });

  it('keeps the image point under the pointer in place with the wheel', () => {
    const { viewer } = open(read('jpeg/exif-orientation/Landscape_1.jpg'));
    const at = { x: 300, y: 200 };
    const before = viewer.view;
    const point = { x: (at.x - before.left) / before.zoom, y: (at.y - before.top) / before.zoom };
    viewer.handle({ type: 'motion', ...at, state: 0 }, 0);
    for (let i = 0; i < 3; i++) viewer.handle({ type: 'wheel', dx: 0, dy: -1, ...at, state: 0 }, 0);
    const after = viewer.view;
    expect(after.zoom).toBeGreaterThan(1);
    expect(Math.abs(after.left + point.x * after.zoom - at.x)).toBeLessThanOrEqual(1);
    expect(Math.abs(after.top + point.y * after.zoom - at.y)).toBeLessThanOrEqual(1);
    viewer.handle({ type: 'wheel', dx: 0, dy: 1, ...at, state: 0 }, 0);
    expect(viewer.view.zoom).toBeLessThan(after.zoom);
  });

  it('zooms keys at the pointer too', () => {
    const { viewer } = open(read('jpeg/exif-orientation/Landscape_1.jpg'));
    viewer.handle({ type: 'enter', x: 0, y: 0, state: 0 }, 0);
    viewer.handle(key('1'), 0);
    expect(viewer.view).toMatchObject({ zoom: 1, left: 0, top: 0 }); // the top-left corner stayed put
  });

  it('asks for a finer JPEG decode when zooming in, and a coarser one back at fit', () => {
    const bytes = read('jpeg/exif-orientation/Landscape_1.jpg');
    const { viewer } = open(bytes, { monitors: [{ x: 0, y: 0, width: 640, height: 480 }] });
    let update = viewer.handle(key('1'), 0);
    expect(update.decode?.options).toEqual({ scale: 1 });
    update = settle(viewer, bytes, update);
    expect(viewer.decodedScale).toBe(1);
    expect(update.redraw).toBe(true);
    update = viewer.handle(key('f'), 0);
    expect(update.decode?.options).toEqual({ scale: 2 });
    settle(viewer, bytes, update);
    expect(viewer.decodedScale).toBe(2);
  });

  it('stays at the reduction that fits when a finer decode is refused', () => {
    const bytes = read('jpeg/exif-orientation/Landscape_1.jpg');
    const { viewer } = open(bytes, { monitors: [{ x: 0, y: 0, width: 640, height: 480 }] });
    const update = viewer.handle(key('1'), 0);
    expect(update.decode).toBeDefined();
    const next = viewer.decoded({ ok: false, kind: 'limit', reason: 'decoding needs more than 1 bytes' }, 0);
    expect(viewer.state).toBe('showing');
    expect(viewer.decodedScale).toBe(2);
    expect(next.decode).toBeUndefined();
    expect(viewer.handle(key('plus'), 0).decode).toBeUndefined();
  });
  it('does not ask again for a reduction whose decode failed', () => {
    const bytes = read('jpeg/exif-orientation/Landscape_1.jpg');
    const { viewer } = open(bytes, { monitors: [{ x: 0, y: 0, width: 640, height: 480 }] });
    settle(viewer, bytes, viewer.handle(key('1'), 0)); // now at 1/1
    expect(viewer.handle(key('f'), 0).decode?.options).toEqual({ scale: 2 });
    const next = viewer.decoded({ ok: false, kind: 'deadline', reason: 'decoding took longer than 1 ms' }, 0);
    expect(next.decode).toBeUndefined();
    expect(viewer.decodedScale).toBe(1);
    viewer.handle(key('plus'), 0);
    expect(viewer.handle(key('minus'), 0).decode).toBeUndefined();
  });
});

describe('panning, rotating, resizing', () => {
  it('pans with arrows and drag, and stops at the edges', () => {
    const { viewer } = open(read('jpeg/exif-orientation/Landscape_1.jpg'));
    viewer.handle(key('1'), 0); // 1800x1200 in a 1458x972 window, centred
    expect(viewer.view).toMatchObject({ left: -171, top: -114 });
    viewer.handle(key('Left'), 0);
    expect(viewer.view.left).toBe(0); // the left edge
    viewer.handle(key('Right'), 0);
    expect(viewer.view.left).toBe(-182); // an eighth of the window
    viewer.handle(key('Right', 1), 0); // Shift: most of a window
    expect(viewer.view.left).toBe(1458 - 1800); // the right edge
    viewer.handle({ type: 'button', pressed: true, button: 1, x: 100, y: 100, state: 0 }, 0);
    viewer.handle({ type: 'motion', x: 150, y: 80, state: 256 }, 0);
    expect(viewer.view).toMatchObject({ left: 1458 - 1800 + 50, top: -134 });
    viewer.handle({ type: 'button', pressed: false, button: 1, x: 150, y: 80, state: 256 }, 0);
    viewer.handle({ type: 'motion', x: 400, y: 400, state: 0 }, 0);
    expect(viewer.view).toMatchObject({ left: 1458 - 1800 + 50, top: -134 });
    viewer.handle(key('Up'), 0);
    viewer.handle(key('Up'), 0);
    expect(viewer.view.top).toBe(0); // the top edge
  });

  it('does not pan an image that fits', () => {
    const { viewer } = open(read('jpeg/exif-orientation/Landscape_1.jpg'));
    const update = viewer.handle(key('Left'), 0);
    expect(viewer.view).toMatchObject({ left: 0, top: 0 });
    expect(update.redraw).toBe(false);
  });

  it('rotates both ways, refitting', () => {
    const { viewer } = open(read('jpeg/exif-orientation/Landscape_1.jpg'));
    expect(viewer.handle(key('r'), 0).title).toBe('image - 1200x1800 - 54%');
    expect(viewer.view.transform).toEqual({ swap: true, flipX: true, flipY: false });
    expect(viewer.handle(key('R'), 0).title).toBe('image - 1800x1200 - 81%');
    viewer.handle(key('bracketleft'), 0);
    expect(viewer.view.transform).toEqual({ swap: true, flipX: false, flipY: true });
    for (let i = 0; i < 3; i++) viewer.handle(key('bracketright'), 0);
    expect(viewer.view.transform).toEqual({ swap: false, flipX: true, flipY: true });
  });

  it('refits a fitted view when the window is resized, and keeps a zoomed one', () => {
    const { viewer } = open(read('jpeg/exif-orientation/Landscape_1.jpg'));
    let update = viewer.handle({ type: 'resize', width: 900, height: 900 }, 0);
    expect(update).toMatchObject({ width: 900, height: 900, redraw: true, title: 'image - 1800x1200 - 50%' });
    expect(viewer.view).toMatchObject({ left: 0, top: 150 });
    expect(viewer.render().length).toBe(900 * 900 * 4);
    viewer.handle(key('1'), 0);
    update = viewer.handle({ type: 'resize', width: 1000, height: 700 }, 0);
    expect(update.title).toMatch(/ - 100%$/);
  });
});

describe('help and closing', () => {
  it('shows the key help on ? and F1; Escape hides it before it closes', () => {
    const { viewer } = open(read('jpeg/jpeg-js-fixtures/tree-rgb.jpg'));
    const plain = viewer.render().slice();
    expect(viewer.handle(key('question'), 0).redraw).toBe(true);
    expect(viewer.view.help).toBe(true);
    expect(viewer.render()).not.toEqual(plain);
    viewer.handle(key('F1'), 0);
    expect(viewer.view.help).toBe(false);
    viewer.handle(key('question'), 0);
    const update = viewer.handle(key('Escape'), 0);
    expect(update.close).toBe(false);
    expect(viewer.view.help).toBe(false);
    expect(viewer.handle(key('Escape'), 0).close).toBe(true);
    expect(viewer.state).toBe('closed');
  });

  it('closes on q and on the window’s close button, and ignores key releases', () => {
    const a = open(read('jpeg/jpeg-js-fixtures/tree-rgb.jpg')).viewer;
    expect(a.handle({ type: 'key', pressed: false, keysym: 'q', state: 0 }, 0).close).toBe(false);
    expect(a.handle(key('q'), 0).close).toBe(true);
    const b = open(read('jpeg/jpeg-js-fixtures/tree-rgb.jpg')).viewer;
    const update = b.handle({ type: 'close-request' }, 0);
    expect(update).toMatchObject({ close: true, redraw: false, wakeAt: undefined });
  });
});

describe('animations', () => {
  const gif = read('gif/gif-test-suite/animated_loop_variable_delay.gif'); // 1000, 1000, 100, 1000 ms, forever

  it('plays frames with their delays from the injected clock', () => {
    const { viewer, update } = open(gif, { now: 5000 });
    expect(update.wakeAt).toBe(6000);
    expect(viewer.tick(5999)).toMatchObject({ redraw: false, wakeAt: 6000 });
    expect(viewer.tick(6000)).toMatchObject({ redraw: true, wakeAt: 7000 });
    expect(viewer.view.frame).toBe(1);
    expect(viewer.tick(7001)).toMatchObject({ wakeAt: 7100 });
    expect(viewer.tick(7100)).toMatchObject({ wakeAt: 8100 });
    expect(viewer.view.frame).toBe(3);
    expect(viewer.tick(8100)).toMatchObject({ wakeAt: 9100 });
    expect(viewer.view.frame).toBe(0); // loops forever
  });

  it('draws each frame as decoded', () => {
    const { viewer } = open(gif);
    const first = viewer.render().slice();
    viewer.tick(1000);
    expect(viewer.render()).not.toEqual(first);
  });

  it('pauses and steps with space, period and comma', () => {
    const { viewer } = open(gif);
    expect(viewer.handle(key('space'), 10)).toMatchObject({ wakeAt: undefined, redraw: true });
    expect(viewer.view.playing).toBe(false);
    expect(viewer.tick(5000).redraw).toBe(false);
    viewer.handle(key('period'), 0);
    expect(viewer.view.frame).toBe(1);
    viewer.handle(key('comma'), 0);
    viewer.handle(key('comma'), 0);
    expect(viewer.view.frame).toBe(3);
    expect(viewer.handle(key('space'), 20000).wakeAt).toBe(21000);
  });

  it('stops on the last frame after the loops the file asks for', () => {
    const { viewer } = open(read('gif/gif-test-suite/animated_noloop.gif'));
    let now = 0;
    for (let i = 0; i < 3; i++) now = viewer.tick(now + 1000).wakeAt ?? now;
    expect(viewer.view.frame).toBe(3);
    const update = viewer.tick(now + 1000);
    expect(update.wakeAt).toBeUndefined();
    expect(viewer.view).toMatchObject({ frame: 3, playing: false });
  });

  it('restarts its timing after a stall instead of racing through frames', () => {
    const { viewer } = open(gif);
    expect(viewer.tick(60_000).wakeAt).toBe(61_000);
  });

  it('shows delays of 10 ms or less as 100 ms, as browsers do', () => {
    const viewer = new ImageViewer({ name: 'a', monitors: [FULL_HD], limits: defaultDecodeLimits });
    viewer.open(gif);
    const result = decodeImage(gif);
    if (!result.ok) throw new Error(result.reason);
    const frames = result.image.frames.map((f) => ({ ...f, delayMs: 0 }));
    expect(viewer.decoded({ ok: true, image: { ...result.image, frames } }, 0).wakeAt).toBe(100);
  });
});
