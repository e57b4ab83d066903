import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { QubesDbDaemon } from './dom0.ts';
import { QubesDbError } from './errors.ts';
import {
  describeRejection,
  encodeHeader,
  encodeMessage,
  isValidValue,
  isWritablePath,
  MAX_PATH_LENGTH,
  QdbFrameReader,
  type QdbMessage,
  QdbMsg,
  type QdbMsgType,
} from './wire.ts';

export interface LocalSocketOptions {
  /** Read-write socket, e.g. `/var/run/qubes/qubesdb.<vmname>.sock`. */
  path: string;
  /** Read-only socket (WRITE and RM answered with RESP_ERROR), e.g. `qubesdb.<vmname>.ro.sock`. */
  readOnlyPath?: string;
  /** Clients served at once (the C daemon's MAX_CLIENTS). Default 256. */
  maxClients?: number;
  /** Replies queued for a client that does not read, before we drop it. Default 1 MiB. */
  maxPendingBytes?: number;
  log?: (line: string) => void;
}

/** The local sockets of a dom0 daemon; `close()` stops them and drops every client. */
export interface LocalSocketServer {
  readonly clients: number;
  close(): Promise<void>;
}

/**
 * The daemon's local client protocol (QubesOS/qubes-core-qubesdb @ aeb3c8d84866 daemon/db-cmds.c
 * `handle_client_data`, client/qdb-client.c), as qubesd and the
 * `qubesdb-read`/`-write`/`-watch` tools use it in dom0: the same 72-byte header,
 * one request at a time, `RESP_WATCH` interleaved at any moment. Writes and removals
 * made here are forwarded to the VM like those of the in-process API.
 *
 * Follows `handle_client_data` (db-cmds.c): an invalid header costs a RESP_ERROR after
 * its data is discarded; a refused write path, or data on CMD_READ, drops the client.
 * One deliberate difference: C ignores data on WATCH/UNWATCH (and then reads it as the
 * next header); we discard it and answer RESP_ERROR.
 */
