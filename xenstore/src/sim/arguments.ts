/** Request arguments as the C xenstored reads them (get_strings, onearg, atoi, xs_strings_to_perms). */
import { type Access, type PermissionEntry, parsePermission } from '../perms.ts';
import type { XsErrorName } from '../wire.ts';

/** A request refused with an xsd_errors name (the reply is XS_ERROR). */
export class XsFail extends Error {
  constructor(readonly code: XsErrorName) {
    super(code);
  }
}

export function strings(p: Uint8Array): string[] {
  const out: string[] = [];
  const dec = new TextDecoder();
  let start = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i] === 0) {
      out.push(dec.decode(p.subarray(start, i)));
      start = i + 1;
    }
  }
  return out;
}

export function countNuls(p: Uint8Array): number {
  let n = 0;
  for (const b of p) if (b === 0) n++;
  return n;
}

/** onearg(): exactly one NUL, at the end. */
export function oneArgOrUndefined(p: Uint8Array): string | undefined {
  if (p.length === 0 || p.indexOf(0) !== p.length - 1) return undefined;
  return new TextDecoder().decode(p.subarray(0, p.length - 1));
}

export function oneArg(p: Uint8Array): string {
  const a = oneArgOrUndefined(p);
  if (a === undefined) throw new XsFail('EINVAL');
  return a;
}

/** C atoi(): leading decimal digits, 0 when none. */
export function atoi(text: string): number {
  const m = /^\s*([+-]?[0-9]+)/.exec(text);
  return m ? Number.parseInt(m[1]!, 10) : 0;
}

export function permString(e: PermissionEntry): string {
  return `${({ none: 'n', read: 'r', write: 'w', both: 'b' } as const)[e.access]}${e.domid}`;
}

/** xs_strings_to_perms(): a letter, then strtol(.., 0) of the rest, which must be non-empty and fully used. */
export function parseLoosePermission(text: string): PermissionEntry | undefined {
  const strict = parsePermission(text);
  if (strict.ok) return strict.value;
  const letter = text.charAt(0);
  const access = ({ n: 'none', r: 'read', w: 'write', b: 'both' } as Record<string, Access>)[letter];
  const rest = text.slice(1);
  if (!access || rest === '') return undefined;
  let n: number;
  if (/^\s*[+-]?0[xX][0-9a-fA-F]+$/.test(rest)) n = Number.parseInt(rest.trim(), 16);
  else if (/^\s*[+-]?0[0-7]*$/.test(rest)) n = Number.parseInt(rest.trim(), 8);
  else if (/^\s*[+-]?[0-9]+$/.test(rest)) n = Number.parseInt(rest.trim(), 10);
  else return undefined;
  return { domid: n >>> 0, access };
}
