import type { XenstoreClient } from './client.ts';
import { XenstoreUsageError } from './errors.ts';
import { expectOk, type RequestOptions, XenstoreOps } from './ops.ts';
import { joinStrings, typeName, XsType } from './wire.ts';

/** A transaction: operations see its private view until `commit`. See XenstoreClient.transaction. */
export class XenstoreTransaction extends XenstoreOps {
  private done = false;

  constructor(
    private readonly client: XenstoreClient,
    readonly id: number,
  ) {
    super();
  }

  get ended(): boolean {
    return this.done;
  }

  protected request(
    type: number,
    payload: Uint8Array,
    path: string | undefined,
    options: RequestOptions | undefined,
  ): Promise<Uint8Array> {
    if (this.done) {
      return Promise.reject(
        new XenstoreUsageError(typeName(type) ?? String(type), `transaction ${this.id} has ended`),
      );
    }
    return this.client.rawRequest(type, payload, this.id, path, options);
  }

  /** Commits; rejects with XenstoreError EAGAIN when another change conflicted (redo the whole transaction). */
  async commit(options?: RequestOptions): Promise<void> {
    await this.end(true, options);
  }

  async abort(options?: RequestOptions): Promise<void> {
    await this.end(false, options);
  }

  private async end(commit: boolean, options?: RequestOptions): Promise<void> {
    if (this.done) throw new XenstoreUsageError('TRANSACTION_END', `transaction ${this.id} has ended`);
    this.done = true; // xenstored forgets the transaction whatever the outcome
    const reply = await this.client.rawRequest(
      XsType.TRANSACTION_END,
      joinStrings([commit ? 'T' : 'F']),
      this.id,
      undefined,
      options,
    );
    expectOk('TRANSACTION_END', undefined, reply);
  }
}