export async function serveLocalSocket(
  daemon: QubesDbDaemon,
  options: LocalSocketOptions,
): Promise<LocalSocketServer> {
  const log =
    options.log ?? ((line: string) => process.stderr.write(`qubesdb-daemon(${daemon.vmDomain}): ${line}\n`));
  const maxClients = options.maxClients ?? 256;
  const maxPending = options.maxPendingBytes ?? 1024 * 1024;
  const clients = new Set<Socket>();
  const servers: Server[] = [];

  const serve = async (path: string, canWrite: boolean) => {
    rmSync(path, { force: true });
    const server = createServer((socket) => {
      if (clients.size >= maxClients) {
        socket.destroy();
        return;
      }
      clients.add(socket);
      socket.on('close', () => clients.delete(socket));
      handleClient(socket, canWrite);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error: Error) => log(`local socket ${path}: ${error.message}`));
    servers.push(server);
  };

  const handleClient = (socket: Socket, canWrite: boolean) => {
    const reader = new QdbFrameReader('local', { recover: true });
    const watches: { path: string; off: () => void }[] = [];
    let dropped = false;
    const send = (bytes: Uint8Array) => {
      if (dropped) return;
      if (socket.writableLength + bytes.length > maxPending) {
        drop('the client does not read its replies');
        return;
      }
      socket.write(bytes);
    };
    const reply = (type: QdbMsgType, path: string) => send(encodeHeader(type, path, 0));
    const drop = (why: string) => {
      if (dropped) return;
      dropped = true;
      log(`dropping a local client: ${why}`);
      socket.end();
      socket.destroySoon?.();
    };
    socket.on('close', () => {
      for (const watch of watches) watch.off();
      watches.length = 0;
    });
    socket.on('error', () => {}); // a vanished client is just a closed one
    socket.on('data', (chunk: Buffer) => {
      for (const event of reader.push(chunk)) {
        if (dropped) return;
        if (event.kind === 'invalid') {
          log(`invalid message from a local client: ${describeRejection(event)}`);
          reply(QdbMsg.RESP_ERROR, pathOf(event.header));
          continue;
        }
        const verdict = handle(event.message);
        if (verdict) drop(verdict);
      }
    });

    /** One command; returns why the client must go, or undefined. */
    const handle = ({ header, data }: QdbMessage): string | undefined => {
      const path = header.path;
      switch (header.type) {
        case QdbMsg.CMD_READ: {
          if (header.dataLength > 0) return "CMD_READ shouldn't have data field";
          const value = daemon.readBytes(path);
          if (value === undefined) reply(QdbMsg.RESP_ERROR_NOENT, path);
          else send(encodeMessage(QdbMsg.RESP_READ, path, value));
          return undefined;
        }
        case QdbMsg.CMD_WRITE: {
          if (!canWrite || !isValidValue(data)) {
            reply(QdbMsg.RESP_ERROR, path);
            return undefined;
          }
          if (!isWritablePath(path)) {
            reply(QdbMsg.RESP_ERROR, path);
            return `failed to write path ${path}`;
          }
          try {
            daemon.write(path, data);
          } catch (error) {
            reply(QdbMsg.RESP_ERROR, path);
            return error instanceof QubesDbError ? error.message : String(error);
          }
          reply(QdbMsg.RESP_OK, path);
          return undefined;
        }
        case QdbMsg.CMD_RM: {
          if (!canWrite || header.dataLength > 0) {
            reply(QdbMsg.RESP_ERROR, path);
            return undefined;
          }
          reply(daemon.rm(path) ? QdbMsg.RESP_OK : QdbMsg.RESP_ERROR_NOENT, path);
          return undefined;
        }
        case QdbMsg.CMD_MULTIREAD: {
          if (header.dataLength > 0) {
            reply(QdbMsg.RESP_ERROR, path);
            return undefined;
          }
          const entries = daemon.entries(path);
          if (path === '') entries.reverse(); // the whole database in reverse order, as for the VM
          for (const [entryPath, value] of entries)
            send(encodeMessage(QdbMsg.RESP_MULTIREAD, entryPath, value));
          reply(QdbMsg.RESP_MULTIREAD, '');
          return undefined;
        }
        case QdbMsg.CMD_LIST: {
          if (header.dataLength > 0) {
            reply(QdbMsg.RESP_ERROR, path);
            return undefined;
          }
          for (const entryPath of daemon.list(path)) reply(QdbMsg.RESP_LIST, entryPath);
          reply(QdbMsg.RESP_LIST, '');
          return undefined;
        }
        case QdbMsg.CMD_WATCH: {
          if (header.dataLength > 0) {
            reply(QdbMsg.RESP_ERROR, path);
            return undefined;
          }
          const off = daemon.watch(path, (changed) =>
            reply(QdbMsg.RESP_WATCH, changed.slice(0, MAX_PATH_LENGTH)),
          );
          watches.push({ path, off });
          reply(QdbMsg.RESP_OK, path);
          return undefined;
        }
        case QdbMsg.CMD_UNWATCH: {
          if (header.dataLength > 0) {
            reply(QdbMsg.RESP_ERROR, path);
            return undefined;
          }
          const at = watches.findIndex((w) => w.path === path);
          if (at < 0) {
            reply(QdbMsg.RESP_ERROR_NOENT, path); // not fatal
            return undefined;
          }
          watches[at]!.off();
          watches.splice(at, 1);
          reply(QdbMsg.RESP_OK, path);
          return undefined;
        }
        default:
          // verify_hdr already refused responses from clients; nothing else reaches here.
          reply(QdbMsg.RESP_ERROR, path);
          return undefined;
      }
    };
  };

  await serve(options.path, true);
  if (options.readOnlyPath) await serve(options.readOnlyPath, false);

  return {
    get clients() {
      return clients.size;
    },
    async close() {
      for (const client of clients) client.destroy();
      await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    },
  };
}

/** The path of a rejected header as the C daemon echoes it (before the first NUL, at most 63 bytes), ASCII only. */
function pathOf(header: Uint8Array): string {
  let end = 1;
  while (end < 64 && header[end] !== 0) end++;
  let path = '';
  for (let i = 1; i < end; i++) {
    const c = header[i]!;
    if (c > 0x7f) break;
    path += String.fromCharCode(c);
  }
  return path;
}
