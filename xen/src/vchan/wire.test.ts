import { describe, expect, it } from 'vitest';
import { checkOrders, inPageOffset, minOrder, ringPages, selectOrders } from './wire.ts';

describe('libxenvchan ring sizes', () => {
  it('chooses orders from the minimum sizes as libxenvchan_server_init does', () => {
    const cases: [number, number, number, number][] = [
      // readMin (left), writeMin (right) -> left order, right order
      [1024, 2048, 10, 11],
      [1, 1, 10, 11],
      [2048, 1024, 11, 10],
      [2048, 2048, 11, 12],
      [2048, 4096, 11, 12],
      [1500, 100000, 11, 17],
      [4096, 2048, 12, 11],
      [4096, 4096, 12, 12], // every Qubes service at 4096/4096: two external 1-page rings
      [65536, 65536, 16, 16], // qrexec data channels: two 16-page rings
      [1 << 20, 5000, 20, 13],
    ];
    for (const [r, w, left, right] of cases) expect(selectOrders(r, w)).toEqual({ left, right });
  });

  it('rejects a minimum above 1 MiB', () => {
    expect(selectOrders((1 << 20) + 1, 1)).toEqual({ reason: 'too-large' });
    expect(selectOrders(1, (1 << 20) + 1)).toEqual({ reason: 'too-large' });
  });

  it('places in-page rings at 1024 and 2048 and external rings in 2^(order-12) pages', () => {
    expect(inPageOffset(10)).toBe(1024);
    expect(inPageOffset(11)).toBe(2048);
    expect(inPageOffset(12)).toBeUndefined();
    expect([ringPages(10), ringPages(11), ringPages(12), ringPages(16), ringPages(20)]).toEqual([
      0, 0, 1, 16, 256,
    ]);
    expect([minOrder(1), minOrder(4096), minOrder(4097), minOrder(1 << 20)]).toEqual([12, 12, 13, 20]);
  });

  it('validates orders found in a page like the client does', () => {
    expect(checkOrders(10, 11)).toEqual({ left: 10, right: 11 });
    expect(checkOrders(12, 12)).toEqual({ left: 12, right: 12 });
    expect(checkOrders(10, 10)).toHaveProperty('reason');
    expect(checkOrders(11, 11)).toHaveProperty('reason');
    expect(checkOrders(9, 12)).toHaveProperty('reason');
    expect(checkOrders(12, 21)).toHaveProperty('reason');
  });
});
