/**
 * Reads just enough of XKB's text files (Debian's xkb-data: `keycodes/evdev`, `symbols/*`) to
 * know which keysym each alphanumeric key makes at shift levels 1–4 in a layout, and writes
 * that as `keymap-data.ts`. Not an XKB compiler: only group 1, `include`, `key <X> { ... }`
 * with NoSymbol keeping the included level, and `replace`/`augment` keys; types, actions
 * and modifier maps are skipped. (`keymap.test.ts` checks the committed table is what this
 * makes from the installed xkb-data; `UPDATE_KEYMAP=1` rewrites it.)
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The keys whose symbols depend on the layout: the main block and the ISO key left of Z. */
export const LAYOUT_KEYS: readonly string[] = [
  'TLDE',
  ...range('AE', 12),
  ...range('AD', 12),
  ...range('AC', 12),
  ...range('AB', 10),
  'BKSL',
  'LSGT',
];

/** Keys that make the same keysym in every layout (symbols/pc, symbols/keypad): level 1 [, level 2]. */
export const FIXED_KEYS: Readonly<Record<string, readonly string[]>> = {
  ESC: ['Escape'],
  RTRN: ['Return'],
  BKSP: ['BackSpace'],
  TAB: ['Tab', 'ISO_Left_Tab'],
  SPCE: ['space'],
  LEFT: ['Left'],
  RGHT: ['Right'],
  UP: ['Up'],
  DOWN: ['Down'],
  PGUP: ['Prior'],
  PGDN: ['Next'],
  HOME: ['Home'],
  END: ['End'],
  INS: ['Insert'],
  DELE: ['Delete'],
  ...Object.fromEntries(range('FK', 12).map((name, i) => [name, [`F${i + 1}`]])),
  KPAD: ['KP_Add'],
  KPSU: ['KP_Subtract'],
  KPMU: ['KP_Multiply'],
  KPDV: ['KP_Divide'],
  KPEN: ['KP_Enter'],
  KP0: ['KP_Insert', 'KP_0'],
  KP1: ['KP_End', 'KP_1'],
  KP2: ['KP_Down', 'KP_2'],
  KP3: ['KP_Next', 'KP_3'],
  KP4: ['KP_Left', 'KP_4'],
  KP5: ['KP_Begin', 'KP_5'],
  KP6: ['KP_Right', 'KP_6'],
  KP7: ['KP_Home', 'KP_7'],
  KP8: ['KP_Up', 'KP_8'],
  KP9: ['KP_Prior', 'KP_9'],
  KPDL: ['KP_Delete', 'KP_Decimal'],
  LFSH: ['Shift_L'],
  RTSH: ['Shift_R'],
  LCTL: ['Control_L'],
  RCTL: ['Control_R'],
  LALT: ['Alt_L'],
  RALT: ['ISO_Level3_Shift'],
  CAPS: ['Caps_Lock'],
  LWIN: ['Super_L'],
};

/** The layouts we ship tables for (`layout` or `layout(variant)`), as QubesDB names them. */
export const LAYOUTS: readonly string[] = [
  'us',
  'us(intl)',
  'us(dvorak)',
  'us(colemak)',
  'gb',
  'de',
  'de(nodeadkeys)',
  'at',
  'ch',
  'ch(fr)',
  'fr',
  'fr(oss)',
  'be',
  'nl',
  'es',
  'latam',
  'pt',
  'br',
  'it',
  'se',
  'no',
  'dk',
  'fi',
  'pl',
  'cz',
  'sk',
  'hu',
  'ru',
  'ua',
  'gr',
  'tr',
  'jp',
  'ca',
];

