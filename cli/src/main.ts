#!/usr/bin/env node
// Entry point of `./moat`; the script at the repository root runs this file.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commandModules } from './commands/index.ts';
import { createProgram, runProgram } from './program.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const program = createProgram(root, commandModules);
process.exitCode = await runProgram(program, process.argv.slice(2));
