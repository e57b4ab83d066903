/** For tests of this package: what they share. */
import { expect } from 'vitest';
import { XenError } from './types.ts';

/** The XenError `f` throws; fails the test when it throws something else or nothing. */
export function thrownXenError(f: () => unknown): XenError {
  try {
    f();
  } catch (error) {
    expect(error).toBeInstanceOf(XenError);
    return error as XenError;
  }
  throw new Error('expected a XenError');
}
