/** The operations a client and a transaction share, and the checks on their arguments and replies. */
import { XenstoreError, XenstoreProtocolError, XenstoreUsageError } from './errors.ts';
import { formatPermission, type PermissionEntry, parsePermissions } from './perms.ts';
import { describeBytes, joinStrings, parseOneString, splitStrings, utf8, XsType } from './wire.ts';

export interface RequestOptions {
  /** Rejects with XenstoreTimeoutError when no reply came in time (the reply is discarded if it comes later). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Operations shared by the client and a transaction (which sends them with its tx_id). */
export abstract class XenstoreOps {
  protected abstract request(
    type: number,
    payload: Uint8Array,
    path: string | undefined,
    options: RequestOptions | undefined,
  ): Promise<Uint8Array>;

  /** The node's value, exact bytes. */
  read(path: string, options?: RequestOptions): Promise<Uint8Array> {
    return this.request(XsType.READ, pathArg('READ', path), path, options);
  }

  /** The node's value as UTF-8 text. */
  async readString(path: string, options?: RequestOptions): Promise<string> {
    return new TextDecoder().decode(await this.read(path, options));
  }

  /** The value, or undefined when the node does not exist (ENOENT). */
  async tryRead(path: string, options?: RequestOptions): Promise<string | undefined> {
    try {
      return await this.readString(path, options);
    } catch (error) {
      if (error instanceof XenstoreError && error.code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async exists(path: string, options?: RequestOptions): Promise<boolean> {
    try {
      await this.read(path, options);
      return true;
    } catch (error) {
      if (error instanceof XenstoreError && error.code === 'ENOENT') return false;
      throw error;
    }
  }

  /** Writes the value (creating missing parents, which get empty values). */
  async write(path: string, value: string | Uint8Array, options?: RequestOptions): Promise<void> {
    checkArg('WRITE', path);
    const bytes = typeof value === 'string' ? utf8(value) : value;
    expectOk('WRITE', path, await this.request(XsType.WRITE, joinStrings([path], bytes), path, options));
  }

  /** Creates the node with an empty value; succeeds if it exists. */
  async mkdir(path: string, options?: RequestOptions): Promise<void> {
    expectOk('MKDIR', path, await this.request(XsType.MKDIR, pathArg('MKDIR', path), path, options));
  }

  /** Removes the node and everything below it; succeeds if absent but the parent exists. */
  async rm(path: string, options?: RequestOptions): Promise<void> {
    expectOk('RM', path, await this.request(XsType.RM, pathArg('RM', path), path, options));
  }

  /**
   * The names of the node's children. When the list does not fit in one reply (xenstored
   * answers E2BIG), it is fetched in parts with XS_DIRECTORY_PART.
   */
  async directory(path: string, options?: RequestOptions): Promise<string[]> {
    try {
      const payload = await this.request(XsType.DIRECTORY, pathArg('DIRECTORY', path), path, options);
      return parseChildren('DIRECTORY', path, payload);
    } catch (error) {
      if (error instanceof XenstoreError && error.code === 'E2BIG')
        return this.directoryInParts(path, options);
      throw error;
    }
  }

  async getPermissions(path: string, options?: RequestOptions): Promise<PermissionEntry[]> {
    const payload = await this.request(XsType.GET_PERMS, pathArg('GET_PERMS', path), path, options);
    const strings = splitStrings(payload);
    if (!strings.ok) throw new XenstoreProtocolError('GET_PERMS', 'malformed-permissions', strings.reason);
    const parsed = parsePermissions(strings.value);
    if (!parsed.ok) throw new XenstoreProtocolError('GET_PERMS', 'malformed-permissions', parsed.reason);
    return parsed.value;
  }

  /** Sets the permission list: the first entry is the owner and the default for other domains. */
  async setPermissions(
    path: string,
    permissions: readonly PermissionEntry[],
    options?: RequestOptions,
  ): Promise<void> {
    checkArg('SET_PERMS', path);
    if (permissions.length === 0) throw new XenstoreUsageError('SET_PERMS', 'an empty permission list');
    const payload = joinStrings([path, ...permissions.map(formatPermission)]);
    expectOk('SET_PERMS', path, await this.request(XsType.SET_PERMS, payload, path, options));
  }

  private async directoryInParts(path: string, options?: RequestOptions): Promise<string[]> {
    // Restart when the node's generation changes between parts (the list changed under us).
    for (let restart = 0; restart < 8; restart++) {
      const children: string[] = [];
      let offset = 0;
      let generation: string | undefined;
      for (let part = 0; part < 4096; part++) {
        const payload = await this.request(
          XsType.DIRECTORY_PART,
          joinStrings([path, String(offset)]),
          path,
          options,
        );
        const strings = splitStrings(payload);
        if (!strings.ok || strings.value.length < 1 || !/^[0-9]+$/.test(strings.value[0]!)) {
          throw new XenstoreProtocolError('DIRECTORY_PART', 'malformed-directory', describeBytes(payload));
        }
        const [gen, ...names] = strings.value;
        if (generation !== undefined && gen !== generation) break;
        generation = gen;
        const last = names.length > 0 && names[names.length - 1] === '';
        const chunk = last ? names.slice(0, -1) : names;
        for (const name of chunk) {
          if (!validChildName(name))
            throw new XenstoreProtocolError('DIRECTORY_PART', 'malformed-directory', name);
          children.push(name);
          offset += utf8(name).length + 1;
        }
        if (last) return children;
        if (chunk.length === 0) {
          throw new XenstoreProtocolError('DIRECTORY_PART', 'malformed-directory', 'a part without progress');
        }
      }
    }
    throw new XenstoreProtocolError('DIRECTORY_PART', 'unstable-directory', `${path} kept changing`);
  }
}

export function checkArg(operation: string, text: string): void {
  if (typeof text !== 'string') throw new XenstoreUsageError(operation, 'argument is not a string');
  if (text.includes('\0'))
    throw new XenstoreUsageError(operation, `argument contains a NUL: ${JSON.stringify(text)}`);
}

export function pathArg(operation: string, path: string): Uint8Array {
  checkArg(operation, path);
  return joinStrings([path]);
}

export function decimal(operation: string, n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
    throw new XenstoreUsageError(operation, `${n} is not an unsigned integer`);
  return String(n);
}

export function domidArg(operation: string, domid: number): Uint8Array {
  return joinStrings([decimal(operation, domid)]);
}

export function expectOk(operation: string, path: string | undefined, reply: Uint8Array): void {
  if (parseOneString(reply) !== 'OK') {
    throw new XenstoreProtocolError(operation, 'expected-OK', `${path ?? ''} got ${describeBytes(reply)}`);
  }
}

const childNameChars = /^[A-Za-z0-9_@-]+$/;
export function validChildName(name: string): boolean {
  return name.length > 0 && name.length <= 2048 && childNameChars.test(name);
}

export function parseChildren(operation: string, path: string, payload: Uint8Array): string[] {
  const strings = splitStrings(payload);
  if (!strings.ok)
    throw new XenstoreProtocolError(operation, 'malformed-directory', `${path}: ${strings.reason}`);
  for (const name of strings.value) {
    if (!validChildName(name)) {
      throw new XenstoreProtocolError(
        operation,
        'malformed-directory',
        `${path}: child ${JSON.stringify(name.slice(0, 64))}`,
      );
    }
  }
  return strings.value;
}
