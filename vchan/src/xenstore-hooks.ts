import type { DomainId } from '@moat/xen';
import { type XenstoreClient, XenstoreError } from '@moat/xenstore';
import type { VchanLiveness } from './stream.ts';

/**
 * `waitForServer` for `connectVchan`, the way Qubes' async client waits
 * (`libvchan_client_init_async` in vchan/init.c, QubesOS/qubes-core-vchan-xen @ a1337c282ffe): watch the `event-channel` leaf (the client may not be allowed to read the
 * directory) until it has a value, instead of polling libxenvchan_client_init.
 */
export function waitForServerInXenstore(
  client: XenstoreClient,
): (path: string, signal: AbortSignal) => Promise<void> {
  return async (path, signal) => {
    await client.waitFor(`${path}/event-channel`, (value) => (value ? true : undefined), { signal });
  };
}

/**
 * Liveness for `VchanStream`: the peer is alive while `/local/domain/<peer>` exists.
 * On Xen a destroyed domain sends no unmap notification, so this is what turns a
 * vanished peer into an error (`EPEERDEAD`) instead of a hang. A domain that may not
 * read the node (EACCES) counts its peer as alive: we only report what we can see.
 */
export function xenstoreLiveness(client: XenstoreClient, options: { intervalMs?: number } = {}) {
  return (peer: DomainId): VchanLiveness => ({
    intervalMs: options.intervalMs ?? 1000,
    async isPeerAlive() {
      try {
        return await client.exists(`/local/domain/${peer}`);
      } catch (error) {
        if (error instanceof XenstoreError && error.code === 'EACCES') return true;
        throw error;
      }
    },
  });
}
