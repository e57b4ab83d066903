/**
 * Node permissions as xenstore writes them: `n<domid>` none, `r<domid>` read, `w<domid>`
 * write, `b<domid>` both. The first entry names the owner (full access) and gives the access
 * of every domain not listed after it (tools/xenstore/xs_lib.c xs_strings_to_perms).
 */

export type Access = 'none' | 'read' | 'write' | 'both';

export interface PermissionEntry {
  domid: number;
  access: Access;
}

/** `owner` is `entries[0].domid`; `entries[0].access` is the default for unlisted domains. */
export type Permissions = readonly PermissionEntry[];

const letterToAccess: Record<string, Access> = { n: 'none', r: 'read', w: 'write', b: 'both' };
const accessToLetter: Record<Access, string> = { none: 'n', read: 'r', write: 'w', both: 'b' };

/** Domain ids are 16-bit (DOMID_FIRST_RESERVED is 0x7ff0; DOMID_SELF etc. above it). */
export const DOMID_MAX = 0xffff;

export type PermParse = { ok: true; value: PermissionEntry } | { ok: false; reason: string };

/**
 * Parses one entry. Stricter than xenstored's strtol (decimal only, no sign, no spaces):
 * a reply that needs leniency is a malformed reply.
 */
export function parsePermission(text: string): PermParse {
  const access = letterToAccess[text.charAt(0)];
  if (!access) return { ok: false, reason: `unknown permission letter in ${JSON.stringify(text)}` };
  const digits = text.slice(1);
  if (!/^[0-9]{1,5}$/.test(digits)) return { ok: false, reason: `bad domain id in ${JSON.stringify(text)}` };
  const domid = Number(digits);
  if (domid > DOMID_MAX) return { ok: false, reason: `domain id out of range in ${JSON.stringify(text)}` };
  return { ok: true, value: { domid, access } };
}

export function parsePermissions(
  texts: readonly string[],
): { ok: true; value: PermissionEntry[] } | { ok: false; reason: string } {
  if (texts.length === 0) return { ok: false, reason: 'empty permission list' };
  const out: PermissionEntry[] = [];
  for (const t of texts) {
    const p = parsePermission(t);
    if (!p.ok) return p;
    out.push(p.value);
  }
  return { ok: true, value: out };
}

export function formatPermission(entry: PermissionEntry): string {
  if (!Number.isInteger(entry.domid) || entry.domid < 0 || entry.domid > DOMID_MAX) {
    throw new RangeError(`permission domain id ${entry.domid} is not a domain id`);
  }
  const letter = accessToLetter[entry.access];
  if (!letter) throw new RangeError(`unknown access ${String(entry.access)}`);
  return `${letter}${entry.domid}`;
}

/** Shorthand: `perms('n0', 'r5')` or `perms({domid: 0, access: 'none'})`. Throws on bad input. */
export function perms(...items: (string | PermissionEntry)[]): PermissionEntry[] {
  return items.map((item) => {
    if (typeof item !== 'string') return { domid: item.domid, access: item.access };
    const p = parsePermission(item);
    if (!p.ok) throw new RangeError(p.reason);
    return p.value;
  });
}

export function canRead(access: Access): boolean {
  return access === 'read' || access === 'both';
}
export function canWrite(access: Access): boolean {
  return access === 'write' || access === 'both';
}