function range(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i + 1).padStart(2, '0')}`);
}

type Levels = (string | undefined)[];

const INCLUDE = /^(include|augment|override|replace)\s+"([^"]+)"\s*([\s\S]*)$/;

/** `<NAME> = number;` and `alias <A> = <B>;` of keycodes/evdev: X keycodes (evdev + 8). */
export function parseKeycodes(text: string): Map<string, number> {
  const codes = new Map<string, number>();
  const source = stripComments(text);
  for (const m of source.matchAll(/<([A-Za-z0-9+-]+)>\s*=\s*([0-9]+)\s*;/g)) codes.set(m[1]!, Number(m[2]));
  for (const m of source.matchAll(/alias\s*<([A-Za-z0-9+-]+)>\s*=\s*<([A-Za-z0-9+-]+)>\s*;/g)) {
    const target = codes.get(m[2]!);
    if (target !== undefined) codes.set(m[1]!, target);
  }
  return codes;
}

function stripComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/\/\/[^\n]*/g, ' ');
}

interface Section {
  name: string;
  isDefault: boolean;
  body: string;
}

function sections(text: string): Section[] {
  const source = stripComments(text);
  const out: Section[] = [];
  const re = /((?:[a-z_]+\s+)*)xkb_symbols\s+"([^"]*)"\s*\{/g;
  for (let m = re.exec(source); m; m = re.exec(source)) {
    let depth = 1;
    let i = re.lastIndex;
    for (; i < source.length && depth > 0; i++) {
      if (source[i] === '{') depth++;
      else if (source[i] === '}') depth--;
    }
    out.push({ name: m[2]!, isDefault: /\bdefault\b/.test(m[1]!), body: source.slice(re.lastIndex, i - 1) });
    re.lastIndex = i;
  }
  return out;
}

/** Statements at depth 0 of a section body, split on `;`. */
function statements(body: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    else if (c === ';' && depth === 0) {
      out.push(body.slice(start, i).trim());
      start = i + 1;
    }
  }
  return out.filter((s) => s.length > 0);
}

function splitTop(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 0) {
      out.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  out.push(text.slice(start).trim());
  return out;
}

/** Group 1's symbols of a key body: the first bare `[...]` or `symbols[Group1] = [...]`. */
function groupOne(body: string): Levels | undefined {
  for (const entry of splitTop(body)) {
    const m = /^(?:symbols\s*\[\s*group1\s*\]\s*=\s*)?\[([^\]]*)\]$/i.exec(entry);
    if (m) {
      return m[1]!.split(',').map((s) => {
        const name = s.trim();
        return name === '' || name === 'NoSymbol' ? undefined : name;
      });
    }
  }
  return undefined;
}

export class XkbSymbols {
  readonly #cache = new Map<string, string>();
  constructor(readonly root: string) {}

  /** The levels of every LAYOUT_KEYS key in `file(section)` (default section when none). */
  resolve(spec: string, depth = 0): Map<string, Levels> {
    if (depth > 12) throw new Error(`xkb: include depth above 12 at ${spec}`);
    const m = /^([A-Za-z0-9_/-]+)(?:\(([^)]*)\))?$/.exec(spec.trim());
    if (!m) throw new Error(`xkb: cannot read include ${JSON.stringify(spec)}`);
    const [, file, name] = m;
    const all = sections(this.#read(file!));
    const section = name ? all.find((s) => s.name === name) : (all.find((s) => s.isDefault) ?? all[0]);
    if (!section) throw new Error(`xkb: no section ${JSON.stringify(name ?? 'default')} in symbols/${file}`);
    const keys = new Map<string, Levels>();
    for (let statement of statements(section.body)) {
      // `include "x"` needs no `;`, so it may lead the statement that follows it.
      for (
        let include = INCLUDE.exec(statement);
        include;
        statement = include[3]!, include = INCLUDE.exec(statement)
      ) {
        const augment = include[1] === 'augment';
        for (const part of include[2]!.split(/[+|]/).filter(Boolean)) {
          // `+` and plain include override, `|` and augment only add; we treat both as the merge
          // mode of the statement, which is what the layouts we ship use.
          for (const [key, levels] of this.resolve(part, depth + 1)) merge(keys, key, levels, augment);
        }
      }
      const key = /^(?:(override|replace|augment)\s+)?key\s*<([A-Za-z0-9+-]+)>\s*\{([\s\S]*)\}$/.exec(
        statement,
      );
      if (!key || !LAYOUT_KEYS.includes(key[2]!)) continue;
      const levels = groupOne(key[3]!);
      if (!levels) continue;
      if (key[1] === 'replace') keys.set(key[2]!, levels);
      else merge(keys, key[2]!, levels, key[1] === 'augment');
    }
    return keys;
  }

  #read(file: string): string {
    let text = this.#cache.get(file);
    if (text === undefined) {
      text = readFileSync(join(this.root, 'symbols', file), 'latin1');
      this.#cache.set(file, text);
    }
    return text;
  }
}

function merge(keys: Map<string, Levels>, key: string, levels: Levels, augment: boolean): void {
  const old = keys.get(key) ?? [];
  const out: Levels = [];
  for (let i = 0; i < Math.max(old.length, levels.length); i++) {
    out[i] = augment ? (old[i] ?? levels[i]) : (levels[i] ?? old[i]);
  }
  keys.set(key, out);
}

/** keysym name → character, from X11/keysymdef.h's `/* U+XXXX` comments and Latin-1 values. */
export function parseKeysymdef(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(
    /#define XK_([A-Za-z0-9_]+)\s+0x([0-9a-fA-F]+)(?:\s*\/\*\s*\(?U\+([0-9A-Fa-f]{4,6}))?/g,
  )) {
    const value = Number.parseInt(m[2]!, 16);
    const code = m[3]
      ? Number.parseInt(m[3], 16)
      : value >= 0x20 && value <= 0xff && value !== 0x7f
        ? value
        : undefined;
    if (code !== undefined && !out.has(m[1]!)) out.set(m[1]!, String.fromCodePoint(code));
  }
  return out;
}

