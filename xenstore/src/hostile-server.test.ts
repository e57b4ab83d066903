import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { XenstoreClient } from './client.ts';
import {
  XenstoreConnectionError,
  XenstoreError,
  XenstoreProtocolError,
  XenstoreTimeoutError,
} from './errors.ts';
import { hostileServerSuite, ScriptedServer } from './hostile-server.ts';

describe('xenstore client against a hostile server', () => {
  for (const c of hostileServerSuite()) it(c.id, () => c.run());
});

describe('xenstore client fed arbitrary bytes', () => {
  it('settles every request with a value or a typed error, whatever the server sends', async () => {
    const header = (type: number, reqId: number, len: number) => {
      const h = new Uint8Array(16);
      const v = new DataView(h.buffer);
      v.setUint32(0, type, true);
      v.setUint32(4, reqId, true);
      v.setUint32(12, len, true);
      return h;
    };
    // Mostly well-framed messages with arbitrary fields and payloads, plus raw noise.
    const piece = fc.oneof(
      fc
        .record({
          type: fc.oneof(fc.integer({ min: 0, max: 25 }), fc.integer({ min: 0, max: 0xffffffff })),
          reqId: fc.integer({ min: 0, max: 4 }),
          payload: fc.uint8Array({ maxLength: 64 }),
        })
        .map(({ type, reqId, payload }) => {
          const out = new Uint8Array(16 + payload.length);
          out.set(header(type, reqId, payload.length));
          out.set(payload, 16);
          return out;
        }),
      fc.uint8Array({ maxLength: 40 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { maxLength: 6 }), fc.boolean(), async (pieces, hangUp) => {
        const s = new ScriptedServer((req, srv) => {
          if (req.reqId !== 1) return;
          for (const p of pieces) srv.raw(p);
          if (hangUp) srv.hangUp();
        });
        const x = new XenstoreClient(s, { timeoutMs: 50 });
        const ops = [
          x.read('/a'),
          x.directory('/b'),
          x.getPermissions('/c'),
          x.startTransaction(),
          x.watch('/d', { token: 'tok' }),
        ];
        const settled = await Promise.allSettled(ops);
        for (const r of settled) {
          if (r.status === 'rejected') {
            expect(
              [XenstoreError, XenstoreProtocolError, XenstoreConnectionError, XenstoreTimeoutError].some(
                (cls) => r.reason instanceof cls,
              ),
              String(r.reason),
            ).toBe(true);
          }
        }
        x.close();
      }),
      { numRuns: 200 },
    );
  });
});
