/** Process entry: `node qrexec-agent.js [--socket-dir DIR --domain N] [--test-services]` (see run.ts). */
import { runAgentMain } from '../run.ts';

runAgentMain(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`qrexec-agent: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
