/** Node path arithmetic of the sim (xenstored_core.c get_parent/basename, xenstored_watch.c is_child). */

export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function joinPath(parent: string, child: string): string {
  return parent === '/' ? `/${child}` : `${parent}/${child}`;
}

export function isChild(child: string, parent: string): boolean {
  if (parent === '/') return true;
  if (!child.startsWith(parent)) return false;
  const next = child.charAt(parent.length);
  return next === '' || next === '/';
}

export function eventPath(watch: { relativeTo: string | undefined }, name: string): string {
  if (!watch.relativeTo || !name.startsWith(watch.relativeTo)) return name;
  let rest = name.slice(watch.relativeTo.length);
  if (rest.startsWith('/')) rest = rest.slice(1);
  return rest;
}
