/** Process entry: `node qrexec-dom0.js call|serve ...` (see run.ts). */
import { runDom0Main } from '../run.ts';

runDom0Main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`qrexec-dom0: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 125;
  },
);
