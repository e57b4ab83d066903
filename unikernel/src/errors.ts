/** A build step of an image failed; says which step, and what it was working on. */
export class ImageBuildError extends Error {
  constructor(
    readonly step: string,
    message: string,
    readonly detail: Record<string, unknown> = {},
  ) {
    super(`${step}: ${message}`);
    this.name = 'ImageBuildError';
  }
}
