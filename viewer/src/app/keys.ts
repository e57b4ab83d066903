/**
 * Key bindings, by X keysym name as the GUI agent reports them in the VM's keyboard layout
 * (`GuiInputEvent.keysym`), and the help text shown for them.
 */

export type ViewerCommand =
  | 'zoom-in'
  | 'zoom-out'
  | 'actual-size'
  | 'fit'
  | 'pan-left'
  | 'pan-right'
  | 'pan-up'
  | 'pan-down'
  | 'rotate-clockwise'
  | 'rotate-anticlockwise'
  | 'play-pause'
  | 'next-frame'
  | 'previous-frame'
  | 'help'
  | 'close';

const BINDINGS: Readonly<Record<string, ViewerCommand>> = {
  plus: 'zoom-in',
  equal: 'zoom-in',
  KP_Add: 'zoom-in',
  minus: 'zoom-out',
  KP_Subtract: 'zoom-out',
  '1': 'actual-size',
  KP_1: 'actual-size',
  KP_End: 'actual-size',
  f: 'fit',
  F: 'fit',
  '0': 'fit',
  KP_0: 'fit',
  KP_Insert: 'fit',
  Left: 'pan-left',
  KP_Left: 'pan-left',
  Right: 'pan-right',
  KP_Right: 'pan-right',
  Up: 'pan-up',
  KP_Up: 'pan-up',
  Down: 'pan-down',
  KP_Down: 'pan-down',
  r: 'rotate-clockwise',
  bracketright: 'rotate-clockwise',
  R: 'rotate-anticlockwise',
  bracketleft: 'rotate-anticlockwise',
  space: 'play-pause',
  period: 'next-frame',
  comma: 'previous-frame',
  question: 'help',
  F1: 'help',
  q: 'close',
  Q: 'close',
  Escape: 'close',
};

export function commandForKey(keysym: string | undefined): ViewerCommand | undefined {
  return keysym === undefined ? undefined : BINDINGS[keysym];
}

/** The key help overlay's lines: at most 48 columns, so the box fits the smallest window. */
export const HELP_LINES: readonly string[] = [
  'moat-viewer keys',
  '',
  '+ / -        zoom in / out (at the pointer)',
  'wheel        zoom in / out at the pointer',
  '1            actual size (100%)',
  'f or 0       fit to the window',
  'arrows       move the view (Shift: further)',
  'drag         move the view',
  'r or ]       rotate 90 degrees clockwise',
  'R or [       rotate 90 degrees anticlockwise',
  'space        pause / play an animation',
  '. / ,        next / previous frame',
  '? or F1      show / hide this help',
  'q or Escape  close',
];
