// A worker that never answers: stands in for a decoder stuck in a loop.
import { parentPort } from 'node:worker_threads';

parentPort?.on('message', () => {
  for (;;) {
    // spin until terminated
  }
});
