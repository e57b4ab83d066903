/** Runs the engine benchmark in this process and prints its result as one JSON line. */
import { runEngineBench } from './bench.ts';

const minMs = Number(process.argv[2] ?? 1000);
process.stdout.write(`${JSON.stringify(await runEngineBench({ minMs }))}\n`);
