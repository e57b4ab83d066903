/**
 * A newc ("070701") cpio writer: what the Linux kernel unpacks as an initramfs. Written here,
 * not by the cpio tool, so the bytes depend only on the entries (fixed owner and time, the
 * order given), which makes the archive reproducible.
 */

export type CpioEntry =
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Uint8Array; mode?: number }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'chardev'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const TRAILER = 'TRAILER!!!';

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

export function writeCpio(entries: readonly CpioEntry[]): Uint8Array {
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [];
  let size = 0;
  const push = (bytes: Uint8Array) => {
    parts.push(bytes);
    size += bytes.length;
    const padding = pad4(size);
    if (padding) {
      parts.push(new Uint8Array(padding));
      size += padding;
    }
  };
  let ino = 1;
  const header = (name: string, mode: number, fileSize: number, nlink: number, rmajor = 0, rminor = 0) => {
    const nameBytes = encoder.encode(`${name}\0`);
    const fields = [ino++, mode, 0, 0, nlink, 0, fileSize, 0, 0, rmajor, rminor, nameBytes.length, 0];
    const text = `070701${fields.map(hex8).join('')}`;
    const head = new Uint8Array(text.length + nameBytes.length);
    head.set(encoder.encode(text), 0);
    head.set(nameBytes, text.length);
    push(head);
  };
  for (const entry of entries) {
    const path = entry.path.replace(/^\/+/, '');
    switch (entry.kind) {
      case 'dir':
        header(path, S_IFDIR | (entry.mode ?? 0o755), 0, 2);
        break;
      case 'file':
        header(path, S_IFREG | (entry.mode ?? 0o644), entry.data.length, 1);
        push(entry.data);
        break;
      case 'symlink': {
        const target = encoder.encode(entry.target);
        header(path, S_IFLNK | 0o777, target.length, 1);
        push(target);
        break;
      }
      case 'chardev':
        header(path, S_IFCHR | (entry.mode ?? 0o600), 0, 1, entry.major, entry.minor);
        break;
    }
  }
  header(TRAILER, 0, 0, 1);
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
