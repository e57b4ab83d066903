import { describe, it } from 'vitest';
import { hostileServerSuite } from './hostile-server.ts';

describe('xenstore client against a hostile server', () => {
  for (const c of hostileServerSuite()) it(c.id, () => c.run());
});
