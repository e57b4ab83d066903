import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { keymapFor, Modifier, parseLayoutSetting } from './keymap.ts';
import { FIXED_KEYSYMS, KEYSYM_TEXT, LAYOUT_KEYSYMS } from './keymap-data.ts';
import { generateKeymapData, renderKeymapData } from './xkb-symbols.ts';

const { Shift, Lock, Mod2, Mod5 } = Modifier;
const key = (layout: string, keycode: number, state = 0) => keymapFor(layout).lookup(keycode, state);

describe('keys in the VM keyboard layout (tables from Debian xkb-data)', () => {
  it('reads QubesDB /keyboard-layout as layout+variant+options', () => {
    expect(parseLayoutSetting('de+nodeadkeys+')).toEqual({
      layout: 'de',
      variant: 'nodeadkeys',
      options: '',
    });
    expect(parseLayoutSetting('fr++compose:ralt')).toEqual({
      layout: 'fr',
      variant: '',
      options: 'compose:ralt',
    });
    expect(parseLayoutSetting('')).toEqual({ layout: 'us', variant: '', options: '' });
  });

  it('us: letters, Shift and Caps Lock, and the zoom keys', () => {
    expect(key('us', 38)).toEqual({ keysym: 'a', text: 'a' });
    expect(key('us', 38, Shift)).toEqual({ keysym: 'A', text: 'A' });
    expect(key('us', 38, Lock)).toEqual({ keysym: 'A', text: 'A' });
    expect(key('us', 38, Lock | Shift)).toEqual({ keysym: 'a', text: 'a' });
    expect(key('us', 20)).toEqual({ keysym: 'minus', text: '-' });
    expect(key('us', 21, Shift)).toEqual({ keysym: 'plus', text: '+' });
    expect(key('us', 19, Lock)).toEqual({ keysym: '0', text: '0' }); // Caps Lock does not shift digits
  });

  it('de: y and z swapped, AltGr+q is @, + is its own key', () => {
    expect(key('de', 29)).toEqual({ keysym: 'z', text: 'z' });
    expect(key('de', 52)).toEqual({ keysym: 'y', text: 'y' });
    expect(key('de', 24, Mod5)).toEqual({ keysym: 'at', text: '@' });
    expect(key('de', 35)).toEqual({ keysym: 'plus', text: '+' });
    expect(key('de', 61)).toEqual({ keysym: 'minus', text: '-' });
    expect(key('de', 21)).toEqual({ keysym: 'dead_acute', text: '' });
    expect(key('de+nodeadkeys', 21)).toEqual({ keysym: 'acute', text: '´' });
  });

  it('fr: AZERTY, digits need Shift', () => {
    expect(key('fr', 24)).toEqual({ keysym: 'a', text: 'a' });
    expect(key('fr', 38)).toEqual({ keysym: 'q', text: 'q' });
    expect(key('fr', 10)).toEqual({ keysym: 'ampersand', text: '&' });
    expect(key('fr', 10, Shift)).toEqual({ keysym: '1', text: '1' });
  });

  it('ru: Cyrillic letters on the Latin keys', () => {
    expect(key('ru', 24)).toEqual({ keysym: 'Cyrillic_shorti', text: 'й' });
  });

  it('keys outside the main block are the same in every layout; the keypad follows NumLock', () => {
    for (const layout of ['us', 'de', 'jp']) {
      expect(key(layout, 9).keysym).toBe('Escape');
      expect(key(layout, 113).keysym).toBe('Left');
      expect(key(layout, 86)).toEqual({ keysym: 'KP_Add', text: '+' });
      expect(key(layout, 65)).toEqual({ keysym: 'space', text: ' ' });
    }
    expect(key('us', 87)).toEqual({ keysym: 'KP_End', text: '' });
    expect(key('us', 87, Mod2)).toEqual({ keysym: 'KP_1', text: '1' });
    expect(key('us', 23, Shift).keysym).toBe('ISO_Left_Tab');
  });

  it('an unknown layout falls back to us, and says so', () => {
    const warnings: string[] = [];
    const keymap = keymapFor('xx+yy', (_level, message) => warnings.push(message));
    expect(keymap.layout).toBe('us');
    expect(keymap.lookup(38, 0).keysym).toBe('a');
    expect(warnings).toHaveLength(1);
    expect(keymapFor('de+nosuchvariant').layout).toBe('de');
    expect(key('us', 255)).toEqual({ keysym: undefined, text: '' });
  });

  it('keymap-data.ts is what the generator makes from the installed xkb-data (UPDATE_KEYMAP=1 rewrites it)', () => {
    const path = fileURLToPath(new URL('./keymap-data.ts', import.meta.url));
    const generated = generateKeymapData('/usr/share/X11/xkb', '/usr/include/X11/keysymdef.h');
    if (process.env.UPDATE_KEYMAP === '1') writeFileSync(path, renderKeymapData(generated));
    expect({ fixed: FIXED_KEYSYMS, layouts: LAYOUT_KEYSYMS, text: KEYSYM_TEXT }).toEqual(generated);
  });
});
