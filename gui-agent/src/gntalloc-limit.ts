import { readFileSync, writeFileSync } from 'node:fs';
import { MAX_GRANT_REFS_COUNT } from './wire.ts';

/** Linux gntalloc's `limit` parameter (pages one process may share; default 1024). */
export const GNTALLOC_LIMIT_PATH = '/sys/module/xen_gntalloc/parameters/limit';

/**
 * Raises gntalloc's page limit to at least `pages` (root only; the parameter is 0644 in
 * drivers/xen/gntalloc.c). A window of W×H needs ⌈W·H·4/4096⌉ pages, twice while a resize
 * waits for the daemon's ack: a 1920x1080 window alone needs about 2025, above the default.
 * Returns the limit in force afterwards.
 */
export function raiseGntallocLimit(pages: number, path = GNTALLOC_LIMIT_PATH): number {
  if (!Number.isInteger(pages) || pages < 1 || pages > 4 * MAX_GRANT_REFS_COUNT) {
    throw new RangeError(`gntalloc limit of ${pages} pages`);
  }
  const current = Number(readFileSync(path, 'latin1').trim());
  if (Number.isInteger(current) && current >= pages) return current;
  writeFileSync(path, `${pages}\n`);
  return Number(readFileSync(path, 'latin1').trim());
}
