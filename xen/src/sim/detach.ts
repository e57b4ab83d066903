/**
 * Detaches `buffer` and returns a new ArrayBuffer holding its bytes (no copy):
 * ArrayBuffer.prototype.transfer where the runtime has it (Node 22+), else a
 * structuredClone transfer (Node 20's V8 lacks transfer()).
 */
export function transferBuffer(buffer: ArrayBuffer): ArrayBuffer {
  const withTransfer = buffer as ArrayBuffer & { transfer?: () => ArrayBuffer };
  if (typeof withTransfer.transfer === 'function') return withTransfer.transfer();
  return structuredClone(buffer, { transfer: [buffer] });
}

/** Detaches `buffer` and drops its bytes. */
export function detachBuffer(buffer: ArrayBuffer): void {
  if (buffer.byteLength > 0) transferBuffer(buffer);
}
