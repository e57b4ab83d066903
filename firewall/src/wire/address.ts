/**
 * IPv4/IPv6 address text ↔ bytes: the one parser for every address the firewall reads as
 * text (rule trees, QubesDB keys, a vif's XenStore `ip` key, configuration). Strict: no
 * surrounding whitespace, no signs, no empty parts; a caller whose source pads values (a
 * trailing newline) trims them itself. Parsers return undefined for anything malformed
 * (untrusted input: no throws). Header bytes are parsed by `parseIpv4`/`parseIpv6` in
 * ipv4.ts/ipv6.ts; these names end in `Text`.
 */

/** Dotted quad: exactly four decimal parts of 1-3 digits, each 0-255. */
export function parseIpv4Text(text: string): Uint8Array | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (p.length === 0 || p.length > 3 || !/^[0-9]+$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    out[i] = v;
  }
  return out;
}

/**
 * RFC 4291 §2.2 text: eight hex groups of 1-4 digits, at most one `::` standing for one or
 * more zero groups, and a dotted quad only as the last 32 bits.
 */
export function parseIpv6Text(text: string): Uint8Array | undefined {
  if (text.length === 0 || text.length > 45) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const last = halves.length - 1;
  const parseGroups = (s: string, mayEndInIpv4: boolean): number[] | undefined => {
    if (s.length === 0) return [];
    const groups: number[] = [];
    const parts = s.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (mayEndInIpv4 && i === parts.length - 1 && p.includes('.')) {
        const v4 = parseIpv4Text(p);
        if (!v4) return undefined;
        groups.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
        continue;
      }
      if (p.length === 0 || p.length > 4 || !/^[0-9a-fA-F]+$/.test(p)) return undefined;
      groups.push(Number.parseInt(p, 16));
    }
    return groups;
  };
  const head = parseGroups(halves[0]!, last === 0);
  if (!head) return undefined;
  let groups: number[];
  if (last === 1) {
    const tail = parseGroups(halves[1]!, true);
    if (!tail) return undefined;
    if (head.length + tail.length > 7) return undefined;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return undefined;
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i]! >> 8;
    out[2 * i + 1] = groups[i]! & 0xff;
  }
  return out;
}

/** Either family; the result's length (4 or 16) says which. */
export function parseIpText(text: string): Uint8Array | undefined {
  return text.includes(':') ? parseIpv6Text(text) : parseIpv4Text(text);
}

export function formatIpv4(a: Uint8Array, offset = 0): string {
  return `${a[offset]}.${a[offset + 1]}.${a[offset + 2]}.${a[offset + 3]}`;
}

/** RFC 5952 form (lowercase, the longest run of two or more zero groups compressed). */
export function formatIpv6(a: Uint8Array, offset = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((a[offset + 2 * i]! << 8) | a[offset + 2 * i + 1]!);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (x: number[]) => x.map((v) => v.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/** The text of a 4- or 16-byte address. */
export function formatIp(a: Uint8Array): string {
  return a.length === 16 ? formatIpv6(a) : formatIpv4(a);
}
