import { rmSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import type { DomainId } from '@moat/xen';
import { VchanError } from './errors.ts';
import { vchanSocketName } from './paths.ts';
import { SocketVchanEndpoint, socketRingSize } from './socket-endpoint.ts';
import { VchanStream, type VchanStreamOptions } from './stream.ts';
import type { VchanTransport } from './transport.ts';

/** Where vchan-socket endpoints meet, and who we are (the C library's VCHAN_SOCKET_DIR and VCHAN_DOMAIN). */
export interface VchanSocketPlace {
  /** Directory holding `vchan.<server>.<client>.<port>.sock`. */
  directory: string;
  /** Our own domain id; the C library reads it from `VCHAN_DOMAIN` (default 0). */
  localDomain: DomainId;
}

export interface ListenVchanSocketOptions extends VchanSocketPlace, VchanStreamOptions {
  /** The client's domain. */
  peer: DomainId;
  port: number;
  /** Minimum buffered bytes each way (rounded up to a power of two ≥ 4096, as the C library does). Default 64 KiB. */
  readMin?: number;
  writeMin?: number;
}

export interface ConnectVchanSocketOptions extends VchanSocketPlace, VchanStreamOptions {
  /** The server's domain. */
  peer: DomainId;
  port: number;
  /** Give up after this long (the C client retries forever). Default: no limit. */
  timeoutMs?: number;
  signal?: AbortSignal;
  readMin?: number;
  writeMin?: number;
}

// Unix socket paths are limited to sun_path (108 bytes on Linux, including the NUL).
const MAX_SOCKET_PATH = 107;

/**
 * Server end of a vchan-socket channel: like `libvchan_server_init` of
 * qubes-core-vchan-socket, it unlinks any stale socket, listens, and serves exactly one
 * client. Resolves once listening; the stream is 'waiting' until the client connects
 * (`await stream.whenConnected()`), and bytes written before that are buffered.
 */
export async function listenVchanSocket(options: ListenVchanSocketOptions): Promise<VchanStream> {
  const channel = { localDomain: options.localDomain, remoteDomain: options.peer, port: options.port };
  const path = socketPath(options.directory, options.localDomain, options.peer, options.port, 'listen');
  rmSync(path, { force: true });
  const endpoint = new SocketVchanEndpoint('server', {
    readSize: socketRingSize(options.readMin ?? 65536),
    writeSize: socketRingSize(options.writeMin ?? 65536),
  });
  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: Error) =>
      reject(new VchanError('listen', errnoCode(error), channel, path, { cause: error })),
    );
    server.listen(path, () => resolve());
  });
  server.on('error', () => {
    // After listening, a server error can only concern accepting; the endpoint stays 'waiting'
    // and the caller's timeout or close() ends it.
  });
  endpoint.acceptFrom(server);
  return new VchanStream(endpoint, { ...channel, role: 'server', transport: 'socket' }, options);
}

/**
 * Client end: like the C client, retries while the socket is missing or refuses
 * (ENOENT/ECONNREFUSED), since the server may not be up yet. Resolves when connected.
 */
export async function connectVchanSocket(options: ConnectVchanSocketOptions): Promise<VchanStream> {
  const channel = { localDomain: options.localDomain, remoteDomain: options.peer, port: options.port };
  const path = socketPath(options.directory, options.peer, options.localDomain, options.port, 'connect');
  const deadline =
    options.timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + options.timeoutMs;
  let delay = 1;
  for (;;) {
    if (options.signal?.aborted) {
      throw new VchanError('connect', 'ECANCELED', channel, `${path}: aborted`, {
        cause: options.signal.reason,
      });
    }
    const result = await tryConnect(path);
    if ('socket' in result) {
      const endpoint = new SocketVchanEndpoint('client', {
        readSize: socketRingSize(options.readMin ?? 65536),
        writeSize: socketRingSize(options.writeMin ?? 65536),
      });
      endpoint.attach(result.socket);
      return new VchanStream(endpoint, { ...channel, role: 'client', transport: 'socket' }, options);
    }
    const code = errnoCode(result.error);
    if (code !== 'ENOENT' && code !== 'ECONNREFUSED') {
      throw new VchanError('connect', code, channel, path, { cause: result.error });
    }
    if (Date.now() + delay > deadline) {
      throw new VchanError(
        'connect',
        'ETIMEDOUT',
        channel,
        `${path}: no server after ${options.timeoutMs} ms`,
      );
    }
    await sleep(delay, options.signal);
    delay = Math.min(delay * 2, 50);
  }
}

function tryConnect(path: string): Promise<{ socket: Socket } | { error: Error }> {
  return new Promise((resolve) => {
    const socket = createConnection({ path, allowHalfOpen: true });
    const onError = (error: Error) => {
      socket.destroy();
      resolve({ error });
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve({ socket });
    });
  });
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

function socketPath(directory: string, server: DomainId, client: DomainId, port: number, operation: string) {
  const path = join(directory, vchanSocketName(server, client, port));
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new VchanError(
      operation,
      'ENAMETOOLONG',
      {
        localDomain: operation === 'listen' ? server : client,
        remoteDomain: operation === 'listen' ? client : server,
        port,
      },
      `${path} is longer than a unix socket path may be (${MAX_SOCKET_PATH} bytes)`,
    );
  }
  return path;
}

function errnoCode(error: Error): string {
  return (error as NodeJS.ErrnoException).code ?? 'EIO';
}

/** Unix sockets compatible with qubes-core-vchan-socket, for host tests and the C tools built with it. */
export function socketVchanTransport(place: VchanSocketPlace): VchanTransport {
  return {
    localDomain: place.localDomain,
    listen: (options) => listenVchanSocket({ ...place, ...options }),
    connect: (options) => connectVchanSocket({ ...place, ...options }),
  };
}
