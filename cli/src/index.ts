export { CheckFailed, CliError, ExitCode, SetupProblem } from './errors.ts';
export {
  createReporter,
  ENVELOPE_VERSION,
  type Envelope,
  type EnvelopeType,
  type ProgressStep,
  type Reporter,
} from './output.ts';
export { type CliContext, type CommandModule, createProgram, handler, runProgram } from './program.ts';
