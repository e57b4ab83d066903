import type { DomainId, VchanProvider } from '@moat/xen';
import { VchanError } from './errors.ts';
import { vchanXenstorePath } from './paths.ts';
import { VchanStream, type VchanStreamOptions } from './stream.ts';

/** The part of a `XenDomain` a vchan needs: who we are and libxenvchan. */
export interface VchanDomain {
  readonly domid: DomainId;
  readonly vchan: VchanProvider;
}

/**
 * Local buffering each way, in bytes, for ends on real Xen (VchanProvider's `buffer`): a native
 * thread moves the rings while JS is busy, so small rings (1-2 KiB, common in Qubes) are not
 * held back by the event loop. 0 drives libxenvchan from the event loop directly.
 */
export const DEFAULT_LOCAL_BUFFER = 64 * 1024;

export interface ListenVchanOptions extends VchanStreamOptions {
  domain: VchanDomain;
  /** The client's domain. */
  peer: DomainId;
  port: number;
  /** Minimum ring sizes from the server's view (libvchan_server_init's read_min/write_min). Default 4096 each. */
  readMin?: number;
  writeMin?: number;
  /** Bytes of local buffering each way (see DEFAULT_LOCAL_BUFFER). */
  localBuffer?: number;
}

export interface ConnectVchanOptions extends VchanStreamOptions {
  domain: VchanDomain;
  /** The server's domain. */
  peer: DomainId;
  port: number;
  /** Bytes of local buffering each way (see DEFAULT_LOCAL_BUFFER). */
  localBuffer?: number;
  /** Give up after this long. Default: no limit (Qubes' clients wait for the server too). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Waits until the server may have published (e.g. a xenstore watch on
   * `<path>/event-channel`, as Qubes' async client does). Without it we poll with backoff.
   */
  waitForServer?: (path: string, signal: AbortSignal) => Promise<void>;
}

/**
 * Server end of a Qubes vchan: publishes `/local/domain/<us>/data/vchan/<peer>/<port>`
 * (libvchan_server_init). Resolves at once; the stream is 'waiting' until the client
 * maps the rings, and bytes written before that wait in the ring.
 */
export async function listenVchan(options: ListenVchanOptions): Promise<VchanStream> {
  const { domain, peer, port } = options;
  const path = vchanXenstorePath(domain.domid, peer, port);
  const readMin = options.readMin ?? 4096;
  const writeMin = options.writeMin ?? 4096;
  const channel = { localDomain: domain.domid, remoteDomain: peer, port };
  let endpoint: ReturnType<VchanProvider['listen']>;
  try {
    endpoint = domain.vchan.listen({
      peer,
      path,
      readMin,
      writeMin,
      buffer: options.localBuffer ?? DEFAULT_LOCAL_BUFFER,
    });
  } catch (error) {
    throw new VchanError('listen', codeOf(error), channel, path, { cause: error });
  }
  return new VchanStream(endpoint, { ...channel, role: 'server', transport: 'xen' }, options);
}

/**
 * Client end of a Qubes vchan: maps the server's rings at
 * `/local/domain/<peer>/data/vchan/<us>/<port>`, retrying until the server has published.
 */
export async function connectVchan(options: ConnectVchanOptions): Promise<VchanStream> {
  const { domain, peer, port } = options;
  const path = vchanXenstorePath(peer, domain.domid, port);
  const channel = { localDomain: domain.domid, remoteDomain: peer, port };
  const abort = new AbortController();
  const onAbort = () => abort.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  // Our own flag, not Date.now() against a deadline: a timer may fire a millisecond before
  // Date.now() reaches it, which made a timeout look like a cancellation.
  let timedOut = false;
  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          abort.abort('timeout');
        }, options.timeoutMs);
  let delay = 1;
  let lastError: unknown;
  try {
    for (;;) {
      if (abort.signal.aborted) {
        throw new VchanError(
          'connect',
          timedOut ? 'ETIMEDOUT' : 'ECANCELED',
          channel,
          `${path}: ${timedOut ? `server did not appear within ${options.timeoutMs} ms` : 'aborted'}`,
          { cause: lastError },
        );
      }
      try {
        const endpoint = domain.vchan.connect({
          peer,
          path,
          buffer: options.localBuffer ?? DEFAULT_LOCAL_BUFFER,
        });
        return new VchanStream(endpoint, { ...channel, role: 'client', transport: 'xen' }, options);
      } catch (error) {
        lastError = error;
      }
      if (options.waitForServer) {
        await options.waitForServer(path, abort.signal).catch((error: unknown) => {
          lastError = error;
        });
      } else {
        await sleep(delay, abort.signal);
        delay = Math.min(delay * 2, 100);
      }
    }
  } finally {
    if (timer) clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

function codeOf(error: unknown): string {
  if (error && typeof error === 'object' && 'code' in error && typeof error.code === 'string')
    return error.code;
  return 'EIO';
}