export interface KeymapData {
  fixed: Record<number, string>;
  layouts: Record<string, Record<number, string>>;
  text: Record<string, string>;
}

/** The tables of keymap-data.ts made from an XKB tree and keysymdef.h. */
export function generateKeymapData(xkbRoot: string, keysymdefPath: string): KeymapData {
  const codes = parseKeycodes(readFileSync(join(xkbRoot, 'keycodes', 'evdev'), 'latin1'));
  const texts = parseKeysymdef(readFileSync(keysymdefPath, 'latin1'));
  const symbols = new XkbSymbols(xkbRoot);
  const used = new Set<string>();
  const code = (name: string) => {
    const c = codes.get(name);
    if (c === undefined) throw new Error(`xkb: no keycode for <${name}>`);
    return c;
  };
  const fixed: Record<number, string> = {};
  for (const [name, levels] of Object.entries(FIXED_KEYS)) {
    fixed[code(name)] = levels.join(' ');
    for (const l of levels) used.add(l);
  }
  const layouts: Record<string, Record<number, string>> = {};
  for (const layout of LAYOUTS) {
    const keys = symbols.resolve(layout);
    const table: Record<number, string> = {};
    for (const name of LAYOUT_KEYS) {
      const levels = keys.get(name);
      if (!levels || levels.every((l) => l === undefined)) continue;
      const four = levels.slice(0, 4).map((l) => l ?? 'NoSymbol');
      while (four.length > 1 && four[four.length - 1] === 'NoSymbol') four.pop();
      table[code(name)] = four.join(' ');
      for (const l of four) used.add(l);
    }
    layouts[layout] = table;
  }
  const text: Record<string, string> = {};
  for (const name of [...used].sort()) {
    const c = texts.get(name) ?? unicodeKeysym(name);
    if (c !== undefined && !name.startsWith('KP_') && !name.startsWith('dead_')) text[name] = c;
  }
  for (const [name, c] of Object.entries({
    KP_Add: '+',
    KP_Subtract: '-',
    KP_Multiply: '*',
    KP_Divide: '/',
  })) {
    text[name] = c;
  }
  for (let d = 0; d <= 9; d++) text[`KP_${d}`] = String(d);
  text.KP_Decimal = '.';
  text.space = ' ';
  return { fixed, layouts, text };
}

/** keymap-data.ts for `data` (biome formats it afterwards). */
export function renderKeymapData({ fixed, layouts, text }: KeymapData): string {
  return [
    '// Generated by generateKeymapData (xkb-symbols.ts) from Debian xkb-data and x11proto-dev',
    '// (keycodes/evdev, symbols/*, X11/keysymdef.h); licences in ../licenses/. Do not edit.',
    '',
    '/** X keycode → keysym names for shift levels 1–4, separated by spaces, for keys every layout shares. */',
    `export const FIXED_KEYSYMS: Readonly<Record<number, string>> = ${JSON.stringify(fixed, null, 2)};`,
    '',
    '/** Layout (`de`, `de(nodeadkeys)`) → X keycode → keysym names for levels 1–4 (NoSymbol where none). */',
    `export const LAYOUT_KEYSYMS: Readonly<Record<string, Readonly<Record<number, string>>>> = ${JSON.stringify(layouts, null, 2)};`,
    '',
    '/** Keysym name → the character it types. */',
    `export const KEYSYM_TEXT: Readonly<Record<string, string>> = ${JSON.stringify(text, null, 2)};`,
    '',
  ].join('\n');
}

function unicodeKeysym(name: string): string | undefined {
  const m = /^U([0-9A-Fa-f]{4,6})$/.exec(name);
  return m ? String.fromCodePoint(Number.parseInt(m[1]!, 16)) : undefined;
}
