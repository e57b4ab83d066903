import type { DomainId } from '@moat/xen';

/**
 * Qubes' xenstore home of a vchan (vchan/init.c, QubesOS/qubes-core-vchan-xen @ a1337c282ffe): the server publishes
 * `ring-ref` and `event-channel` under `/local/domain/<server>/data/vchan/<client>/<port>`.
 * Both ends compute the same absolute path, so the server need not rely on relative paths.
 */
export function vchanXenstorePath(server: DomainId, client: DomainId, port: number): string {
  checkDomain(server, 'server');
  checkDomain(client, 'client');
  checkPort(port);
  return `/local/domain/${server}/data/vchan/${client}/${port}`;
}

/** qubes-core-vchan-socket's naming (vchan/init.c, QubesOS/qubes-core-vchan-socket @ e1da6dacf190): `vchan.<server>.<client>.<port>.sock`. */
export function vchanSocketName(server: DomainId, client: DomainId, port: number): string {
  checkDomain(server, 'server');
  checkDomain(client, 'client');
  checkPort(port);
  return `vchan.${server}.${client}.${port}.sock`;
}

/** The C library's default socket directory when `VCHAN_SOCKET_DIR` is unset. */
export const DEFAULT_VCHAN_SOCKET_DIR = '/var/run/vchan';

function checkDomain(domain: DomainId, role: string): void {
  if (!Number.isInteger(domain) || domain < 0 || domain > 0x7fef) {
    throw new RangeError(`vchan ${role} domain must be an integer in 0..32751, got ${domain}`);
  }
}

function checkPort(port: number): void {
  // libvchan ports are C ints printed with %d; Qubes uses 111, 512, 513..., 6000.
  if (!Number.isInteger(port) || port < 0 || port > 0x7fffffff) {
    throw new RangeError(`vchan port must be a non-negative 31-bit integer, got ${port}`);
  }
}
