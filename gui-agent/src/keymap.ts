/**
 * Which keysym and character an X keycode makes in the VM's keyboard layout. Dom0 sends X
 * keycodes (evdev code + 8) and X modifier state; the layout is QubesDB `/keyboard-layout`
 * (`layout+variant+options`, as QubesOS/qubes-gui-agent-linux `qubes-keymap.sh` splits it).
 * Tables come from Debian's xkb-data (keymap-data.ts) for the alphanumeric keys; other keys
 * are the same in every layout.
 */
import { FIXED_KEYSYMS, KEYSYM_TEXT, LAYOUT_KEYSYMS } from './keymap-data.ts';

export interface KeyMeaning {
  keysym: string | undefined;
  text: string;
}

export interface Keymap {
  /** The table in use (`de(nodeadkeys)`), which may differ from the setting when we had none for it. */
  readonly layout: string;
  lookup(keycode: number, state: number): KeyMeaning;
}

/** X modifier bits (X.h). Mod2 is NumLock and Mod5 ISO_Level3_Shift (AltGr) in the pc/evdev keymaps. */
export const Modifier = { Shift: 1, Lock: 2, Control: 4, Mod1: 8, Mod2: 16, Mod4: 64, Mod5: 128 } as const;

export interface LayoutSetting {
  layout: string;
  variant: string;
  options: string;
}

export function parseLayoutSetting(value: string): LayoutSetting {
  const [layout = '', variant = '', options = ''] = `${value}+`.split('+');
  return { layout: layout || 'us', variant, options };
}

/** The keymap for a `/keyboard-layout` value; unknown layouts fall back to `us` (logged). */
export function keymapFor(setting: string, log?: (level: 'warn', message: string) => void): Keymap {
  const { layout, variant } = parseLayoutSetting(setting);
  const names = variant ? [`${layout}(${variant})`, layout] : [layout];
  const name = names.find((n) => LAYOUT_KEYSYMS[n] !== undefined);
  if (!name || name !== names[0]) {
    log?.('warn', `gui: no key table for keyboard layout ${JSON.stringify(setting)}, using ${name ?? 'us'}`);
  }
  return new TableKeymap(name ?? 'us');
}

class TableKeymap implements Keymap {
  readonly #table: Readonly<Record<number, string>>;
  constructor(readonly layout: string) {
    this.#table = LAYOUT_KEYSYMS[layout]!;
  }

  lookup(keycode: number, state: number): KeyMeaning {
    const fixed = FIXED_KEYSYMS[keycode];
    if (fixed !== undefined) {
      const levels = fixed.split(' ');
      const keypadDigit = keycode >= 79 && keycode <= 91 && levels.length > 1; // KP_7 … KP_Decimal
      const second = keypadDigit
        ? ((state & Modifier.Mod2) !== 0) !== ((state & Modifier.Shift) !== 0)
        : (state & Modifier.Shift) !== 0;
      return meaning(levels[second ? 1 : 0] ?? levels[0]);
    }
    const entry = this.#table[keycode];
    if (entry === undefined) return { keysym: undefined, text: '' };
    const levels = entry.split(' ').map((l) => (l === 'NoSymbol' ? undefined : l));
    const shift = (state & Modifier.Shift) !== 0;
    // A two-level key ignores AltGr (its key type has no Mod5), like XKB's TWO_LEVEL/ALPHABETIC.
    const base = levels.length > 2 && (state & Modifier.Mod5) !== 0 ? 2 : 0;
    let upper = shift;
    if ((state & Modifier.Lock) !== 0 && isCased(levels[base], levels[base + 1])) upper = !upper;
    return meaning(levels[base + (upper ? 1 : 0)]);
  }
}

function isCased(lower: string | undefined, upper: string | undefined): boolean {
  const l = lower === undefined ? undefined : KEYSYM_TEXT[lower];
  const u = upper === undefined ? undefined : KEYSYM_TEXT[upper];
  return l !== undefined && u !== undefined && l !== u && l.toUpperCase() === u;
}

function meaning(keysym: string | undefined): KeyMeaning {
  return { keysym, text: keysym === undefined ? '' : (KEYSYM_TEXT[keysym] ?? '') };
}
