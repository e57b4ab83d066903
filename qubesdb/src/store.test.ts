import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { QdbStore, watchMatches } from './store.ts';

const v = (text: string) => new TextEncoder().encode(text);

function storeWith(...paths: string[]): QdbStore {
  const store = new QdbStore();
  for (const path of paths) expect(store.write(path, v(path))).toBe('ok');
  return store;
}

describe('QubesDB database semantics (db-core.c)', () => {
  it('keeps entries sorted by strcmp and dumps them in reverse for an empty MULTIREAD', () => {
    const store = storeWith(
      '/qubes-ip',
      '/name',
      '/qubes-firewall/10.0.0.1/0000',
      '/qubes-firewall/10.0.0.1',
    );
    expect(store.list('')).toEqual([
      '/name',
      '/qubes-firewall/10.0.0.1',
      '/qubes-firewall/10.0.0.1/0000',
      '/qubes-ip',
    ]);
    expect(store.dumpReverse().map(([p]) => p)).toEqual([
      '/qubes-ip',
      '/qubes-firewall/10.0.0.1/0000',
      '/qubes-firewall/10.0.0.1',
      '/name',
    ]);
  });

  it('a write replaces the value; an empty value is kept', () => {
    const store = storeWith('/a');
    store.write('/a', v(''));
    expect(store.read('/a')).toEqual(new Uint8Array(0));
    expect(store.size).toBe(1);
  });

  it('refuses to write paths not starting with / or ending with /', () => {
    const store = new QdbStore();
    expect(store.write('a', v('x'))).toBe('bad-path');
    expect(store.write('/a/', v('x'))).toBe('bad-path');
    expect(store.write('/', v('x'))).toBe('bad-path');
    expect(store.write('', v('x'))).toBe('bad-path');
  });

  it('rm /a/b removes exactly that key; rm /a/ removes everything under /a/ but not /a', () => {
    const store = storeWith('/a', '/a/b', '/a/bc', '/a/b/c', '/ab');
    expect(store.remove('/a/b')).toEqual(['/a/b']);
    expect(store.list('')).toEqual(['/a', '/a/b/c', '/a/bc', '/ab']);
    expect(store.remove('/a/')).toEqual(['/a/b/c', '/a/bc']);
    expect(store.list('')).toEqual(['/a', '/ab']);
  });

  it('rm of something absent removes nothing (the daemon answers NOENT)', () => {
    const store = storeWith('/a/b');
    expect(store.remove('/a')).toEqual([]);
    expect(store.remove('/x/')).toEqual([]);
    expect(store.remove('')).toEqual([]);
  });

  it('rm / removes the whole database', () => {
    const store = storeWith('/a', '/b/c');
    expect(store.remove('/')).toEqual(['/a', '/b/c']);
    expect(store.size).toBe(0);
  });

  it('MULTIREAD and LIST match a raw prefix: /qubes-i matches /qubes-ip', () => {
    const store = storeWith('/qubes-ip', '/qubes-iface', '/qubes-gateway');
    expect(store.list('/qubes-i')).toEqual(['/qubes-iface', '/qubes-ip']);
  });

  it('bounds the number of entries', () => {
    const store = new QdbStore({ maxEntries: 2 });
    expect(store.write('/a', v('1'))).toBe('ok');
    expect(store.write('/b', v('2'))).toBe('ok');
    expect(store.write('/c', v('3'))).toBe('full');
    expect(store.write('/a', v('replaced'))).toBe('ok');
  });
});

describe('watch matching (qubesdb_fire_watches)', () => {
  const table: [string, string, boolean][] = [
    ['/a/b', '/a/b', true],
    ['/a/b', '/a/bc', false], // the comparison includes the terminating NUL
    ['/a/b', '/a/b/c', false],
    ['/a/b/', '/a/b/c', true],
    ['/a/b/', '/a/b/', true], // a recursive rm fires with its own path
    ['/a/b/', '/a/b', false],
    ['/', '/anything', true],
  ];
  for (const [watch, changed, fires] of table) {
    it(`a watch on ${watch} ${fires ? 'fires' : 'does not fire'} for ${changed}`, () => {
      expect(watchMatches(watch, changed)).toBe(fires);
    });
  }
});

describe('QdbStore against a plain model (property)', () => {
  const segment = fc.constantFrom('a', 'b', 'ab', 'c-d', 'x.y');
  const path = fc.array(segment, { minLength: 1, maxLength: 3 }).map((parts) => `/${parts.join('/')}`);
  const op = fc.oneof(
    fc.record({ kind: fc.constant('write' as const), path, value: fc.string({ maxLength: 5 }) }),
    fc.record({ kind: fc.constant('rm' as const), path }),
    fc.record({ kind: fc.constant('rm-dir' as const), path }),
  );

  it('write / rm / rm-dir keep the same contents as a Map, sorted by strcmp', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const store = new QdbStore();
        const model = new Map<string, string>();
        for (const o of ops) {
          if (o.kind === 'write') {
            expect(store.write(o.path, v(o.value))).toBe('ok');
            model.set(o.path, o.value);
          } else if (o.kind === 'rm') {
            expect(store.remove(o.path).length > 0).toBe(model.delete(o.path));
          } else {
            const prefix = `${o.path}/`;
            const expected = [...model.keys()].filter((k) => k.startsWith(prefix)).sort();
            expect(store.remove(prefix)).toEqual(expected);
            for (const k of expected) model.delete(k);
          }
        }
        const sorted = [...model.keys()].sort();
        expect(store.list('')).toEqual(sorted);
        expect(store.dumpReverse().map(([p]) => p)).toEqual([...sorted].reverse());
        for (const [k, value] of model) expect(new TextDecoder().decode(store.read(k))).toBe(value);
      }),
    );
  });
});
