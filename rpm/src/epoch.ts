import { assertEpoch } from '@moat/unikernel';

/** SOURCE_DATE_EPOCH when none is set: 2026-01-01T00:00:00Z (any fixed value gives equal builds). */
export const defaultSourceDateEpoch = 1_767_225_600;

/** The build's SOURCE_DATE_EPOCH (whole seconds), or the default when it is unset. */
export function sourceDateEpoch(value: string | undefined): number {
  return assertEpoch(value, defaultSourceDateEpoch);
}
