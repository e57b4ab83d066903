// Starts a TypeScript worker when running from sources (tests, ./moat): on Node 20 a
// worker does not inherit its parent's tsx loader, so it registers tsx itself and then
// imports the real entry. A bundled build starts its bundled worker directly.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.tsEntry);
