/** A packaging step failed; says which step and why. */
export class PackagingError extends Error {
  constructor(
    readonly step: string,
    message: string,
  ) {
    super(`${step}: ${message}`);
    this.name = 'PackagingError';
  }
}
