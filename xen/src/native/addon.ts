import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { xenError } from '../errno.ts';
import { XenError } from '../types.ts';

/** A range of memory held by the addon (gntdev mapping, gntalloc pages, test buffer). */
export interface NativeMapping {
  /** Writable mappings only; detached by unmap(). A read-only mapping throws EACCES here. */
  readonly buffer: ArrayBuffer;
  readonly byteLength: number;
  readonly mapped: boolean;
  readU8(offset: number): number;
  readU16(offset: number): number;
  readU32(offset: number): number;
  /** __atomic_load_n(ACQUIRE) */
  load32(offset: number): number;
  /** __atomic_store_n(RELEASE) */
  store32(offset: number, value: number): void;
  copyTo(target: Uint8Array, targetOffset: number, offset: number, length: number): void;
  unmap(): void;
}

export interface NativeEvtchn {
  bindInterdomain(domain: number, remotePort: number): number;
  bindUnbound(domain: number): number;
  notify(port: number): void;
  unbind(port: number): void;
  unmask(port: number): void;
  start(listener: (ports: number[]) => void): void;
  close(): void;
}

export interface NativeVchan {
  /** Bytes read, 0 when nothing is ready, -1 when closed and drained. */
  read(into: Uint8Array): number;
  /** Bytes written, 0 when full, -1 when the peer closed. */
  write(data: Uint8Array): number;
  dataReady(): number;
  bufferSpace(): number;
  /** libxenvchan_is_open: 0 closed, 1 open, 2 waiting (server before the client came). */
  isOpen(): number;
  start(listener: () => void): void;
  close(): void;
}

export interface NativeXenbus {
  write(message: Uint8Array): void;
  start(onData: (chunk: Uint8Array) => void, onError: (error: Error) => void): void;
  close(): void;
}

export interface NativeCopySegment {
  toGrant: boolean;
  domain: number;
  ref: number;
  offset: number;
  length: number;
  buffer: Uint8Array;
  bufferOffset: number;
}

export interface NativeAddon {
  setErrorClass(ctor: typeof XenError): void;
  newTestBuffer(bytes: number, writable?: boolean): NativeMapping;
  Evtchn: new () => NativeEvtchn;
  mapGrants(domain: number, refs: number[], writable: boolean): NativeMapping;
  shareGrants(domain: number, count: number, writable: boolean): { refs: number[]; mapping: NativeMapping };
  grantCopy(segments: NativeCopySegment[]): Int16Array;
  /** With `bufferBytes` > 0 the end is pumped by a native thread through buffers of that size. */
  serverInit(
    domain: number,
    path: string,
    readMin: number,
    writeMin: number,
    bufferBytes?: number,
  ): NativeVchan;
  clientInit(domain: number, path: string, bufferBytes?: number): NativeVchan;
  Xenbus: new (path: string) => NativeXenbus;
  ownDomainId(): number;
}

/**
 * Where the compiled addon is: $MOAT_XEN_ADDON if set (a VM image puts it next to its
 * bundle), else xen/build/Release/moat_xen.node as `node-gyp rebuild` in xen/ leaves it.
 */
export function nativeAddonPath(): string {
  return (
    process.env.MOAT_XEN_ADDON ?? fileURLToPath(new URL('../../build/Release/moat_xen.node', import.meta.url))
  );
}

let addon: NativeAddon | undefined;

/** Loads the addon on first use (never at import, so sim users need no compiled code). */
export function loadNativeAddon(): NativeAddon {
  if (addon) return addon;
  const path = nativeAddonPath();
  if (!existsSync(path))
    throw xenError(
      'load native addon',
      'ENOENT',
      `${path} is not built: run \`node_modules/.bin/node-gyp rebuild\` in xen/ (needs libxen-dev), or ./moat test --only addon`,
    );
  const require = createRequire(import.meta.url);
  let loaded: NativeAddon;
  try {
    loaded = require(path) as NativeAddon;
  } catch (error) {
    throw xenError('load native addon', 'ENOEXEC', `${path}: ${(error as Error).message}`);
  }
  loaded.setErrorClass(XenError);
  addon = loaded;
  return loaded;
}
